"""Activity regularizers on hidden-layer membranes (V, ``(batch, n_steps + 1, n)``), after
snnTorch's population regularizers: they keep hidden neurons where their spikes carry
information, neither silent nor firing on every sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from memspice.defaults import SPIKE_THRESHOLD
from memspice.nn.readout import soft_spike_counts


def rate_band_penalty(hidden: Sequence[torch.Tensor], band: tuple[float, float], threshold: float = SPIKE_THRESHOLD,
                      width: float = 0.02) -> torch.Tensor:
    """Squared distance of each hidden neuron's firing rate from ``band`` = (low, high), spikes
    per sample averaged over the batch, meaned over the neurons of all ``hidden`` layers (0 when
    every neuron lies in the band). Rates are soft spike counts (:func:`soft_spike_counts` with
    ``threshold`` and ``width``, V), so a silent neuron whose membrane approaches the threshold
    is pushed up and a saturated one down."""
    low, high = band
    rates = torch.cat([soft_spike_counts(v, threshold, width).mean(0) for v in hidden])
    return (torch.relu(low - rates) ** 2 + torch.relu(rates - high) ** 2).mean()
