"""A differential crossbar whose trainable weights are memristor conductances.

Every cell's conductance stays inside the device range ``[g_min, g_max]`` at all times: the
parameters are the cells' fractions ``w`` of the range and

    G = g_min + (g_max - g_min)·clamp(w, 0, 1)

so no value of ``w`` can give a conductance outside the range, and after every optimizer step
:meth:`Crossbar.project_` puts ``w`` back into ``[0, 1]`` (projected gradient descent, as a
programming pulse cannot take a device past its bounds). The gradient of ``clamp`` is 1 at the
end points, so a cell at a bound still learns and can come back. A sigmoid of unconstrained
logits, the other common choice, loses its gradient there: trained on Fashion-MNIST with Adam,
88 % of such cells ended within 2 % of a bound, frozen (memspice 0.1's crossbars). The signed
weight of row ``i`` on column ``j`` is ``G⁺_ij - G⁻_ij`` (design.md's differential pairs).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from memspice.network import Crossbar as CrossbarDescription

#: The total conductance (S) one column may hold on one side at g_max: it sets g_max = this / n_in.
COLUMN_CONDUCTANCE = 16e-6
#: g_max / g_min, the on/off ratio of the synapse memristors.
ON_OFF_RATIO = 100.0
#: Default initial fractions of the conductance range for G⁺ and G⁻ (see :class:`Crossbar`).
INIT_POS, INIT_NEG = (0.3, 0.9), (0.0, 0.4)


def conductance_range(n_in: int, column_conductance: float = COLUMN_CONDUCTANCE,
                      on_off_ratio: float = ON_OFF_RATIO) -> tuple[float, float]:
    """``(g_min, g_max)`` (S) of a crossbar with ``n_in`` rows.

    A column ties straight to a membrane, so its total conductance ``Σ(G⁺ + G⁻)`` loads the
    neuron: well above the depolarizing switch's on-conductance (36 µS) it would clamp the
    spike. Scaling ``g_max`` as ``column_conductance / n_in`` keeps that load the same for a
    64-row and a 784-row crossbar (the row voltages set the drive, not the fan-in)."""
    if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in < 1:
        raise ValueError(f"n_in must be a positive integer; got {n_in!r}")
    if not column_conductance > 0 or not on_off_ratio > 1:
        raise ValueError(f"need column_conductance > 0 S and on_off_ratio > 1; got {column_conductance!r}, "
                         f"{on_off_ratio!r}")
    g_max = column_conductance / n_in
    return g_max / on_off_ratio, g_max


class Crossbar(nn.Module):
    """``n_in x n_out`` differential pairs with conductances in ``[g_min, g_max]`` (S).

    ``G⁺`` and ``G⁻`` start uniform in the fractions ``init_pos`` and ``init_neg`` of the range.
    The default gives the weights a positive mean: a membrane settles near the conductance-weighted
    mean of its row voltages, so with centred weights every neuron would sit near 0 V, far below
    its threshold, and a network that never spikes learns slowly; this way most neurons start
    near threshold and some spike. With a wide input (Fashion-MNIST's 784 rows) the same mean
    puts nearly every first-layer neuron above threshold for every image, where its mean
    membrane hardly depends on the input: the recipes there start the input crossbar nearer
    centred (``memspice.train.config.RECIPES``)."""

    def __init__(self, n_in: int, n_out: int, g_min: float, g_max: float,
                 init_pos: tuple[float, float] = INIT_POS, init_neg: tuple[float, float] = INIT_NEG,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0 < g_min < g_max or not math.isfinite(g_max):
            raise ValueError(f"need 0 < g_min < g_max (S); got g_min={g_min!r}, g_max={g_max!r}")
        for name, (lo, hi) in (("init_pos", init_pos), ("init_neg", init_neg)):
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"{name} must be fractions 0 <= low < high <= 1 of the range; got {(lo, hi)!r}")
        self.n_in, self.n_out = n_in, n_out
        self.g_min, self.g_max = float(g_min), float(g_max)

        def fractions(lo: float, hi: float) -> nn.Parameter:
            return nn.Parameter(lo + (hi - lo) * torch.rand(n_in, n_out, generator=generator))

        self.w_pos = fractions(*init_pos)
        self.w_neg = fractions(*init_neg)

    def _conductance(self, w: torch.Tensor) -> torch.Tensor:
        return self.g_min + (self.g_max - self.g_min) * w.clamp(0.0, 1.0)

    @property
    def g_pos(self) -> torch.Tensor:
        """G⁺ (S), ``(n_in, n_out)``."""
        return self._conductance(self.w_pos)

    @property
    def g_neg(self) -> torch.Tensor:
        """G⁻ (S), ``(n_in, n_out)``."""
        return self._conductance(self.w_neg)

    @torch.no_grad()
    def project_(self) -> None:
        """Put the fractions back into ``[0, 1]`` (after an optimizer step)."""
        self.w_pos.clamp_(0.0, 1.0)
        self.w_neg.clamp_(0.0, 1.0)

    def forward(self, rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Column currents (A, ``(..., n_out)``) for row voltages ``rows`` (V, ``(..., n_in)``)
        and membrane voltages ``v`` (V, ``(..., n_out)``), loading term included."""
        g_pos, g_neg = self.g_pos, self.g_neg
        return rows @ (g_pos - g_neg) - v * (g_pos + g_neg).sum(0)

    def describe(self) -> CrossbarDescription:
        """The conductances as a :class:`memspice.network.Crossbar` (float64 numpy), for netlists."""
        with torch.no_grad():
            return CrossbarDescription(np.asarray(self.g_pos.double().cpu()), np.asarray(self.g_neg.double().cpu()),
                                       g_range=(self.g_min, self.g_max))

    def extra_repr(self) -> str:
        return f"{self.n_in}x{self.n_out}x2, G in [{self.g_min:.3g}, {self.g_max:.3g}] S"
