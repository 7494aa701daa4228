"""Readouts of output-layer membranes ``v`` (V, ``(batch, n_steps + 1, n_out)``) and the losses on them.

* :func:`spike_counts`: the hard count, upward crossings of ``threshold`` between samples;
* :func:`soft_spike_counts`: its differentiable relaxation. With ``s = sigmoid((v - θ)/width)``
  it sums the rises of ``s``, ``Σ max(s_{n+1} - s_n, 0)``: one per spike when the membrane
  swings well across ``θ``, and exactly the hard count as ``width -> 0``. Its gradient reaches
  neurons that approach the threshold without firing, which is how a silent class neuron
  learns to fire;
* :func:`membrane_mean`, :func:`membrane_max`: membrane statistics (the time average over the
  window, the peak).

A prediction is the class with the most spikes; ties (two neurons with the same count, or no
spikes at all) go to the higher mean membrane voltage, so that a prediction is always defined
and depends on the waveform rather than on the order of the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Spikes are upward crossings of this membrane voltage (V): the MIF neuron's M1 threshold is
#: 0.40 V and its spikes peak near 0.55 V, so only spikes cross it (as in memspice validate).
SPIKE_THRESHOLD = 0.45
READOUTS = ("count", "membrane-mean", "membrane-max")


def spike_counts(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD) -> torch.Tensor:
    """Upward crossings of ``threshold`` (V) per neuron, ``(batch, n)`` (float, no gradient)."""
    return ((v[:, :-1] < threshold) & (v[:, 1:] >= threshold)).sum(1).to(v.dtype)


def soft_spike_counts(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD, width: float = 0.02) -> torch.Tensor:
    """Differentiable spike counts ``(batch, n)``: the summed rises of ``sigmoid((v - threshold)/width)``."""
    s = torch.sigmoid((v - threshold) / width)
    return torch.relu(s[:, 1:] - s[:, :-1]).sum(1)


def membrane_mean(v: torch.Tensor) -> torch.Tensor:
    """Time-averaged membrane voltage over the window (trapezoidal rule), V, ``(batch, n)``."""
    return 0.5 * (v[:, 1:] + v[:, :-1]).mean(1)


def membrane_max(v: torch.Tensor) -> torch.Tensor:
    """Peak membrane voltage over the window, V, ``(batch, n)``."""
    return v.amax(1)


def predict(counts: torch.Tensor | np.ndarray, mean_v: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Predicted classes ``(batch,)``: the most spikes, ties broken by the higher mean membrane
    voltage. Works on torch tensors and numpy arrays alike (ngspice results are numpy)."""
    lib = torch if isinstance(counts, torch.Tensor) else np
    low = mean_v.min(-1, keepdims=True) if lib is np else mean_v.amin(-1, keepdim=True)
    high = mean_v.max(-1, keepdims=True) if lib is np else mean_v.amax(-1, keepdim=True)
    tie_break = 0.999 * (mean_v - low) / (high - low + 1e-12)  # in [0, 1): never outranks a spike
    return (counts + tie_break).argmax(-1)


@dataclass(frozen=True)
class Readout:
    """Class logits from the output membranes, and the cross-entropy on them.

    ``kind``: ``"count"`` (logits = ``scale`` x soft spike counts, per spike), ``"membrane-mean"``
    or ``"membrane-max"`` (logits = ``scale`` x the statistic, per V)."""

    kind: str = "count"
    scale: float = 1.0
    threshold: float = SPIKE_THRESHOLD
    width: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in READOUTS:
            raise ValueError(f"unknown readout {self.kind!r}; choose one of {', '.join(READOUTS)}")
        if not self.scale > 0 or not self.width > 0:
            raise ValueError(f"scale and width must be > 0; got scale={self.scale!r}, width={self.width!r}")

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """``(batch, n_out)`` logits from the output membranes ``v``."""
        if self.kind == "count":
            return self.scale * soft_spike_counts(v, self.threshold, self.width)
        if self.kind == "membrane-mean":
            return self.scale * membrane_mean(v)
        return self.scale * membrane_max(v)

    def loss(self, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of :meth:`logits` against ``labels`` (``(batch,)`` int64)."""
        return F.cross_entropy(self.logits(v), labels)

    def predict(self, v: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(batch,)``: :func:`predict` on the hard counts."""
        return predict(spike_counts(v, self.threshold), membrane_mean(v))
