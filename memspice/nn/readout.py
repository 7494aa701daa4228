"""Readouts of output-layer membranes ``v`` (V, ``(batch, n_steps + 1, n_out)``), the losses on
them, and the decision a chip's spike counter makes.

* :func:`spike_counts`: the hard count, upward crossings of ``threshold`` between samples;
* :func:`soft_spike_counts`: its differentiable relaxation. With ``s = sigmoid((v - θ)/width)``
  it sums the rises of ``s``, ``Σ max(s_{n+1} - s_n, 0)``: one per spike when the membrane
  swings well across ``θ``, and exactly the hard count as ``width -> 0``. Its gradient reaches
  neurons that approach the threshold without firing, which is how a silent class neuron
  learns to fire;
* :func:`first_spike_steps`: the time of the first upward crossing of ``θ``, in steps, located
  on the line between the two samples around it. The crossing time ``t*`` solves ``v(t*) = θ``
  on that interpolant, so its gradient is the implicit-function one, ``dt*/dv = -(∂v/∂v_n)
  / v'(t*)``, with no surrogate: autograd differentiates the closed form;
* :func:`latency`: the first-spike time as a fraction of the window, continued past the window
  for a silent neuron by its peak's distance below ``θ`` (``1 + (θ - max v)/width``), so that
  the loss also reaches a class neuron that has not fired yet;
* :func:`membrane_mean`, :func:`membrane_max`: membrane statistics (the time average over the
  window, the peak).

:func:`decide` is the prediction: the class neuron with the most spikes (``count`` readout) or
the earliest first spike (``first-spike`` readout), ties broken by the other spike reading, and
the time-averaged membrane only as the last resort (it needs an ADC, which a fully memristive
chip exists to avoid); a network trained on its membranes decides by count, its ties by the
membrane it was trained on. Every decision says which reading made it.

A class can be read from a population of output neurons (``population`` K: neurons ``j K`` to
``j K + K - 1`` are class ``j``'s): its logit is the mean of its neurons' and its readings pool
theirs (:func:`pool_readings`), so that one neuron's device spread moves the class's reading by
about ``1/K`` as much (population coding; snnTorch's ``population_code``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from memspice.defaults import SPIKE_THRESHOLD
from memspice.errors import ConfigError

READOUTS = ("count", "first-spike", "membrane-mean", "membrane-max")
#: The readouts trained on spike latencies (and given the class-neuron firing term).
SPIKE_READOUTS = ("count", "first-spike")
#: What decided a prediction, in the order :func:`decide` codes it (``decided_by``).
DECIDERS = ("count", "first-spike", "membrane")
#: The spike readings that decide, in turn, for each readout (the membrane breaks what they leave tied).
DECISION_ORDERS = {"count": ("count", "first-spike"), "first-spike": ("first-spike", "count"),
                   "membrane-mean": ("count",), "membrane-max": ("count",)}


def spike_counts(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD) -> torch.Tensor:
    """Upward crossings of ``threshold`` (V) per neuron, ``(batch, n)`` (float, no gradient)."""
    return ((v[:, :-1] < threshold) & (v[:, 1:] >= threshold)).sum(1).to(v.dtype)


def soft_spike_counts(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD, width: float = 0.02) -> torch.Tensor:
    """Differentiable spike counts ``(batch, n)``: the summed rises of ``sigmoid((v - threshold)/width)``."""
    s = torch.sigmoid((v - threshold) / width)
    return torch.relu(s[:, 1:] - s[:, :-1]).sum(1)


def first_spike_steps(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD) -> torch.Tensor:
    """Time of each neuron's first upward crossing of ``threshold`` (V), in steps from the first
    sample (multiply by dt for seconds), ``(batch, n)``; ``inf`` where the neuron does not spike.
    Differentiable with respect to the two samples around the crossing."""
    crossing = (v[:, :-1] < threshold) & (v[:, 1:] >= threshold)
    fired = crossing.any(1)
    step = crossing.to(torch.int8).argmax(1, keepdim=True)  # the first crossing (0 where none)
    before, after = v.gather(1, step).squeeze(1), v.gather(1, step + 1).squeeze(1)
    rise = torch.where(fired, after - before, torch.ones_like(after))  # > 0 where fired
    fraction = torch.where(fired, (threshold - before) / rise, torch.zeros_like(rise))
    return torch.where(fired, step.squeeze(1).to(v.dtype) + fraction, torch.full_like(rise, torch.inf))


def latency(v: torch.Tensor, threshold: float = SPIKE_THRESHOLD, width: float = 0.02) -> torch.Tensor:
    """First-spike time as a fraction of the window, ``(batch, n)``: in ``(0, 1]`` for a neuron
    that spikes, ``1 + (threshold - max v)/width`` for one that does not (V; later the further
    its peak stays below the threshold). Differentiable everywhere."""
    steps = first_spike_steps(v, threshold)
    silent = 1 + (threshold - membrane_max(v)) / width
    fired = torch.isfinite(steps)
    return torch.where(fired, torch.where(fired, steps, torch.zeros_like(steps)) / (v.shape[1] - 1), silent)


def membrane_mean(v: torch.Tensor) -> torch.Tensor:
    """Time-averaged membrane voltage over the window (trapezoidal rule), V, ``(batch, n)``."""
    return 0.5 * (v[:, 1:] + v[:, :-1]).mean(1)


def membrane_max(v: torch.Tensor) -> torch.Tensor:
    """Peak membrane voltage over the window, V, ``(batch, n)``."""
    return v.amax(1)


def pool_readings(counts: np.ndarray, firsts: np.ndarray, means: np.ndarray, population: int, window: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's readings from its ``population`` output neurons' (all ``(batch, n_out)``, neuron
    ``j population + k`` of class ``j``): the population's spike count (the sum), its mean
    first-spike time with a silent neuron counting as ``window`` (the window's end, in the unit of
    ``firsts``; ``inf`` where every neuron is silent) and its mean membrane, each
    ``(batch, n_out / population)``. A population of one is its neuron."""
    if population == 1:
        return counts, firsts, means
    counts, firsts, means = (np.asarray(a, dtype=float).reshape(len(a), -1, population)
                             for a in (counts, firsts, means))
    silent = ~np.isfinite(firsts)
    mean_first = np.where(silent, window, firsts).mean(-1)
    return counts.sum(-1), np.where(silent.all(-1), np.inf, mean_first), means.mean(-1)


def decide(counts: np.ndarray, first: np.ndarray, means: np.ndarray, order: Sequence[str] = ("count", "first-spike")
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted classes ``(batch,)``, what decided each (an index into :data:`DECIDERS`) and by
    what margin (the gap between the best two candidates in that reading: spikes, first-spike
    time units, V; ``inf`` where the runner-up has no value, e.g. no spike), from each output
    neuron's spike count, first-spike time (any unit, ``inf`` if silent) and time-averaged
    membrane (V), all ``(batch, n)``.

    The spike readings in ``order`` rank the candidates one after the other (``"count"``: the
    most spikes; ``"first-spike"``: the earliest first spike), and the higher mean membrane
    breaks what they leave tied; a prediction is decided by the first reading that leaves one
    candidate, so a sample in which no candidate spikes ends at the membrane."""
    if not order or len(set(order)) != len(order) or not set(order) <= {"count", "first-spike"}:
        raise ConfigError(f"order must name 'count' and/or 'first-spike' once each; got {tuple(order)!r}")
    counts, first, means = (np.asarray(a, dtype=float) for a in (counts, first, means))
    keys = {"count": counts, "first-spike": -first, "membrane": means}  # higher is better
    candidates = np.ones(counts.shape, dtype=bool)
    decided_by = np.full(counts.shape[0], DECIDERS.index("membrane"))
    margin = np.zeros(counts.shape[0])
    undecided = np.ones(counts.shape[0], dtype=bool)
    for name in (*order, "membrane"):
        key = np.where(candidates, keys[name], -np.inf)
        ranked = np.sort(key, axis=-1)
        with np.errstate(invalid="ignore"):  # -inf - -inf where no candidate has a value
            gap = ranked[:, -1] - ranked[:, -2]
        candidates &= key == ranked[:, -1:]
        alone = undecided & (candidates.sum(-1) == 1)
        decided_by[alone] = DECIDERS.index(name)
        margin[alone] = gap[alone]
        undecided &= ~alone
    return np.where(candidates, means, -np.inf).argmax(-1), decided_by, margin


@dataclass(frozen=True)
class Readout:
    """Class logits from the output membranes, the cross-entropy on them, and the decision.

    ``kind``: ``"count"`` (logits = ``scale`` x (soft spike count + 1 - :func:`latency`), per
    spike: the count, and among equal counts the earlier first spike, as one smooth score in the
    decision's own order; the latency term is what reaches a class neuron that has not fired
    yet, and moves with its drive where the count is a staircase), ``"first-spike"`` (logits =
    -``scale`` x :func:`latency`, per window: the earliest neuron wins),
    ``"membrane-mean"`` or ``"membrane-max"`` (logits = ``scale`` x the statistic, per V).
    ``population``: output neurons per class (a class's logit is their logits' mean, its
    decision readings :func:`pool_readings`'s). ``threshold`` (V) defines a spike; ``width`` (V)
    is the soft count's sigmoid width and the voltage that a silent neuron's latency counts as
    one window; ``fire_weight`` makes class neurons fire (:meth:`loss`). Decisions
    (:func:`decide`) follow :data:`DECISION_ORDERS`."""

    kind: str = "count"
    scale: float = 1.0
    threshold: float = SPIKE_THRESHOLD
    width: float = 0.02
    fire_weight: float = 0.0
    population: int = 1

    def __post_init__(self) -> None:
        if self.kind not in READOUTS:
            raise ConfigError(f"unknown readout {self.kind!r}; choose one of {', '.join(READOUTS)}")
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 1:
            raise ConfigError(f"population must be a positive integer (output neurons per class); "
                              f"got {self.population!r}")
        if not self.scale > 0 or not self.width > 0 or not self.fire_weight >= 0:
            raise ConfigError(f"scale and width must be > 0 and fire_weight >= 0; got scale={self.scale!r}, "
                             f"width={self.width!r}, fire_weight={self.fire_weight!r}")

    @property
    def decision_order(self) -> tuple[str, ...]:
        """The spike readings that decide, in turn (:data:`DECISION_ORDERS`)."""
        return DECISION_ORDERS[self.kind]

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """``(batch, n_out / population)`` class logits from the output membranes ``v``."""
        return self._logits(v, latency(v, self.threshold, self.width) if self.kind in SPIKE_READOUTS else None)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of each class's population of a per-neuron ``(batch, n_out)`` quantity."""
        return x if self.population == 1 else x.unflatten(-1, (-1, self.population)).mean(-1)

    def _logits(self, v: torch.Tensor, late: torch.Tensor | None) -> torch.Tensor:
        """:meth:`logits`, given the spike readouts' per-neuron :func:`latency` ``late``."""
        if self.kind == "count":
            per_neuron = soft_spike_counts(v, self.threshold, self.width) + 1 - late
        elif self.kind == "first-spike":
            per_neuron = -late
        elif self.kind == "membrane-mean":
            per_neuron = membrane_mean(v)
        else:
            per_neuron = membrane_max(v)
        return self.scale * self._pooled(per_neuron)

    def loss(self, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of :meth:`logits` against ``labels`` (``(batch,)`` int64); for the
        spike readouts plus ``fire_weight`` x the mean of ``exp(latency) - 1`` of each sample's
        class neuron. Without it, cross-entropy is as content with a class neuron that peaks
        just below threshold, while the others peak lower, as with one that fires: a network
        can learn to decide by silent membranes (ours did, on Fashion-MNIST). The term rises
        steeply while the class neuron is silent and keeps pulling its spike earlier (after
        Göltz et al., Nature Machine Intelligence 2021)."""
        late = latency(v, self.threshold, self.width) if self.kind in SPIKE_READOUTS else None
        loss = F.cross_entropy(self._logits(v, late), labels)
        if self.fire_weight and late is not None:
            own = self._pooled(late).gather(1, labels.unsqueeze(1)).squeeze(1)
            loss = loss + self.fire_weight * torch.expm1(own).mean()
        return loss

    def decide(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted classes and what decided each (indices into :data:`DECIDERS`), ``(batch,)``
        int64 on ``v``'s device: :func:`decide` on the hard readings of ``v``, pooled per class."""
        v = v.detach()
        readings = (spike_counts(v, self.threshold), first_spike_steps(v, self.threshold), membrane_mean(v))
        pooled = pool_readings(*(r.cpu().numpy() for r in readings), self.population, window=v.shape[1] - 1)
        classes, decided_by, _ = decide(*pooled, self.decision_order)
        return torch.as_tensor(classes, device=v.device), torch.as_tensor(decided_by, device=v.device)

    def predict(self, v: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(batch,)`` (:meth:`decide`)."""
        return self.decide(v)[0]
