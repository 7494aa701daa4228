"""Stimulus waveforms: the same object writes its SPICE source text and samples itself in numpy,
so that ngspice and the torch solver see the same input.

Each waveform is a value over time (V for voltage sources, A for current sources; the element
that uses it decides which). Semantics follow ngspice's ``DC``, ``PWL`` and ``PULSE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.errors import NetlistError
from memspice.netlist import text


@dataclass(frozen=True)
class DC:
    """A constant ``value``."""

    value: float

    def __post_init__(self) -> None:
        text.number(self.value, "DC value")

    def spice(self) -> str:
        return f"DC {text.number(self.value)}"

    def sample(self, t: np.ndarray) -> np.ndarray:
        return np.full(np.shape(t), float(self.value))


@dataclass(frozen=True)
class PWL:
    """Piecewise-linear through ``(times[k], values[k])``; constant before the first point and
    after the last. ``times`` in s, non-negative and strictly increasing."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    def __init__(self, times, values) -> None:
        t = np.asarray(times, dtype=float).ravel()
        v = np.asarray(values, dtype=float).ravel()
        if t.size == 0 or t.size != v.size:
            raise NetlistError(f"PWL needs as many times as values, at least one; got {t.size} times, {v.size} values")
        text.numbers(t, "PWL times")
        text.numbers(v, "PWL values")
        if t[0] < 0 or np.any(np.diff(t) <= 0):
            raise NetlistError(f"PWL times must be >= 0 and strictly increasing; got {t.tolist()[:8]}...")
        object.__setattr__(self, "times", tuple(t.tolist()))
        object.__setattr__(self, "values", tuple(v.tolist()))

    def spice(self) -> str:
        pairs = " ".join(f"{t!r} {v!r}" for t, v in zip(self.times, self.values))
        return f"PWL({pairs})"

    def sample(self, t: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=float), self.times, self.values)


@dataclass(frozen=True)
class Pulse:
    """A pulse train (ngspice ``PULSE``): ``low`` until ``delay``, then every ``period`` a ramp to
    ``high`` over ``rise``, ``width`` at ``high``, a ramp back over ``fall``. Times in s."""

    low: float
    high: float
    delay: float
    rise: float
    fall: float
    width: float
    period: float

    def __post_init__(self) -> None:
        for field in ("low", "high", "delay", "rise", "fall", "width", "period"):
            text.number(getattr(self, field), f"pulse {field}")
        if min(self.rise, self.fall) <= 0 or self.width < 0 or self.delay < 0:
            raise NetlistError(f"pulse times must be rise, fall > 0 and width, delay >= 0; got {self}")
        if self.rise + self.width + self.fall > self.period:
            raise NetlistError(f"pulse rise + width + fall must fit in the period; got {self}")

    def spice(self) -> str:
        fields = (self.low, self.high, self.delay, self.rise, self.fall, self.width, self.period)
        return "PULSE(" + " ".join(text.number(x) for x in fields) + ")"

    def sample(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        phase = np.mod(t - self.delay, self.period)
        up = np.clip(phase / self.rise, 0.0, 1.0)
        down = np.clip((phase - self.rise - self.width) / self.fall, 0.0, 1.0)
        level = np.where(t < self.delay, 0.0, up - down)
        return self.low + (self.high - self.low) * level


Waveform = DC | PWL | Pulse
