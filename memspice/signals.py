"""Waveform analysis shared by both engines: spike times from a membrane trace."""

from __future__ import annotations

import numpy as np


def spike_times(t: np.ndarray, v: np.ndarray, threshold: float = 0.45) -> np.ndarray:
    """Times (s) of upward crossings of ``threshold`` (V), linearly interpolated between samples.

    ``t`` and ``v`` are 1-D arrays of equal length (s, V).
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"t and v must be 1-D arrays of equal length, got shapes {t.shape} and {v.shape}")
    below = v[:-1] < threshold
    above = v[1:] >= threshold
    k = np.nonzero(below & above)[0]
    frac = (threshold - v[k]) / (v[k + 1] - v[k])
    return t[k] + frac * (t[k + 1] - t[k])
