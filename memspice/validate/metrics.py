"""Waveform and spike-train agreement between a reference (ngspice) and a candidate (torch)."""

from __future__ import annotations

import math

import numpy as np

from memspice.signals import spike_times


def compare(t: np.ndarray, reference: np.ndarray, candidate: np.ndarray, threshold: float = 0.45) -> dict:
    """Metrics of ``candidate`` against ``reference``, both sampled on the grid ``t`` (s, V):

    * ``nrmse``: RMS error over the reference's peak-to-peak;
    * ``max_abs_error_V``;
    * ``spikes_ref``, ``spikes_torch``: upward crossings of ``threshold`` (V);
    * ``spike_time_mean_abs_error_s``, ``spike_time_max_abs_error_s``: over spikes paired in
      order (the first ``min`` of both counts);
    * ``spike_time_error_over_isi``: the mean error over the reference's mean inter-spike
      interval.
    """
    t, ref, cand = (np.asarray(a, dtype=float) for a in (t, reference, candidate))
    error = cand - ref
    span = np.ptp(ref)
    ref_spikes, cand_spikes = spike_times(t, ref, threshold), spike_times(t, cand, threshold)
    paired = min(len(ref_spikes), len(cand_spikes))
    timing = np.abs(cand_spikes[:paired] - ref_spikes[:paired])
    isi = float(np.mean(np.diff(ref_spikes))) if len(ref_spikes) > 1 else float("nan")
    mean_timing = float(timing.mean()) if paired else float("nan")
    return {
        "nrmse": float(np.sqrt(np.mean(error**2)) / span) if span > 0 else float("nan"),
        "max_abs_error_V": float(np.abs(error).max()),
        "spikes_ref": len(ref_spikes),
        "spikes_torch": len(cand_spikes),
        "spike_time_mean_abs_error_s": mean_timing,
        "spike_time_max_abs_error_s": float(timing.max()) if paired else float("nan"),
        "mean_isi_ref_s": isi,
        "spike_time_error_over_isi": mean_timing / isi if paired and not math.isnan(isi) else float("nan"),
    }
