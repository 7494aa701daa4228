"""Training configurations: every option of ``memspice train`` with its unit, and the per-dataset
recipes that fill in what the user does not give (``memspice train --dataset digits --out DIR``
runs the digits recipe as documented in docs/training.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from memspice.circuit import PULSE_TAU, row_buffer
from memspice.data import DATASETS, ENCODERS, DirectEncoder, RateEncoder, make_encoder
from memspice.defaults import DT, METHOD
from memspice.devices import MIF
from memspice.devices.user import NEURONS, check_neuron_spec
from memspice.errors import ConfigError, NetlistError
from memspice.hardware import PRESETS, load_spec
from memspice.nn.crossbar import COLUMN_CONDUCTANCE, INIT_NEG, INIT_POS, ON_OFF_RATIO, PARAMETRIZATIONS
from memspice.nn.readout import READOUTS
from memspice.solver import NewtonOptions, SolverOptions
from memspice.solver.integrators import DEFAULT_TOLERANCES
from memspice.solver.methods import METHODS

#: Newton's (membrane, state) tolerances where not given: float32's, float64's.
_TOLERANCES = (DEFAULT_TOLERANCES[torch.float32], DEFAULT_TOLERANCES[torch.float64])
#: The options that are (low, high) fractions of a conductance range.
INIT_FIELDS = ("init_pos", "init_neg", "deep_init_pos", "deep_init_neg")
#: The options that hold several numbers: tuples in a configuration, lists in JSON and on the command line.
TUPLE_FIELDS = ("hidden", *INIT_FIELDS, "hidden_rate", "layer_lr")


def _option(default, help: str, kind: str | None = None, **cli):
    """A training option: its default and its meaning, which ``memspice train --help`` prints; ``kind``
    names the check the command line applies to a value (``positive``, ``positive_int``, ``finite``,
    ``non_negative``, ``int``), ``cli`` holds argparse's ``choices``, ``nargs``, ``metavar``."""
    return field(default=default, metadata={"help": help, "kind": kind, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """One training run: every option of ``memspice train``, the command line generated from these
    fields (each one's meaning is its ``help`` metadata). Times in s, conductances in S, voltages in
    V. :func:`recipe` fills in a dataset's own values."""

    dataset: str = _option("digits", "the dataset", choices=DATASETS)
    data_dir: str | None = _option(None, "folder of the IDX files (fashion-mnist: the Debian package's; mnist: "
                                         "required)")
    hidden: tuple[int, ...] = _option((128,), "hidden layer sizes", "positive_int", nargs="+", metavar="N")
    neuron: str = _option(MIF.name, f"every layer's neuron model: one memspice ships ({', '.join(NEURONS)}) or "
                                    "MODULE:NAME of your own (docs/devices.md; a checkpoint of it loads where you "
                                    "name it again)", metavar="NAME|MODULE:NAME")
    epochs: int = _option(5, "epochs", "positive_int")
    batch_size: int = _option(32, "samples per optimizer step", "positive_int")
    lr: float = _option(0.1, "Adam learning rate on the crossbar parameters (logits or fractions, see "
                              "--parametrization), cosine decay to 5 %", "positive")
    layer_lr: tuple[float, ...] | None = _option(None, "one learning rate per crossbar, the input crossbar's first, "
                                                       "instead of --lr (the same cosine decay scales each)",
                                                 "positive", nargs="+", metavar="LR")
    dt: float = _option(DT, "solver step, s", "positive")
    window: float = _option(10e-6, "simulated time per sample, s", "positive")
    method: str = _option(METHOD, "integration method", choices=METHODS)
    encoder: str = _option("direct", "input encoding: constant row voltages, or pulse trains", choices=ENCODERS)
    v_low: float = _option(0.2, "direct encoder: row voltage of a black pixel, V", "finite")
    v_high: float = _option(1.0, "direct encoder: row voltage of a white pixel; rate encoder: pulse height, V; "
                                 "|v| < 2 V, and every cell below the synapses' write thresholds", "finite")
    readout: str = _option("membrane-mean", "what the loss is taken on and decisions read", choices=READOUTS)
    readout_scale: float = _option(100.0, "logits per spike (count), per window (first-spike) or per V (membrane "
                                          "readouts)", "positive")
    readout_width: float = _option(0.1, "V: the soft spike count's sigmoid width, and how far below threshold a "
                                        "silent neuron's peak counts as one window of first-spike latency",
                                   "positive")
    population: int = _option(1, "output neurons per class: a class's logit is the mean of its neurons' and it "
                                 "decides by their pooled readings (spikes summed, first-spike times and membranes "
                                 "averaged, a silent neuron at the window's end), so that one neuron's device spread "
                                 "moves it less", "positive_int")
    fire_weight: float = _option(0.0, "count and first-spike readouts: weight of exp(latency) - 1 of each sample's "
                                      "class neuron, the term that makes it fire rather than decide by a silent "
                                      "membrane", "non_negative")
    column_conductance: float = _option(COLUMN_CONDUCTANCE, "S: the conductance one column holds on one side at "
                                                            "g_max (g_max = this / fan-in)", "positive")
    on_off_ratio: float = _option(ON_OFF_RATIO, "g_max / g_min of the synapse memristors", "positive")
    buffer_gain: float = _option(2.0, "gain of the buffers that drive a layer's rows from the previous layer's "
                                      "membranes", "positive")
    buffer_knee: float | None = _option(None, "V: rectifying buffers that pass only what lies above this membrane "
                                              "voltage (0: a ReLU of the membranes; near the M1 threshold, 0.4, only "
                                              "spikes, which leave the next layer silent); none: linear buffers",
                                        "finite")
    pulse_gain: float | None = _option(None, "V/V: a pulse extender per hidden neuron adds the charge of its recent "
                                             "spikes to its rows, after --buffer-rail (tau·dQ/dt = gain·relu(V - "
                                             "0.45 V) - Q); none: the membranes alone drive the next layer",
                                       "positive")
    pulse_tau: float = _option(PULSE_TAU, "s: the pulse extenders' time constant", "positive")
    buffer_rail: float | None = _option(None, "V: the buffers' output swing: rows saturate smoothly at +-this, as an "
                                              "amplifier's output does (with a high --buffer-gain, small membranes "
                                              "reach the next layer's threshold and spikes stay within the cells' "
                                              "write thresholds); none: no saturation", "positive")
    init_pos: tuple[float, float] = _option(INIT_POS, "the input crossbar's G+ start uniform in these fractions "
                                                      "of the conductance range", "finite", nargs=2,
                                            metavar=("LOW", "HIGH"))
    init_neg: tuple[float, float] = _option(INIT_NEG, "the input crossbar's G- start uniform in these fractions "
                                                      "of the conductance range", "finite", nargs=2,
                                            metavar=("LOW", "HIGH"))
    deep_init_pos: tuple[float, float] = _option(INIT_POS, "the same as --init-pos for every later crossbar",
                                                 "finite", nargs=2, metavar=("LOW", "HIGH"))
    deep_init_neg: tuple[float, float] = _option(INIT_NEG, "the same as --init-neg for every later crossbar",
                                                 "finite", nargs=2, metavar=("LOW", "HIGH"))
    parametrization: str = _option("sigmoid", "conductance = Gmin + (Gmax - Gmin) * sigmoid(logit), or * "
                                              "clamp(fraction, 0, 1) projected after every step",
                                   choices=PARAMETRIZATIONS)
    seed: int = _option(0, "seed of the initial weights, the sample order and the rate encoder's pulses", "int")
    train_samples: int | None = _option(None, "use only the first N training samples", "positive_int")
    eval_samples: int | None = _option(None, "test samples evaluated after each epoch (the whole test set at the "
                                             "end)", "positive_int")
    device: str = _option("cpu", "torch device, e.g. cpu or cuda")
    dtype: str = _option("float32", "torch dtype", choices=("float32", "float64"))
    checkpoint_every: int | None = _option(None, "recompute the forward pass in chunks of this many steps in "
                                                 "backward (less memory)", "positive_int")
    threads: int | None = _option(None, "torch CPU threads", "positive_int")
    fused: bool = _option(True, "compile the solver's Newton iterations with torch's inductor: the same numerics, "
                                "several times faster after compiling once, cached on disk")
    newton_vtol: float | None = _option(None, "V: Newton's tolerance on the membrane (none: by dtype, "
                                              f"{_TOLERANCES[0][0]:g} V in float32, {_TOLERANCES[1][0]:g} V in "
                                              "float64)", "positive")
    newton_xtol: float | None = _option(None, "Newton's tolerance on each switch state (none: by dtype, "
                                              f"{_TOLERANCES[0][1]:g} in float32, {_TOLERANCES[1][1]:g} in float64)",
                                        "positive")
    newton_max_iter: int = _option(NewtonOptions().max_iter, "Newton iterations per step before the step is "
                                                             "retried in substeps", "positive_int")
    hidden_rate: tuple[float, float] | None = _option(None, "keep every hidden neuron's spikes per sample (batch "
                                                            "mean) in this band: a squared penalty outside it, "
                                                            "on soft counts", "non_negative", nargs=2,
                                                      metavar=("LOW", "HIGH"))
    rate_weight: float = _option(1.0, "weight of the --hidden-rate penalty", "positive")
    anneal_threshold: float | None = _option(None, "V: start every layer's M1 threshold th1 here and raise it "
                                                   "linearly to the device's value over --anneal-epochs (the "
                                                   "trained network and its netlist keep the device's)", "positive")
    anneal_epochs: float = _option(1.0, "epochs of threshold annealing", "positive")
    lr_restart_epochs: int | None = _option(None, "restart the cosine learning-rate decay every N epochs (SGDR; "
                                                  "none: one decay over the run)", "positive_int")
    strict: bool = _option(False, "stop when the solver's local error estimate exceeds its tolerance (the grid is "
                                  "too coarse for the dynamics) instead of warning once")
    allow_cell_writes: bool = _option(False, "warn once instead of stopping when a synapse cell's voltage reaches "
                                             "its write threshold (the torch solver holds conductances fixed; a "
                                             "chip would rewrite them)")
    init_from: str | None = _option(None, "start from this trained network's weights instead of random ones "
                                          "(fine-tuning with other options, buffers included; same layer sizes "
                                          "and other network settings)", metavar="CHECKPOINT")
    hardware: str | None = _option(None, "hardware-aware training: every batch runs on a fresh chip of this preset "
                                         f"({', '.join(PRESETS)}) or JSON chip description (docs/hardware.md)",
                                   metavar="PRESET|FILE.json")

    def __post_init__(self) -> None:
        def bad(name, allowed):
            raise ConfigError(f"{name} = {getattr(self, name)!r} is invalid; allowed: {allowed}")

        if self.dataset not in DATASETS:
            bad("dataset", ", ".join(DATASETS))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in INIT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2 \
                    or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in value) \
                    or not 0 <= value[0] < value[1] <= 1:
                bad(name, "two fractions 0 <= low < high <= 1 of the conductance range")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if self.hidden_rate is not None:
            rate = self.hidden_rate
            if not isinstance(rate, (tuple, list)) or len(rate) != 2 or not all(_is_number(r) for r in rate) \
                    or not 0 <= rate[0] <= rate[1]:
                bad("hidden_rate", "None or two numbers 0 <= low <= high (spikes per hidden neuron and sample)")
            object.__setattr__(self, "hidden_rate", (float(rate[0]), float(rate[1])))
        if self.layer_lr is not None:
            if not isinstance(self.layer_lr, (tuple, list)) or len(self.layer_lr) != len(self.hidden) + 1 \
                    or not all(_is_number(r) and r > 0 for r in self.layer_lr):
                bad("layer_lr", f"None or {len(self.hidden) + 1} finite numbers > 0, one per crossbar (hidden "
                                f"layers {list(self.hidden)} and the output layer)")
            object.__setattr__(self, "layer_lr", tuple(float(r) for r in self.layer_lr))
        check_neuron_spec(self.neuron)
        if self.neuron != MIF.name:
            for name in ("anneal_threshold", "hardware"):
                if getattr(self, name) is not None:
                    bad(name, f"None with {self.neuron} neurons (it acts on the MIF neuron's parameters)")
        if self.anneal_threshold is not None:
            device = MIF.resolve()
            if not _is_number(self.anneal_threshold) or not device["hold1"] < self.anneal_threshold <= device["th1"]:
                bad("anneal_threshold", f"None or a voltage in the neuron's (hold1, th1] = ({device['hold1']:g}, "
                                        f"{device['th1']:g}] V")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            bad("hidden", "positive integers (one per hidden layer)")
        for name in ("epochs", "batch_size", "population"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(name, "a positive integer")
        for name in ("newton_vtol", "newton_xtol"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not value > 0):
                bad(name, "None or a finite number > 0")
        for name in ("lr", "dt", "window", "readout_scale", "readout_width", "column_conductance", "buffer_gain",
                     "rate_weight", "anneal_epochs"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0:
                bad(name, "a finite number > 0")
        if self.window < 2 * self.dt:
            bad("window", f"at least two steps of dt = {self.dt:g} s")
        if self.method not in METHODS:
            bad("method", ", ".join(METHODS))
        if self.encoder not in ENCODERS:
            bad("encoder", ", ".join(ENCODERS))
        input_encoder(self)  # the encoder checks v_low and v_high against the synapses' write thresholds
        if self.parametrization not in PARAMETRIZATIONS:
            bad("parametrization", ", ".join(PARAMETRIZATIONS))
        if not _is_number(self.fire_weight) or self.fire_weight < 0:
            bad("fire_weight", "a finite number >= 0")
        if self.readout not in READOUTS:
            bad("readout", ", ".join(READOUTS))
        for name in ("fused", "strict", "allow_cell_writes"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "True, False")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            bad("init_from", "None or the path of a checkpoint")
        if self.hardware is not None:
            if not isinstance(self.hardware, str):
                bad("hardware", "None, a preset name or the path of a JSON chip description")
            load_spec(self.hardware)  # one clear error now, not after the data have loaded
        try:
            row_buffer(self.buffer_gain, self.buffer_knee, self.pulse_gain, self.pulse_tau, self.buffer_rail)
        except NetlistError as exc:
            raise ConfigError(str(exc)) from None
        if self.dtype not in ("float32", "float64"):
            bad("dtype", "float32, float64")
        for name in ("train_samples", "eval_samples", "checkpoint_every", "threads", "lr_restart_epochs",
                     "newton_max_iter"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                bad(name, "a positive integer or None")

    @property
    def solver(self) -> SolverOptions:
        """How the torch solver integrates the network: ``dt``, ``method``, Newton's options,
        ``checkpoint_every`` and ``fused`` as one :class:`~memspice.solver.SolverOptions`."""
        newton = NewtonOptions(vtol=self.newton_vtol, xtol=self.newton_xtol, max_iter=self.newton_max_iter)
        return SolverOptions(dt=self.dt, method=self.method, newton=newton, checkpoint_every=self.checkpoint_every,
                             fused=self.fused)

    @property
    def n_steps(self) -> int:
        """Steps of ``dt`` in the window."""
        return int(round(self.window / self.dt))

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in TUPLE_FIELDS:
            out[name] = list(out[name]) if out[name] is not None else None
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**values)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def input_encoder(config: TrainConfig) -> DirectEncoder | RateEncoder:
    """The input encoder of ``config``: pixels to row voltages from ``v_low`` to ``v_high`` (V), or
    pulses of ``v_high`` (:mod:`memspice.data.encoders`)."""
    if config.encoder == "direct":
        return make_encoder("direct", v_low=config.v_low, v_high=config.v_high)
    return make_encoder("rate", amplitude=config.v_high, seed=config.seed)


# 28 x 28 images (docs/results.md, Fashion-MNIST): the output membranes of such a network differ by small
# fractions of a volt, and at 100 logits per V the softmax stayed unsure and the network underfit. The
# input crossbar starts with a positive mean so that hidden neurons spike on part of the images (their
# threshold is the network's only nonlinearity: benchmarks/mif_transfer.py), the output crossbar centred so
# that output neurons start below threshold (the loss is on their mean membrane); at lr 0.1 training
# moved the hidden neurons back below threshold; 12 epochs beat 6 (both runs are in docs/results.md). White
# pixels at 1.35 V, not 1.5 V: a G⁻ cell sees -u - V, and with spikes peaking at 0.57 V 1.5 V took it to
# -2.07 V, beyond the synapses' -2 V write threshold (memspice.solver.cells)
_IMAGES_28 = {"epochs": 12, "batch_size": 64, "window": 6e-6, "eval_samples": 1000, "lr": 0.05,
              "init_pos": (0.4, 1.0), "init_neg": (0.0, 0.5), "deep_init_pos": (0.2, 0.8),
              "deep_init_neg": (0.2, 0.8), "v_low": 0.0, "v_high": 1.35, "readout_scale": 1250.0}

#: What ``memspice train --dataset NAME`` uses for every option not given on the command line.
RECIPES: dict[str, dict] = {"digits": {"epochs": 10}, "fashion-mnist": _IMAGES_28, "mnist": _IMAGES_28}


def recipe(dataset: str, **overrides) -> TrainConfig:
    """The recipe of ``dataset`` with ``overrides`` (``None`` values are ignored)."""
    if dataset not in RECIPES:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    base = replace(TrainConfig(), dataset=dataset, **RECIPES[dataset])
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
