"""The differentiable transient solver: batched, on CPU or CUDA, in float32 or float64."""

from memspice.solver.integrators import NewtonOptions
from memspice.solver.methods import METHODS
from memspice.solver.options import SolverOptions
from memspice.solver.transient import CrossbarPorts, Solution, simulate_network, simulate_neurons

__all__ = ["METHODS", "CrossbarPorts", "NewtonOptions", "Solution", "SolverOptions", "simulate_network",
           "simulate_neurons"]
