"""Waveform and spike-train agreement between a reference (ngspice) and a candidate (torch)."""

from __future__ import annotations

import math

import numpy as np

from memspice.defaults import SPIKE_THRESHOLD
from memspice.signals import spike_times


def compare(t_ref: np.ndarray, v_ref: np.ndarray, t: np.ndarray, candidate: np.ndarray,
            threshold: float = SPIKE_THRESHOLD, spikes: np.ndarray | None = None,
            ref_spikes: np.ndarray | None = None) -> dict:
    """Metrics of ``candidate`` (V, sampled on the grid ``t``, s) against the reference waveform
    ``v_ref`` (V) on its own time points ``t_ref`` (s):

    * ``nrmse``: RMS error over the reference's peak-to-peak, with the reference interpolated
      onto ``t``;
    * ``max_abs_error_V``: on the same grid;
    * ``spikes_ref``, ``spikes_torch``: spike times up to the last step (``t[-2]``): the reference's are
      ``ref_spikes`` (s) when given (e.g. a neuron state's crossings,
      :class:`~memspice.validate.cases.SpikeReading`), else its upward crossings of ``threshold``
      (V) on its own time points (a coarse grid could step over a narrow spike); the candidate's
      are ``spikes`` (s) when given (read from a solver's dense output,
      :meth:`memspice.solver.Solution.spike_times`), else its crossings on ``t``;
    * ``spike_time_mean_abs_error_s``, ``spike_time_max_abs_error_s``: over spikes paired in
      order (the first ``min`` of both counts);
    * ``spike_time_error_over_isi``: the mean error over the reference's mean inter-spike
      interval.
    """
    t_ref, v_ref, t, cand = (np.asarray(a, dtype=float) for a in (t_ref, v_ref, t, candidate))
    ref = np.interp(t, t_ref, v_ref)
    error = cand - ref
    span = np.ptp(ref)
    ref_spikes = spike_times(t_ref, v_ref, threshold) if ref_spikes is None else np.asarray(ref_spikes, dtype=float)
    cand_spikes = np.asarray(spikes, dtype=float) if spikes is not None else spike_times(t, cand, threshold)
    # a spike a ns before the end in one engine and a ns after it in the other is a timing
    # difference, not a missing spike: both count up to the start of the last step
    horizon = t[-2] if len(t) > 1 else t[-1]
    ref_spikes, cand_spikes = ref_spikes[ref_spikes <= horizon], cand_spikes[cand_spikes <= horizon]
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


#: Issue 4's agreement targets: equal spike counts, mean spike-time error <= 1 % of the ISI,
#: NRMSE <= 5 %.
MAX_SPIKE_TIME_ERROR_OVER_ISI = 0.01
MAX_NRMSE = 0.05


def targets(probes: dict[str, dict]) -> dict:
    """Whether every probe meets the agreement targets, with the worst figures."""
    equal = all(m["spikes_ref"] == m["spikes_torch"] for m in probes.values())
    timing = [m["spike_time_error_over_isi"] for m in probes.values() if not math.isnan(m["spike_time_error_over_isi"])]
    worst_timing = max(timing, default=float("nan"))
    worst_nrmse = max(m["nrmse"] for m in probes.values())
    return {"equal_spike_counts": equal, "worst_spike_time_error_over_isi": worst_timing, "worst_nrmse": worst_nrmse,
            "met": bool(equal and not worst_timing > MAX_SPIKE_TIME_ERROR_OVER_ISI and worst_nrmse <= MAX_NRMSE)}
