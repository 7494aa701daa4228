"""Chips: what a real memristive chip does to a trained network, applied identically by both engines.

A :class:`HardwareSpec` describes a family of chips (how strong each non-ideality is); a
:class:`Chip` is one sample of it for one network's sizes, drawn once from a seed. The chip holds
every random number it needs (per cell and per neuron), so the torch solver
(:meth:`Chip.program` inside :class:`~memspice.nn.MemristiveSNN`) and the netlister
(:meth:`Chip.apply`) compute the same conductances and neuron parameters from the same draws:
"the same chip" means the same numbers in both engines. Normal draws are truncated at ±3σ.

How a trained conductance ``G`` in ``[g_min, g_max]`` becomes the conductance a cell holds:

1. its fraction of the range ``f = (G - g_min) / (g_max - g_min)`` is rounded to one of
   ``levels`` equally spaced states (when ``levels`` is set; the gradient passes straight
   through the rounding, as in quantization-aware training);
2. the cell's own range (device-to-device spread): ``lo = g_min·exp(σ_r ε₁)``,
   ``hi = g_max·exp(σ_r ε₂)``, and the target ``lo + f (hi - lo)``;
3. programming error: Gaussian, σ = ``sqrt((program_noise·(hi - lo))² + (program_noise_relative·G)²)``
   (absolute in units of the range, and proportional to the target), the result kept in ``[lo, hi]``;
4. stuck cells: a ``stuck_off`` fraction of cells sits at its ``lo`` and a ``stuck_on`` fraction
   at its ``hi`` whatever was programmed (no gradient reaches them). With ``compensate_stuck``
   the programmer, which finds stuck cells when their write-verify fails, targets each stuck
   cell's partner in its differential pair at the conductance that gives the pair its trained
   difference (the stuck cell's own ``lo`` or ``hi`` plus or minus it, kept within
   ``[g_min, g_max]``), and that target goes through steps 1-3 like any other: the fault-tolerant
   mapping of differential crossbars (Xia et al., "Fault-tolerant training with on-line fault
   detection for RRAM-based neural computing systems", DAC 2017; Aguirre et al., Electronics
   10(19), 2427, 2021). A pair whose two cells are stuck stays as it is.

Read noise: every read of a cell fluctuates by ``read_noise`` of its conductance, independently
from cell to cell and from read to read; summed over a column at the read voltage
:data:`READ_VOLTAGE` that is a current of σ = ``read_noise·READ_VOLTAGE·sqrt(Σ_i G⁺_ij² + G⁻_ij²)``
into each membrane, drawn afresh at every grid step (one read per step, linear in between) from the
chip's seed and the test sample's index, so both engines see the same sequence for the same sample
(ngspice as a PWL current source per neuron). Its σ is taken as a constant in training.

Wires: with ``wire_resistance`` (Ω per segment) every crossbar side is a grid of resistive row and
column wires in tiles of ``tile_size`` cells (:mod:`memspice.hardware.wires`), an exact linear
multiport computed from the programmed conductances; its gradient is taken as the ideal
crossbar's (the wires' correction enters as a constant: it depends on the conductances, but
weakly).

Neurons: each MIF neuron's switch on-conductances and membrane capacitance are their nominal
values times ``1 + neuron_spread·ε``, and its switching voltages (``th``/``hold`` of each switch,
scaled together so that the hysteresis keeps its shape) times ``1 + threshold_spread·ε``, one ε
per neuron and group (:data:`NEURON_GROUPS`). The thresholds have a spread of their own because
they matter most: a network whose neurons work near their threshold feels a few percent of it.

Trims (``trim_bits``): analog neuromorphic chips calibrate every neuron after fabrication with
per-neuron parameter DACs (BrainScaleS-2 trims each neuron's membrane capacitance and its
threshold and leak levels: Aamir et al., IEEE TCAS-I 65(12), 2018; Billaudelle et al., ISCAS
2020). A trimmed chip gives each neuron codes of ``trim_bits`` bits, set once by calibration after
the synapses are programmed. Every scheme has a capacitor bank that multiplies the membrane
capacitance by the step nearest to ``1 / factor``, the bank's steps spaced evenly over what the
spec's spread needs (±3σ, :data:`TRUNCATE`). The threshold is trimmed by one of two schemes
(``trim_scheme``):

* ``"membrane"``: a current DAC injects ``b_j = (th1_j - th1) · L_j`` into the membrane, ``L_j``
  the conductance it sees with both switches OFF (its column's load, the leak and the switches'
  ``goff``): it raises the membrane's level by the threshold's own offset, so that an input brings
  the neuron as close to its threshold as it brings the nominal one (exactly where the switches
  are OFF; their leakage just below threshold is not compensated). The current is DC: between
  samples the membrane rests at the raised level, and a run starts from there. The DAC of a layer
  spans its largest ``|b_j|`` in ``2^(trim_bits-1) - 1`` steps per sign (a global range and a
  local code); the rounding passes the gradient straight through, and the trim tracks the
  programmed loads (a chip is recalibrated whenever it is reprogrammed). It leaves the spread of
  the switches' on-conductances and of the repolarizing switch's voltages, the switches' leakage
  below threshold, and the rest levels' shift, which linear row buffers pass on to the next layer
  (its rows at rest are not 0 V).
* ``"switch"``: each switch is trimmed where it sits. Its series source is a voltage DAC (as
  BrainScaleS-2 sets every neuron's reversal, threshold and leak potentials from per-neuron DACs:
  Hock et al., ISCAS 2013; Aamir et al. 2018) set to ``e_s - δ_s``, ``δ_s = th_s·(f_s - 1)`` the
  shift of the switch's threshold on the membrane (``f_s`` its factor): a switch responds to its
  own branch voltage ``V - e_s``, so it then turns on at the nominal membrane voltage. Each DAC
  spans its layer's largest ``|δ_s|`` in ``2^(trim_bits-1) - 1`` steps per sign, the rounding
  passed straight through. And a transistor in series with each switch (the selector of a 1T1R
  cell) has a gate DAC that sets the branch's on-conductance to the step nearest to nominal, a
  bank like the capacitor's. The membrane rests at 0 V, and nothing depends on the synapses. It
  leaves the spread of each hysteresis' width (``th - hold`` scales with ``f_s``) and of the
  driving force ``V - e_s``.

Calibration is modelled as exact up to the DACs' resolution (the neuron's own parameters give
what a sweep of the DAC would find).

Calibration in the loop (``Chip.calibration``): what the trims leave, a chip can learn with its
network running on it. :func:`memspice.train.calibration.calibrate` adds an integer to each
neuron's threshold-DAC code (the membrane current's, or the depolarizing switch's source's),
fitted by gradient descent on labelled samples with the chip in the
loop and the synapses left as programmed (the codes are exact, a reprogrammed cell is not), as
hardware-in-the-loop training does on BrainScaleS (Schmitt et al., IJCNN 2017; Cramer et al.,
PNAS 119(4), 2022) and chip-in-the-loop fine-tuning on NeuRRAM (Wan et al., Nature 2022). The
codes are part of the chip: both engines and every report carry them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from memspice.circuit import Crossbar, Network, NeuronLayer
from memspice.errors import ConfigError
from memspice.hardware.wires import side_ports
from memspice.solver.transient import CrossbarPorts

#: MIF parameters that vary from neuron to neuron, in groups that share one factor, and the spec's
#: field that sets each group's relative σ.
NEURON_GROUPS = {"th1": ("th1", "hold1"), "th2": ("th2", "hold2"), "gon1": ("gon1",), "gon2": ("gon2",),
                 "cm": ("cm",)}
GROUP_SPREAD = {"th1": "threshold_spread", "th2": "threshold_spread", "gon1": "neuron_spread",
                "gon2": "neuron_spread", "cm": "neuron_spread"}
#: Normal draws are truncated at this many σ (keeps every factor positive for spreads up to 0.3).
TRUNCATE = 3.0
#: The largest relative spread a spec accepts: with TRUNCATE, every factor stays >= 0.1.
MAX_SPREAD = 0.3
#: The read voltage (V) at which read noise is specified: the largest row drive of memspice's encoders.
READ_VOLTAGE = 1.0
#: Most trim bits a spec accepts (finer trims than a 16-bit DAC make no difference here).
MAX_TRIM_BITS = 16
#: How a trimmed neuron is trimmed (module docstring, "Trims"): its threshold by a DC current into
#: the membrane, or at each switch (its series source and on-conductance); and the groups of
#: :data:`NEURON_GROUPS` each scheme trims by a factor.
TRIM_SCHEMES = ("membrane", "switch")
TRIMMED_FACTORS = {"membrane": ("cm",), "switch": ("cm", "gon1", "gon2")}
#: Each switch's parameters on the membrane voltage and its series source, for ``trim_scheme="switch"``;
#: calibration in the loop moves the first switch's DAC.
SWITCH_TRIMS = {"th1": ("th1", "hold1", "e1"), "th2": ("th2", "hold2", "e2")}
#: Cell states: 0 programmable, 1 stuck at its lowest conductance, 2 stuck at its highest.
FREE, STUCK_OFF, STUCK_ON = 0, 1, 2


#: The settings that say how strong an effect is (0: absent), as opposed to levels and tiles.
_STRENGTHS = ("program_noise", "program_noise_relative", "range_spread", "stuck_off", "stuck_on", "neuron_spread",
              "threshold_spread", "read_noise", "wire_resistance")


@dataclass(frozen=True)
class HardwareSpec:
    """How strong each non-ideality of a family of chips is (relative σ and fractions are plain
    numbers: 0.1 is 10 %). ``name`` labels reports. See the module docstring for the model.

    * ``levels``: programmable conductance states per cell (``None``: continuous);
    * ``program_noise``: σ of the programmed conductance as a fraction of the cell's range;
    * ``program_noise_relative``: σ as a fraction of the target conductance;
    * ``range_spread``: device-to-device σ of ln g_min and ln g_max of each cell;
    * ``stuck_off``, ``stuck_on``: fractions of cells stuck at g_min, at g_max;
    * ``compensate_stuck``: whether programming sets a stuck cell's partner to keep the pair's
      difference (module docstring, step 4);
    * ``neuron_spread``: device-to-device σ of each neuron's switch on-conductances and capacitance;
    * ``threshold_spread``: device-to-device σ of each neuron's switching voltages;
    * ``read_noise``: σ of each cell's conductance at every read (cycle to cycle), relative;
    * ``wire_resistance``: Ω of each row and column wire segment between two cells (0: ideal wires);
    * ``tile_size``: a layer is split into tiles of at most this many rows and columns, each with
      its own wires, whose column currents meet at the neurons (``None``: one tile per layer);
    * ``trim_bits``: bits of each neuron's calibration trims (``None``: untrimmed; module docstring);
    * ``trim_scheme``: how a neuron is trimmed, ``"membrane"`` (its capacitance, and its threshold
      by a DC current into the membrane) or ``"switch"`` (its capacitance, and each switch's
      series source and on-conductance; module docstring, "Trims")."""

    name: str = "custom"
    levels: int | None = None
    program_noise: float = 0.0
    program_noise_relative: float = 0.0
    range_spread: float = 0.0
    stuck_off: float = 0.0
    stuck_on: float = 0.0
    compensate_stuck: bool = False
    neuron_spread: float = 0.0
    threshold_spread: float = 0.0
    read_noise: float = 0.0
    wire_resistance: float = 0.0
    tile_size: int | None = None
    trim_bits: int | None = None
    trim_scheme: str = "membrane"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isprintable() or not self.name:
            raise ConfigError(f"hardware name must be printable text; got {self.name!r}")
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or self.levels < 2):
            raise ConfigError(f"hardware levels must be an integer >= 2 (or None: continuous); got {self.levels!r}")
        if self.tile_size is not None and (isinstance(self.tile_size, bool) or not isinstance(self.tile_size, int)
                                           or self.tile_size < 1):
            raise ConfigError(f"hardware tile_size must be a positive integer (or None: one tile per layer); "
                              f"got {self.tile_size!r}")
        if self.trim_bits is not None and (isinstance(self.trim_bits, bool) or not isinstance(self.trim_bits, int)
                                           or not 2 <= self.trim_bits <= MAX_TRIM_BITS):
            raise ConfigError(f"hardware trim_bits must be an integer in [2, {MAX_TRIM_BITS}] (or None: untrimmed "
                              f"neurons); got {self.trim_bits!r}")
        if not isinstance(self.compensate_stuck, bool):
            raise ConfigError(f"hardware compensate_stuck must be true or false; got {self.compensate_stuck!r}")
        if self.trim_scheme not in TRIM_SCHEMES:
            raise ConfigError(f"hardware trim_scheme must be one of {', '.join(map(repr, TRIM_SCHEMES))}; "
                              f"got {self.trim_scheme!r}")
        for name in _STRENGTHS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"hardware {name} must be a finite number >= 0; got {value!r}")
        for name in ("range_spread", "neuron_spread", "threshold_spread"):
            if getattr(self, name) > MAX_SPREAD:
                raise ConfigError(f"hardware {name} = {getattr(self, name)!r}: at most {MAX_SPREAD} (a relative σ; "
                                  "larger spreads would make parameters non-positive)")
        if self.stuck_off + self.stuck_on > 1:
            raise ConfigError(f"hardware stuck_off + stuck_on = {self.stuck_off + self.stuck_on!r}: fractions of "
                              "cells, at most 1 together")

    @property
    def ideal(self) -> bool:
        """Whether chips of this spec are the ideal circuit."""
        return self.levels is None and not any(getattr(self, name) for name in _STRENGTHS)

    def to_dict(self) -> dict:
        """JSON-serializable; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "hardware description") -> HardwareSpec:
        """A spec from :meth:`to_dict`'s form; unknown keys are one clear error naming ``where``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object of hardware settings; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown hardware settings {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**data)

    def sample(self, sizes: Sequence[int], seed: int) -> Chip:
        """One chip of this spec for a network of layer sizes ``(n_in, n_1, ..., n_L)``, drawn
        from ``seed`` (the same seed gives the same chip)."""
        sizes = tuple(int(n) for n in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ConfigError(f"a chip needs network sizes (n_in, ..., n_out); got {sizes!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"chip seed must be an integer >= 0; got {seed!r}")
        return Chip(self, sizes, seed)


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(rng.standard_normal(shape), -TRUNCATE, TRUNCATE)


@dataclass(frozen=True)
class _Cells:
    """One crossbar side's draws, ``(n_in, n_out)`` each: range factors, programming ε, stuck codes."""

    low: np.ndarray
    high: np.ndarray
    noise: np.ndarray
    stuck: np.ndarray


class Chip:
    """One sampled chip (:meth:`HardwareSpec.sample`): every cell's and every neuron's draws."""

    def __init__(self, spec: HardwareSpec, sizes: tuple[int, ...], seed: int) -> None:
        self.spec, self.sizes, self.seed = spec, sizes, seed
        self._ports: dict[int, tuple[str, tuple[np.ndarray, np.ndarray]]] = {}  # per layer: its latest state
        self.cells: list[tuple[_Cells, _Cells]] = []
        self.neuron_factors: list[dict[str, np.ndarray]] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            rng = np.random.default_rng([seed, k])  # one stream per layer: a layer's draws do not depend on others
            self.cells.append(tuple(self._cells(rng, (n_in, n_out)) for _ in ("pos", "neg")))
            self.neuron_factors.append({group: 1.0 + getattr(spec, GROUP_SPREAD[group]) * _normal(rng, (n_out,))
                                        for group in NEURON_GROUPS})
        #: per layer, the factor (``(n,)``) each trimmed group of :data:`NEURON_GROUPS` is multiplied by
        self.factor_trims = [{group: self._factor_trim(factors[group], getattr(spec, GROUP_SPREAD[group]))
                              for group in TRIMMED_FACTORS[spec.trim_scheme]
                              if spec.trim_bits is not None and getattr(spec, GROUP_SPREAD[group])}
                             for factors in self.neuron_factors]
        #: per layer, what calibration in the loop adds to each neuron's threshold-DAC code (``(n,)``,
        #: integers once calibrated; 0 as sampled; :meth:`set_calibration`)
        self.calibration = [torch.zeros(n, dtype=torch.float64) for n in sizes[1:]]

    def _factor_trim(self, factor: np.ndarray, spread: float) -> np.ndarray:
        """A trim bank's step nearest to ``1 / factor``, for factors of relative σ ``spread``
        (module docstring, "Trims")."""
        low, high = 1.0 / (1.0 + TRUNCATE * spread), 1.0 / (1.0 - TRUNCATE * spread)
        steps = 2**self.spec.trim_bits - 1
        return low + np.round((1.0 / factor - low) / (high - low) * steps) / steps * (high - low)

    def _cells(self, rng: np.random.Generator, shape: tuple[int, int]) -> _Cells:
        spec = self.spec
        low, high = (np.exp(spec.range_spread * _normal(rng, shape)) for _ in range(2))
        noise = _normal(rng, shape)
        u = rng.random(shape)
        stuck = np.where(u < spec.stuck_off, STUCK_OFF, np.where(u < spec.stuck_off + spec.stuck_on, STUCK_ON, FREE))
        return _Cells(low, high, noise, stuck.astype(np.int8))

    def describe(self) -> dict:
        """What identifies this chip in reports and checkpoints (:meth:`from_description` rebuilds
        it): its spec, seed and sizes, and its calibration codes once calibrated."""
        description = {"hardware": self.spec.to_dict(), "chip_seed": self.seed, "sizes": list(self.sizes)}
        if self.calibrated:
            description["calibration"] = [[int(code) for code in codes] for codes in self.calibration]
        return description

    @staticmethod
    def from_description(description: Mapping) -> Chip:
        """The chip :meth:`describe` described, its calibration included."""
        chip = HardwareSpec.from_dict(description["hardware"]).sample(description["sizes"], description["chip_seed"])
        if "calibration" in description:
            chip.set_calibration(description["calibration"])
        return chip

    @property
    def calibrated(self) -> bool:
        """Whether calibration in the loop changed any of this chip's codes."""
        return any(bool(codes.detach().any()) for codes in self.calibration)

    @property
    def dac_steps(self) -> int:
        """The threshold DAC's codes per sign: a trim's code lies in ``[-dac_steps, dac_steps]``."""
        if not self.trims_thresholds:
            raise ConfigError(f"the '{self.spec.name}' chip has no threshold trims to calibrate (it needs trim_bits "
                              "and a threshold_spread)")
        return 2 ** (self.spec.trim_bits - 1) - 1

    def set_calibration(self, codes: Sequence[Sequence[float]] | Sequence[torch.Tensor]) -> None:
        """Set what calibration adds to each neuron's threshold-DAC code: one sequence of integers
        per layer, each within ``±2·dac_steps`` (a trim's code stays within the DAC's range); a
        float tensor that requires grad is kept as it is (while :func:`calibrate` fits it)."""
        steps = self.dac_steps
        if len(codes) != len(self.calibration):
            raise ConfigError(f"a calibration needs one list of codes per layer ({len(self.calibration)}); "
                              f"got {len(codes)}")
        checked = []
        for k, (layer_codes, zeros) in enumerate(zip(codes, self.calibration)):
            fitting = isinstance(layer_codes, torch.Tensor) and layer_codes.requires_grad
            values = layer_codes if fitting else torch.as_tensor(np.asarray(layer_codes, dtype=float))
            if tuple(values.shape) != tuple(zeros.shape):
                raise ConfigError(f"layer {k + 1} has {len(zeros)} neurons; its calibration has shape "
                                  f"{tuple(values.shape)}")
            if not fitting and (not bool(torch.isfinite(values).all()) or bool((values != values.round()).any())
                                or bool((values.abs() > 2 * steps).any())):
                raise ConfigError(f"layer {k + 1}: calibration codes must be integers within ±{2 * steps} (the "
                                  f"{self.spec.trim_bits}-bit DAC's range twice); got {values.tolist()!r}")
            checked.append(values if fitting else values.to(torch.float64))
        self.calibration = checked

    def program(self, layer: int, g_pos: torch.Tensor, g_neg: torch.Tensor,
                g_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """The conductances (S, like ``g_pos``, ``(n_in, n_out)`` each) the differential pairs of
        crossbar ``layer`` (from 0) hold after being programmed to ``g_pos``, ``g_neg`` (S) within
        the nominal range ``g_range``; differentiable in both (module docstring)."""
        cells = self.cells[layer]
        for g, side in zip((g_pos, g_neg), cells):
            if tuple(g.shape) != side.low.shape:
                raise ConfigError(f"crossbar {layer + 1} is {tuple(g.shape)}; this chip's is {side.low.shape}")
        g_min, g_max = g_range
        like = {"dtype": g_pos.dtype, "device": g_pos.device}
        bounds = [(g_min * torch.as_tensor(side.low, **like), g_max * torch.as_tensor(side.high, **like))
                  for side in cells]
        if any(bool((hi <= lo).any()) for lo, hi in bounds):
            raise ConfigError(f"crossbar {layer + 1}: range_spread {self.spec.range_spread} swaps some cells' g_min "
                              f"and g_max for the range {g_range} S; use a smaller spread or a wider range")
        stuck = [torch.as_tensor(side.stuck, device=g_pos.device) for side in cells]
        targets = [g_pos, g_neg]
        if self.spec.compensate_stuck:  # a stuck cell's partner keeps the pair's difference
            held = [torch.where(code == STUCK_OFF, lo, hi) for code, (lo, hi) in zip(stuck, bounds)]
            difference = g_pos - g_neg
            alone = [(mine == FREE) & (other != FREE) for mine, other in ((stuck[0], stuck[1]), (stuck[1], stuck[0]))]
            targets = [torch.where(alone[0], (held[1] + difference).clamp(g_min, g_max), g_pos),
                       torch.where(alone[1], (held[0] - difference).clamp(g_min, g_max), g_neg)]
        return tuple(self._program_cells(g, g_range, lo, hi, side.noise, code)
                     for g, (lo, hi), side, code in zip(targets, bounds, cells, stuck))

    def _program_cells(self, g: torch.Tensor, g_range: tuple[float, float], lo: torch.Tensor, hi: torch.Tensor,
                       noise: np.ndarray, stuck: torch.Tensor) -> torch.Tensor:
        """Steps 1-4 of the module docstring for one side's targets ``g`` (S), its cells' ranges
        ``[lo, hi]`` (S), programming draws ``noise`` and stuck codes ``stuck``."""
        spec = self.spec
        g_min, g_max = g_range
        f = (g - g_min) / (g_max - g_min)
        if spec.levels is not None:
            steps = spec.levels - 1
            f = f + (torch.round(f.clamp(0.0, 1.0) * steps) / steps - f).detach()  # straight through
        target = lo + f * (hi - lo)
        if spec.program_noise or spec.program_noise_relative:
            sigma = torch.sqrt((spec.program_noise * (hi - lo)) ** 2 + (spec.program_noise_relative * target) ** 2)
            target = torch.minimum(torch.maximum(target + sigma * torch.as_tensor(noise, dtype=g.dtype,
                                                                                  device=g.device), lo), hi)
        return torch.where(stuck == STUCK_OFF, lo, torch.where(stuck == STUCK_ON, hi, target))

    def ports(self, layer: int, g_pos: torch.Tensor, g_neg: torch.Tensor) -> CrossbarPorts:
        """Crossbar ``layer`` (from 0) of programmed conductances ``g_pos``, ``g_neg`` (S, :meth:`program`)
        as the solver drives it: the ideal crossbar without wires, else the multiport of its wires
        (computed once per programmed state: several seconds for 784x128), its gradient the ideal one's."""
        ideal = CrossbarPorts.ideal(g_pos, g_neg)
        if not self.spec.wire_resistance:
            return ideal
        transfer, load = (torch.as_tensor(a, dtype=g_pos.dtype, device=g_pos.device)
                          for a in self.multiport(layer, g_pos, g_neg))
        diagonal = torch.diagonal(load)
        return CrossbarPorts(ideal.transfer + (transfer - ideal.transfer).detach(),
                             ideal.self_load + (diagonal - ideal.self_load).detach(),
                             load - torch.diag_embed(diagonal))

    def multiport(self, layer: int, g_pos: torch.Tensor, g_neg: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(transfer, load)`` (S, float64) of crossbar ``layer`` with this chip's wires: column
        currents ``rows @ transfer - v @ load.T`` (:mod:`memspice.hardware.wires`)."""
        sides = [np.asarray(g.detach().double().cpu()) for g in (g_pos, g_neg)]
        digest = hashlib.sha256(b"".join(side.tobytes() for side in sides)).hexdigest()
        if self._ports.get(layer, ("",))[0] != digest:  # weights change in training: keep the latest only
            (p_pos, q_pos), (p_neg, q_neg) = (side_ports(side, self.spec.wire_resistance, self.spec.tile_size)
                                              for side in sides)
            self._ports[layer] = (digest, (p_pos - p_neg, q_pos + q_neg))
        return self._ports[layer][1]

    def read_noise(self, layer: int, g_pos: np.ndarray, g_neg: np.ndarray, samples: Sequence[int],
                   n_points: int) -> np.ndarray | None:
        """The read-noise currents (A, ``(len(samples), n_points, n_out)``) into the membranes of
        layer ``layer`` (from 0) with programmed conductances ``g_pos``, ``g_neg`` (S, ``(n_in,
        n_out)``), on the grid, for the dataset samples ``samples`` (indices: the sequence is the
        sample's, whatever batch it is in); None without read noise."""
        if not self.spec.read_noise:
            return None
        g_pos, g_neg = (np.asarray(g, dtype=float) for g in (g_pos, g_neg))
        sigma = self.spec.read_noise * READ_VOLTAGE * np.sqrt((g_pos**2 + g_neg**2).sum(0))
        draws = [_normal(np.random.default_rng([self.seed, layer, 1, int(sample)]), (n_points, g_pos.shape[1]))
                 for sample in samples]
        return sigma * np.stack(draws)

    def neuron_params(self, layer: int, params: Mapping[str, float | torch.Tensor],
                      like: torch.Tensor) -> dict[str, float | torch.Tensor]:
        """``params`` (every MIF parameter of layer ``layer``'s neurons, from 0) with the varied
        ones replaced by per-neuron tensors ``(n,)`` (dtype and device of ``like``)."""
        if not (self.spec.neuron_spread or self.spec.threshold_spread):
            return dict(params)
        out = dict(params)
        for group, names in NEURON_GROUPS.items():
            factor = self.neuron_factors[layer][group]
            if group in self.factor_trims[layer]:
                factor = factor * self.factor_trims[layer][group]
            factor = torch.as_tensor(factor, dtype=like.dtype, device=like.device)
            for name in names:
                out[name] = params[name] * factor
        if self.threshold_trim == "switch":
            for group, (threshold, hold, source) in SWITCH_TRIMS.items():
                factor = torch.as_tensor(self.neuron_factors[layer][group], dtype=like.dtype, device=like.device)
                codes = self.calibration[layer] if group == "th1" else torch.zeros_like(self.calibration[layer])
                shift = self._dac(params[threshold] * (factor - 1.0), codes.to(dtype=like.dtype, device=like.device))
                out[threshold], out[hold] = out[threshold] - shift, out[hold] - shift
                out[source] = params[source] - shift
        return out

    def _dac(self, target: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """What a trim DAC of ``trim_bits`` bits spanning ``target``'s largest magnitude sets for
        ``target`` (``(n,)``: one trim per neuron, in its units) with ``codes`` added to the nearest
        codes (calibration in the loop); the rounding passes the gradient straight through, and
        stops past the DAC's ends, where a code moves nothing."""
        steps = self.dac_steps
        lsb = target.detach().abs().max().clamp_min(torch.finfo(target.dtype).tiny) / steps
        code = target / lsb + codes
        within = code.clamp(-steps - 0.5, steps + 0.5)
        code = within + (torch.round(code.detach()).clamp(-steps, steps) - within).detach()
        return code * lsb

    @property
    def trims_thresholds(self) -> bool:
        """Whether this chip's neurons carry threshold trims (:meth:`trims`)."""
        return self.spec.trim_bits is not None and bool(self.spec.threshold_spread)

    @property
    def threshold_trim(self) -> str | None:
        """How this chip trims its neurons' thresholds (:data:`TRIM_SCHEMES`), or None where it does not."""
        return self.spec.trim_scheme if self.trims_thresholds else None

    def trims(self, layer: int, params: Mapping[str, float | torch.Tensor],
              self_load: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The threshold trims of layer ``layer`` (from 0), whose nominal MIF parameters are
        ``params`` and whose columns load the membranes with ``self_load`` (S, ``(n,)``: the
        programmed conductances' sum, or the wires' port): ``(current, rest)``, the DC currents
        (A) into the membranes and the level (V) each holds at rest under its own (its rows at
        0 V), both ``(n,)`` like ``self_load``; None for an untrimmed chip, one whose thresholds
        do not vary or one that trims its switches (:meth:`neuron_params`). Differentiable in the
        load and in the calibration codes, straight through the DAC's rounding (module docstring)."""
        if self.threshold_trim != "membrane":
            return None
        like = {"dtype": self_load.dtype, "device": self_load.device}
        offset = params["th1"] * (torch.as_tensor(self.neuron_factors[layer]["th1"], **like) - 1.0)
        conductance = self_load + params["gl"] + params["goff1"] + params["goff2"]
        current = self._dac(offset * conductance, self.calibration[layer].to(**like))
        return current, current / conductance

    def apply(self, network: Network) -> Network:
        """``network`` (an ideal circuit description) as this chip holds it, for the netlister:
        every cell a resistor of its programmed conductance, every neuron its own parameters.
        The numbers are :meth:`program`'s and :meth:`neuron_params`' in float64."""
        if tuple(network.sizes) != self.sizes:
            raise ConfigError(f"this chip was sampled for a {'-'.join(map(str, self.sizes))} network; "
                              f"got {'-'.join(map(str, network.sizes))}")
        if network.synapse != "resistor" and not self.spec.ideal:
            raise ConfigError("a non-ideal chip's cells are written as resistors of their programmed conductances; "
                              f"got synapse={network.synapse!r}")
        layers = []
        for k, (crossbar, neurons) in enumerate(network.layers):
            g_range = crossbar.g_range
            if g_range is None or neurons.per_neuron:
                raise ConfigError(f"layer {k + 1}: a chip programs an ideal network whose crossbars know their "
                                  "conductance range")
            g = dict(zip(("pos", "neg"), (t.numpy() for t in self.program(
                k, torch.as_tensor(crossbar.g_pos), torch.as_tensor(crossbar.g_neg), g_range))))
            like = torch.zeros((), dtype=torch.float64)
            varied = {name: np.asarray(value) for name, value in
                      self.neuron_params(k, neurons.resolved, like).items() if isinstance(value, torch.Tensor)}
            bias = rest = None
            if self.threshold_trim == "membrane":  # the load a neuron sees (with wires: their port, slow)
                load = self.ports(k, *(torch.as_tensor(g[side]) for side in ("pos", "neg"))).self_load
                bias, rest = (t.numpy() for t in self.trims(k, neurons.resolved, load))
            layers.append((Crossbar(g["pos"], g["neg"], g_range=g_range),
                           NeuronLayer(neurons.size, neurons.params, per_neuron=varied, bias=bias, rest=rest)))
        return dataclasses.replace(network, layers=tuple(layers), wire_resistance=self.spec.wire_resistance,
                                   tile_size=self.spec.tile_size)


def load_spec(text: str) -> HardwareSpec:
    """A spec from a preset name (:data:`~memspice.hardware.presets.PRESETS`) or a JSON file of
    :meth:`HardwareSpec.to_dict`'s form."""
    from memspice.hardware.presets import PRESETS

    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix.lower() != ".json" or not path.is_file():
        raise ConfigError(f"--hardware {text!r}: neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(f"{path}: not JSON ({error})") from None
    return HardwareSpec.from_dict(data, str(path))
