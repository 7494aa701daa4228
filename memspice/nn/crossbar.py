"""A differential crossbar whose trainable weights are memristor conductances.

Every cell's conductance stays inside the device range ``[g_min, g_max]`` at all times, by
construction rather than by clipping after a step: the parameters ``θ`` are mapped onto the range,

    G = g_min + (g_max - g_min)·f(θ)

with one of two documented maps (``parametrization``):

* ``"sigmoid"``: ``f = sigmoid``, ``θ`` unconstrained logits (in float32 a saturated sigmoid
  reaches the end points exactly, never beyond). Smooth, and its slope shrinks as a cell nears
  a bound, which anneals the steps; but there the gradient vanishes: with Adam's fixed-size
  steps many cells of a long run end in the flat tails and stop learning;
* ``"clamp"``: ``f = clamp(θ, 0, 1)``, ``θ`` the fraction of the range, and
  :meth:`MemristiveCrossbar.project_` puts ``θ`` back into ``[0, 1]`` after every optimizer step
  (projected gradient descent: a programming pulse cannot take a device past its bounds
  either). The gradient of ``clamp`` is 1 at the end points, so a cell at a bound still learns
  and can come back.

The signed weight of row ``i`` on column ``j`` is ``G⁺_ij - G⁻_ij`` (differential pairs).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from memspice.circuit import Crossbar as CrossbarDescription
from memspice.errors import ConfigError

#: The total conductance (S) one column may hold on one side at g_max: it sets g_max = this / n_in.
COLUMN_CONDUCTANCE = 16e-6
#: g_max / g_min, the on/off ratio of the synapse memristors.
ON_OFF_RATIO = 100.0
#: Default initial fractions of the conductance range for G⁺ and G⁻ (see :class:`MemristiveCrossbar`).
INIT_POS, INIT_NEG = (0.3, 0.9), (0.0, 0.4)
#: The maps from parameters to conductances (module docstring).
PARAMETRIZATIONS = ("sigmoid", "clamp")


def conductance_range(n_in: int, column_conductance: float = COLUMN_CONDUCTANCE,
                      on_off_ratio: float = ON_OFF_RATIO) -> tuple[float, float]:
    """``(g_min, g_max)`` (S) of a crossbar with ``n_in`` rows.

    A column ties straight to a membrane, so its total conductance ``Σ(G⁺ + G⁻)`` loads the
    neuron: well above the depolarizing switch's on-conductance (36 µS) it would clamp the
    spike. Scaling ``g_max`` as ``column_conductance / n_in`` keeps that load the same for a
    64-row and a 784-row crossbar (the row voltages set the drive, not the fan-in)."""
    if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in < 1:
        raise ConfigError(f"n_in must be a positive integer; got {n_in!r}")
    if not column_conductance > 0 or not on_off_ratio > 1:
        raise ConfigError(f"need column_conductance > 0 S and on_off_ratio > 1; got {column_conductance!r}, "
                         f"{on_off_ratio!r}")
    g_max = column_conductance / n_in
    return g_max / on_off_ratio, g_max


class MemristiveCrossbar(nn.Module):
    """``n_in x n_out`` differential pairs with conductances in ``[g_min, g_max]`` (S).

    ``G⁺`` and ``G⁻`` start uniform in the fractions ``init_pos`` and ``init_neg`` of the range.
    The default gives the weights a positive mean: a membrane settles near the conductance-weighted
    mean of its row voltages, so with centred weights every neuron would sit near 0 V, far below
    its threshold, and a network that never spikes learns slowly; this way most neurons start
    near threshold and some spike. How far above or below threshold a layer should start
    depends on its input (``memspice.train.config.RECIPES`` sets both crossbars of the 28x28
    networks). ``parametrization``: ``"sigmoid"`` or
    ``"clamp"`` (module docstring); the parameters are ``theta_pos`` and ``theta_neg``."""

    def __init__(self, n_in: int, n_out: int, g_min: float, g_max: float,
                 init_pos: tuple[float, float] = INIT_POS, init_neg: tuple[float, float] = INIT_NEG,
                 parametrization: str = "sigmoid", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 < g_min < g_max or not math.isfinite(g_max):
            raise ConfigError(f"need 0 < g_min < g_max (S); got g_min={g_min!r}, g_max={g_max!r}")
        if parametrization not in PARAMETRIZATIONS:
            raise ConfigError(f"unknown parametrization {parametrization!r}; "
                             f"choose one of {', '.join(PARAMETRIZATIONS)}")
        for name, (lo, hi) in (("init_pos", init_pos), ("init_neg", init_neg)):
            if not 0 <= lo < hi <= 1:
                raise ConfigError(f"{name} must be fractions 0 <= low < high <= 1 of the range; got {(lo, hi)!r}")
        self.n_in, self.n_out = n_in, n_out
        self.g_min, self.g_max = float(g_min), float(g_max)
        self.parametrization = parametrization

        def parameter(lo: float, hi: float) -> nn.Parameter:
            fractions = lo + (hi - lo) * torch.rand(n_in, n_out, generator=generator)
            if parametrization == "sigmoid":
                fractions = torch.logit(fractions.clamp(1e-3, 1 - 1e-3))
            return nn.Parameter(fractions)

        self.theta_pos = parameter(*init_pos)
        self.theta_neg = parameter(*init_neg)

    def _conductance(self, theta: torch.Tensor) -> torch.Tensor:
        f = torch.sigmoid(theta) if self.parametrization == "sigmoid" else theta.clamp(0.0, 1.0)
        return self.g_min + (self.g_max - self.g_min) * f

    @property
    def g_pos(self) -> torch.Tensor:
        """G⁺ (S), ``(n_in, n_out)``."""
        return self._conductance(self.theta_pos)

    @property
    def g_neg(self) -> torch.Tensor:
        """G⁻ (S), ``(n_in, n_out)``."""
        return self._conductance(self.theta_neg)

    @torch.no_grad()
    def project_(self) -> None:
        """After an optimizer step: put ``"clamp"`` fractions back into ``[0, 1]`` (logits need nothing)."""
        if self.parametrization == "clamp":
            self.theta_pos.clamp_(0.0, 1.0)
            self.theta_neg.clamp_(0.0, 1.0)

    def forward(self, rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Column currents (A, ``(..., n_out)``) for row voltages ``rows`` (V, ``(..., n_in)``)
        and membrane voltages ``v`` (V, ``(..., n_out)``), loading term included (it needs the
        membranes the currents drive: :class:`~memspice.nn.MemristiveLayer` solves both together)."""
        g_pos, g_neg = self.g_pos, self.g_neg
        return rows @ (g_pos - g_neg) - v * (g_pos + g_neg).sum(0)

    def describe(self) -> CrossbarDescription:
        """The conductances as a :class:`memspice.circuit.Crossbar` (float64 numpy), for netlists."""
        with torch.no_grad():
            return CrossbarDescription(np.asarray(self.g_pos.double().cpu()), np.asarray(self.g_neg.double().cpu()),
                                       g_range=(self.g_min, self.g_max))

    def extra_repr(self) -> str:
        return f"{self.n_in}x{self.n_out}x2, G in [{self.g_min:.3g}, {self.g_max:.3g}] S ({self.parametrization})"
