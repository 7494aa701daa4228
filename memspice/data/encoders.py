"""Input encoders: pixels in [0, 1] -> row voltages of the first crossbar, sampled on the grid.

An encoder maps ``x`` (``(batch, n_in)``, in [0, 1]) to voltages ``(batch, n_steps + 1, n_in)``
(V) at ``t_n = n·dt``; the solver and the netlist both take them as piecewise linear between
samples, so the same samples are the SPICE ``PWL`` sources of an exported network. Sample 0 is
0 V: the network starts from rest and the input rises within the first step.

Read voltages stay within ``[0, 1] V`` by default: with membranes within about ±0.6 V a
synapse then sees at most ~1.6 V, below the memristor's ±2 V write thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memspice.errors import ConfigError

ENCODERS = ("direct", "rate")


def _check(x: torch.Tensor, n_steps: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ConfigError(f"x must be a (batch, n_in) float tensor; got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ConfigError(f"n_steps must be a positive integer; got {n_steps!r}")


@dataclass(frozen=True)
class DirectEncoder:
    """Pixel ``p`` -> the constant row voltage ``v_low + p·(v_high - v_low)`` (V)."""

    v_low: float = 0.0
    v_high: float = 1.0

    def __post_init__(self) -> None:
        if not -2.0 < self.v_low < self.v_high < 2.0:
            raise ConfigError(f"need -2 V < v_low < v_high < 2 V (below the synapse write thresholds); "
                             f"got v_low={self.v_low!r}, v_high={self.v_high!r}")

    def __call__(self, x: torch.Tensor, n_steps: int, index: torch.Tensor | None = None) -> torch.Tensor:
        _check(x, n_steps)
        u = self.v_low + x * (self.v_high - self.v_low)
        out = u.unsqueeze(1).expand(-1, n_steps + 1, -1).clone()
        out[:, 0] = 0.0
        return out


@dataclass(frozen=True)
class RateEncoder:
    """Pixel ``p`` -> a pulse train: at each grid sample, a pulse of ``amplitude`` (V) with
    probability ``p·max_probability`` (a triangle two steps wide, since inputs are linear between
    samples). The pulses of dataset sample ``index`` are drawn from a generator seeded with
    ``(seed, index)``, so training, export and verification see the same train."""

    amplitude: float = 1.0
    max_probability: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.amplitude < 2.0:
            raise ConfigError(f"amplitude must be in (0, 2) V (below the synapse write thresholds); "
                             f"got {self.amplitude!r}")
        if not 0.0 < self.max_probability <= 1.0:
            raise ConfigError(f"max_probability must be in (0, 1]; got {self.max_probability!r}")

    def __call__(self, x: torch.Tensor, n_steps: int, index: torch.Tensor | None = None) -> torch.Tensor:
        _check(x, n_steps)
        if index is None:
            raise ConfigError("the rate encoder needs the dataset index of every sample (for reproducible pulses)")
        draws = torch.empty(x.shape[0], n_steps, x.shape[1], dtype=x.dtype)
        for row, i in enumerate(index.tolist()):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
            draws[row] = torch.rand(n_steps, x.shape[1], generator=generator, dtype=x.dtype)
        pulses = (draws.to(x.device) < (x * self.max_probability).unsqueeze(1)).to(x.dtype) * self.amplitude
        return torch.cat([torch.zeros_like(pulses[:, :1]), pulses], dim=1)


def make_encoder(name: str, **options) -> DirectEncoder | RateEncoder:
    """The encoder ``name`` (one of :data:`ENCODERS`) with ``options``."""
    if name == "direct":
        return DirectEncoder(**options)
    if name == "rate":
        return RateEncoder(**options)
    raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
