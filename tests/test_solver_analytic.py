"""The solver against exact solutions, no ngspice: with both switches held off the MIF neuron is a
linear RC circuit, whose response to a constant current is known in closed form; every method
converges to it at the order its class declares, a method a user registers too."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from memspice.devices import MIF
from memspice.nn import MemristiveSNN
from memspice.solver import METHODS, SolverOptions, simulate_neurons
from memspice.solver.methods import RadauIIA, Tableau, register

#: Both switches conduct as OFF whatever their state: the membrane sees Cm, gL and two goff's.
SWITCHES_OFF = {"gon1": MIF.resolve()["goff1"], "gon2": MIF.resolve()["goff2"]}
CURRENT = 0.3e-6  # A: keeps the membrane below both thresholds (their states stay near 0 too)
T_END = 20e-6


def exact(t: np.ndarray) -> np.ndarray:
    """V(t) (V) of Cm dV/dt = I - goff1 (V - e1) - goff2 (V - e2) - gL V from V(0) = 0."""
    p = MIF.resolve(SWITCHES_OFF)
    g = p["goff1"] + p["goff2"] + p["gl"]
    v_inf = (CURRENT + p["goff1"] * p["e1"] + p["goff2"] * p["e2"]) / g
    return v_inf * (1.0 - np.exp(-t * g / p["cm"]))


def final_error(method: str, dt: float) -> float:
    n = int(round(T_END / dt))
    current = torch.full((1, n + 1, 1), CURRENT, dtype=torch.float64)
    solution = simulate_neurons(current, SolverOptions(dt, method, tolerance=None), params=SWITCHES_OFF)
    return abs(float(solution.v[0][0, -1, 0]) - float(exact(np.array([n * dt]))[0]))


def observed_orders(method: str) -> list[float]:
    # an order-7 method reaches float64's rounding at 0.5 µs: it is measured on longer steps
    steps = (5e-6, 2.5e-6, 1.25e-6) if METHODS[method].order > 5 else (2e-6, 1e-6, 0.5e-6)
    errors = [final_error(method, dt) for dt in steps]
    assert errors[0] > errors[1] > errors[2] > 0, errors
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_converges_to_the_rc_solution_at_its_order(method):
    assert observed_orders(method)[-1] == pytest.approx(METHODS[method].order, abs=0.35)


@pytest.fixture
def backward_euler():
    """Backward Euler as a user adds it: one class, registered; no dispatcher edited."""

    @register
    class BackwardEuler(RadauIIA):  # Radau IIA with one stage, with its embedded estimate
        name, order, estimate_order = "backward-euler", 1, 2
        tableau = Tableau(((1.0,),), (1.0,))

    yield BackwardEuler
    del METHODS[BackwardEuler.name]


def test_a_registered_method_runs_everywhere_a_name_is_taken(backward_euler):
    assert observed_orders("backward-euler")[-1] == pytest.approx(1.0, abs=0.35)
    current = torch.full((1, 51, 1), 2e-6, dtype=torch.float64)
    solution = simulate_neurons(current, SolverOptions(200e-9, "backward-euler", adaptive=True))
    assert solution.newton_iterations[0] > 0 and solution.substeps >= 50
    network = MemristiveSNN((4, 3), solver=SolverOptions(method="backward-euler"))
    assert network(torch.rand(2, 10, 4, dtype=torch.float64)).v[-1].shape == (2, 10, 3)
    with pytest.raises(ValueError, match="registered already"):
        register(backward_euler)


def test_the_membrane_follows_the_exact_waveform():
    dt = 200e-9
    n = int(round(T_END / dt))
    current = torch.full((1, n + 1, 1), CURRENT, dtype=torch.float64)
    v = simulate_neurons(current, SolverOptions(dt, tolerance=None), params=SWITCHES_OFF).v[0][0, :, 0].numpy()
    reference = exact(np.arange(n + 1) * dt)
    assert np.abs(v - reference).max() < 1e-9 * reference.max()
