"""Simulation results: a time vector plus named node voltages and branch currents."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memspice.errors import ConfigError
from memspice.fileio import atomic_write_bytes, atomic_write_text
from memspice.signals import spike_times
from memspice.spice.rawfile import RawPlot


@dataclass
class Waveforms:
    """``time`` (s, 1-D) and ``signals`` named as ngspice names them (``v(mem)``, ``i(vin)``),
    each a 1-D array over ``time`` (V or A)."""

    time: np.ndarray
    signals: dict[str, np.ndarray]

    @classmethod
    def from_plot(cls, plot: RawPlot) -> Waveforms:
        if "time" not in plot.variables:
            raise ConfigError(f"plot {plot.plotname!r} is not a transient analysis (no time vector)")
        signals = {k: np.real(v) for k, v in plot.variables.items() if k != "time"}
        return cls(np.real(plot.variables["time"]), signals)

    @property
    def voltages(self) -> list[str]:
        return [k for k in self.signals if k.startswith("v(")]

    @property
    def node_voltages(self) -> list[str]:
        """The voltages of the top circuit's nodes, without those inside subcircuit instances
        (``v(xneuron.x1)``: a device's internal state node, not a membrane)."""
        return [k for k in self.voltages if "." not in k]

    def select(self, probes: Iterable[str] | None) -> Waveforms:
        """Only the named signals (``mem``, ``V(mem)`` and ``v(mem)`` all name a node voltage)."""
        if probes is None:
            return self
        chosen = {}
        for probe in probes:
            key = probe.lower() if "(" in probe else f"v({probe.lower()})"
            if key not in self.signals:
                raise KeyError(f"no signal {probe!r}; available: {', '.join(self.signals)}")
            chosen[key] = self.signals[key]
        return Waveforms(self.time, chosen)

    def interpolate(self, grid: np.ndarray) -> Waveforms:
        """The signals linearly interpolated onto ``grid`` (s)."""
        grid = np.asarray(grid, dtype=float)
        return Waveforms(grid, {k: np.interp(grid, self.time, v) for k, v in self.signals.items()})

    def spikes(self, threshold: float, probes: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Spike times (s) of each node voltage: upward crossings of ``threshold`` (V)."""
        picked = self.select(probes) if probes is not None else self
        return {k: spike_times(self.time, v, threshold) for k, v in picked.signals.items() if k.startswith("v(")}

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` (arrays ``time`` and one per signal) or ``.csv`` (a header row), atomically."""
        path = Path(path)
        if path.suffix == ".npz":
            buf = io.BytesIO()
            np.savez(buf, time=self.time, **self.signals)
            return atomic_write_bytes(path, buf.getvalue())
        if path.suffix == ".csv":
            table = np.column_stack([self.time, *self.signals.values()])
            buf = io.StringIO()
            np.savetxt(buf, table, delimiter=",", header=",".join(["time", *self.signals]), comments="", fmt="%.17g")
            return atomic_write_text(path, buf.getvalue())
        raise ConfigError(f"cannot save waveforms as {path.name!r}: use a .npz or .csv file name")
