"""Characterize a MIF neuron in ngspice: f–I curve and spike shape (``memspice characterize mif``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from memspice.defaults import SPIKE_THRESHOLD
from memspice.devices import MIF
from memspice.errors import ConfigError
from memspice.netlist.builder import TranSettings
from memspice.netlist.examples import STEP_RISE, mif_step
from memspice.signals import spike_shapes, spike_times
from memspice.spice.pool import Workers, raise_first_error, run_many
from memspice.spice.results import Waveforms

#: The f–I grid: log-spaced input currents (A).
DEFAULT_CURRENTS = tuple(float(x) for x in np.geomspace(0.25e-6, 32e-6, 15))
START, STOP, T_END = 10e-6, 110e-6, 120e-6  # the reference step (s), as in the KANG2021 measurements


@dataclass
class Characterization:
    """Measured in ngspice. Currents in A, times in s, voltages in V, rates in Hz; the shape
    figures are means over the spikes of the reference run (see :func:`memspice.signals.spike_shapes`)."""

    currents: list[float]
    spike_counts: list[int]
    rates: list[float]
    rheobase: float | None  #: the smallest grid current that makes the neuron fire
    reference_current: float
    isi: float
    threshold: float
    peak: float
    width: float
    undershoot: float
    refractory: float
    spike_threshold: float  #: the detection level of spikes (V)
    params: dict  #: every neuron parameter, SI units
    settings: dict
    wall_s: float
    reference_trace: tuple[np.ndarray, np.ndarray] | None = None  #: (t, v) of the reference run

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("reference_trace")
        units = {"currents": "currents_A", "rates": "rates_hz", "rheobase": "rheobase_A",
                 "reference_current": "reference_current_A", "isi": "isi_s", "threshold": "threshold_V",
                 "peak": "peak_V", "width": "width_s", "undershoot": "undershoot_V", "refractory": "refractory_s",
                 "spike_threshold": "spike_threshold_V"}
        return {"engine": "ngspice", **{units.get(k, k): v for k, v in out.items()}}


def characterize_mif(
    currents: Sequence[float] = DEFAULT_CURRENTS,
    reference_current: float = 2e-6,
    params: Mapping[str, float] | None = None,
    spike_threshold: float = SPIKE_THRESHOLD,
    workers: Workers = None,
    timeout: float = 600.0,
    progress: bool = True,
) -> Characterization:
    """Run the neuron under a 100 µs step of each current (and of ``reference_current``) in
    ngspice, in parallel, and measure it."""
    currents = [float(c) for c in currents]
    if not currents or min(currents) <= 0 or not np.all(np.isfinite(currents)):
        raise ConfigError(f"currents must be positive finite values in A; got {currents}")
    settings = TranSettings(t_end=T_END)
    amplitudes = [*currents, float(reference_current)]
    jobs = [(f"fi{k}", mif_step(amplitude=a, start=START, stop=STOP, t_end=T_END, params=params, settings=settings))
            for k, a in enumerate(amplitudes)]
    start = time.perf_counter()
    results = run_many(jobs, workers=workers, timeout=timeout, progress=progress)
    raise_first_error(results)
    wall = time.perf_counter() - start
    traces = [Waveforms.from_plot(r.value[-1]) for r in results]
    counts = []
    for w in traces:
        spikes = spike_times(w.time, w.signals["v(mem)"], spike_threshold)
        counts.append(int(np.sum((spikes >= START) & (spikes < STOP))))
    t, v = traces[-1].time, traces[-1].signals["v(mem)"]
    shapes = spike_shapes(t, v, spike_threshold)
    spikes = spike_times(t, v, spike_threshold)
    firing = [c for c, n in zip(currents, counts[:-1]) if n > 0]

    def mean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if np.any(np.isfinite(x)) else float("nan")

    return Characterization(
        currents=currents,
        spike_counts=counts[:-1],
        rates=[n / (STOP - START) for n in counts[:-1]],
        rheobase=min(firing) if firing else None,
        reference_current=float(reference_current),
        isi=float(np.mean(np.diff(spikes))) if len(spikes) > 1 else float("nan"),
        threshold=mean(shapes["threshold"]),
        peak=mean(shapes["peak"]),
        width=mean(shapes["width"]),
        undershoot=mean(shapes["undershoot"]),
        refractory=mean(shapes["refractory"]),
        spike_threshold=spike_threshold,
        params=MIF.resolve(params),
        settings={**settings.describe(), "stimulus": f"current steps from {START:g} s to {STOP:g} s, "
                                                     f"{STEP_RISE:g} s edges"},
        wall_s=wall,
        reference_trace=(t, v),
    )
