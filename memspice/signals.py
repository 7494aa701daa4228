"""Waveform analysis shared by both engines: spike times from a membrane trace."""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial
from scipy.optimize import brentq

from memspice.defaults import SPIKE_THRESHOLD
from memspice.errors import ConfigError


def spike_times(t: np.ndarray, v: np.ndarray, threshold: float = SPIKE_THRESHOLD) -> np.ndarray:
    """Times (s) of upward crossings of ``threshold`` (V), linearly interpolated between samples.

    ``t`` and ``v`` are 1-D arrays of equal length (s, V).
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    if t.shape != v.shape or t.ndim != 1:
        raise ConfigError(f"t and v must be 1-D arrays of equal length, got shapes {t.shape} and {v.shape}")
    below = v[:-1] < threshold
    above = v[1:] >= threshold
    k = np.nonzero(below & above)[0]
    frac = (threshold - v[k]) / (v[k + 1] - v[k])
    return t[k] + frac * (t[k + 1] - t[k])


def dense_spike_times(t: np.ndarray, values: np.ndarray, at_nodes: np.ndarray, nodes: tuple[float, ...],
                      level: float = SPIKE_THRESHOLD) -> np.ndarray:
    """Times (s) of upward crossings of ``level`` by a solver's dense output of one signal (a
    membrane in V, or a state): the steps run from ``t[j]`` to ``t[j+1]`` (s, ``(K+1,)``) with
    the signal ``values`` at their ends (``(K+1,)``) and ``at_nodes`` at the fractions ``nodes``
    of each step (``(K, s)``, a collocation method's stages). Crossings are found among all these
    samples and located on the polynomial through each step's start, nodes and end (a Radau IIA
    step's collocation polynomial), not on the straight line between samples, whose error at a
    spike's curved upstroke grows with dt² (radau7 at 250 ns: 0.20 % of the ISI instead of 0.06 %,
    benchmarks/steps_per_isi.py)."""
    t, values, at_nodes = (np.asarray(a, dtype=float) for a in (t, values, at_nodes))
    if values.shape != t.shape or t.ndim != 1 or at_nodes.shape != (len(t) - 1, len(nodes)):
        raise ConfigError(f"t {t.shape}, values {values.shape} and at_nodes {at_nodes.shape} do not fit "
                          f"{len(nodes)} nodes per step")
    interior = [i for i, c in enumerate(nodes) if 0.0 < c < 1.0]
    fractions = np.array([0.0, *(nodes[i] for i in interior), 1.0])
    samples = np.concatenate([values[:-1, None], at_nodes[:, interior], values[1:, None]], axis=1)  # (K, fractions)
    below = samples[:, :-1] < level
    above = samples[:, 1:] >= level
    out = []
    for j, a in zip(*np.nonzero(below & above)):
        coefficients = polynomial.polyfit(fractions, samples[j], len(fractions) - 1)
        low, high = fractions[a], fractions[a + 1]
        try:
            tau = brentq(lambda x: polynomial.polyval(x, coefficients) - level, low, high)
        except ValueError:  # the interpolant misses a sample by rounding: the straight line
            tau = low + (level - samples[j, a]) / (samples[j, a + 1] - samples[j, a]) * (high - low)
        out.append(t[j] + tau * (t[j + 1] - t[j]))
    return np.array(out)


def spike_shapes(t: np.ndarray, v: np.ndarray, threshold: float = SPIKE_THRESHOLD,
                 rest: float = 0.0) -> dict[str, np.ndarray]:
    """Per-spike shape measures of a membrane trace (t in s, v in V); one value per spike
    (upward crossing of ``threshold``, V), NaN where the trace ends before it can be measured:

    * ``threshold`` (V): the voltage at the kink of the upstroke, the largest d²V/dt² on the rising,
      accelerating stretch before the steepest rise (where regenerative feedback takes over);
    * ``peak`` (V); ``width`` (s): full width at half height between threshold and peak;
    * ``undershoot`` (V): the lowest voltage between the peak and the next spike;
    * ``refractory`` (s): from the peak until the membrane climbs back through ``rest`` (V)
      after the undershoot, the hyperpolarized phase.
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    dvdt = np.gradient(v, t)
    curvature = np.gradient(dvdt, t)
    crossings = np.searchsorted(t, spike_times(t, v, threshold))
    ends = [*crossings[1:], len(t)]
    names = ("threshold", "peak", "width", "undershoot", "refractory")
    out = {k: np.full(len(crossings), np.nan) for k in names}
    previous_peak = 0
    for k, (cross, end) in enumerate(zip(crossings, ends)):
        peak = cross + int(np.argmax(v[cross:end]))
        steep = previous_peak + int(np.argmax(dvdt[previous_peak : peak + 1]))
        accelerating = steep  # back through the rising, accelerating part of the upstroke only
        while accelerating > previous_peak and dvdt[accelerating - 1] > 0 and curvature[accelerating - 1] > 0:
            accelerating -= 1
        onset = accelerating + int(np.argmax(curvature[accelerating : steep + 1]))
        half = (v[onset] + v[peak]) / 2
        rise = onset + int(np.argmax(v[onset : peak + 1] >= half))
        fall = np.nonzero(v[peak:end] < half)[0]
        low = peak + int(np.argmin(v[peak:end]))
        back = np.nonzero(v[low:end] >= rest)[0]
        out["threshold"][k], out["peak"][k] = v[onset], v[peak]
        if len(fall):
            out["width"][k] = t[peak + fall[0]] - t[rise]
        if len(back):  # the trace holds the whole undershoot
            out["undershoot"][k] = v[low]
            out["refractory"][k] = t[low + back[0]] - t[peak]
        previous_peak = peak
    return out
