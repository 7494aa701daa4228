"""A layer of memristive neurons as a torch module (snnTorch-like: the layer owns its device and
parameters and maps an input to membrane waveforms), integrated by :mod:`memspice.solver`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from memspice.devices import MIF, DeviceModel
from memspice.errors import ConfigError
from memspice.solver.options import SolverOptions, solver_options
from memspice.solver.transient import Solution, simulate_neurons


class MemristiveNeurons(nn.Module):
    """``size`` neurons of the one-port device ``model`` (the MIF neuron unless another is given)
    sharing ``params`` (overrides of the model's defaults, SI units; validated here), integrated
    as ``solver`` says (:class:`~memspice.solver.SolverOptions`, or a step dt in s).

    :meth:`forward` integrates the neurons alone, driven by an input current; inside a
    :class:`~memspice.nn.MemristiveSNN` the network integrates all layers step by step. To drive
    neurons from a crossbar, use :class:`~memspice.nn.MemristiveLayer`: a crossbar's column
    current depends on the membrane it feeds (the loading term), so a current computed before
    the neurons are integrated would leave that feedback out."""

    def __init__(self, size: int, params: Mapping[str, float] | None = None,
                 solver: SolverOptions | float = SolverOptions(), model: DeviceModel = MIF) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"size must be a positive integer; got {size!r}")
        if not isinstance(model, DeviceModel) or len(model.ports) != 1:
            raise ConfigError(f"a neuron is a one-port DeviceModel; got {model!r}")
        model.resolve(params or {})  # validates: one clear error here, not inside the solver
        self.size, self.model = size, model
        self.overrides = dict(params or {})
        self.solver = solver_options(solver)

    def params(self) -> dict[str, float]:
        """Every device parameter of the layer's neurons (the defaults with the overrides), SI."""
        return self.model.resolve(self.overrides)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """Membrane voltages (V, ``(batch, n_steps + 1, size)``) for input currents ``current``
        (A, ``(batch, n_steps + 1, size)``, linear between samples), from rest."""
        return self.simulate(current).v[0]

    def simulate(self, current: torch.Tensor, record_states: bool = True) -> Solution:
        """The full solution (membranes and device states)."""
        if current.shape[-1] != self.size:
            raise ConfigError(f"current has {current.shape[-1]} neurons; the layer has {self.size}")
        return simulate_neurons(current, self.solver, self.overrides, self.model, record_states=record_states)

    def extra_repr(self) -> str:
        return f"{self.size}, {self.model.name}, dt={self.solver.dt:g} s, method={self.solver.method}"
