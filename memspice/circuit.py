"""The circuit description: what a memristive SNN *is*, independent of the engine that solves it.

The netlister (:mod:`memspice.netlist.circuits`) writes it for ngspice and the torch solver
integrates it; both read the same objects. Conventions:

* a :class:`Crossbar` holds differential-pair conductances ``g_pos``, ``g_neg`` of shape
  ``(n_in, n_out)`` in S; row ``i`` drives ``+u_i`` into the G⁺ column and ``-u_i`` into the G⁻
  column, and column ``j`` ties to the membrane of post-synaptic neuron ``j``;
* the column current, loading term included, is
  ``I_j = Σ_i G⁺_ij (u_i - V_j) + G⁻_ij (-u_i - V_j)`` (:meth:`Crossbar.column_currents`);
* layer 1's rows are driven by the input stimuli, later layers' rows by buffers
  (:class:`RowBuffer`) of the previous layer's membrane voltages, ``+b(V)`` and ``-b(V)``: the only
  non-memristive periphery. Linear buffers pass the whole membrane, ``b(V) = buffer_gain·V``;
  rectifying ones (``buffer_knee``) only what lies above a knee, the spikes when the knee is the
  neuron's switching threshold. The default gain is 2, not 1: the loading
  term pins a membrane near the conductance-weighted mean of its row voltages, and with unity
  buffers and the KANG2021 neuron (membranes that peak at 0.48 V) that mean stays below the MIF
  threshold, so a second layer never fires (tests/test_netlister.py shows both). The re-timed
  default neuron fires from unity buffers too; gain 2 gives later layers the same drive range
  as the first.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from memspice.codegen.printers import spice_expr
from memspice.defaults import SPIKE_THRESHOLD
from memspice.devices import MIF, SYNAPSE, DeviceModel
from memspice.errors import ConfigError, NetlistError

SYNAPSE_KINDS = ("resistor", "memristor")
#: How far (V) a rectifying buffer's knee is smoothed: its output is ``w·ln 2 ≈ 0.014 V`` times
#: the gain at the knee and ``e^(-5)`` of that 0.1 V below it. Smooth, so that the solver's
#: high-order steps stay accurate across it and a neuron just below it still has a gradient.
RECTIFIER_WIDTH = 0.02
_MEMBRANE = sp.Symbol("V")
_ROW = sp.Symbol("b")


class _Softplus(sp.Function):
    """``ln(1 + e^y)``, kept whole in :meth:`RowBuffer.expression`: the torch solver takes it as
    torch's ``softplus`` (one operation and one for its gradient, where the expression written
    out costs nine of each), ngspice as :func:`_softplus_written_out`."""

    nargs = 1


def _railed(y: sp.Expr, rail: float | None) -> sp.Expr:
    """``y`` saturated smoothly at ``±rail`` (``None``: ``y`` itself): ``y - w·softplus((y - rail)/w)
    + w·softplus((-y - rail)/w)``, ``w`` = :data:`RECTIFIER_WIDTH`; within ``w·ln 2 ≈ 0.014 V`` of
    ``±rail`` at the rail, and of ``y`` well inside."""
    if rail is None:
        return y
    w, r = sp.Float(RECTIFIER_WIDTH), sp.Float(rail)
    return y - w * _Softplus((y - r) / w) + w * _Softplus((-y - r) / w)


def _softplus_written_out(y: sp.Expr) -> sp.Expr:
    """``ln(1 + e^y)`` in its overflow-free form ``max(y, 0) + ln(1 + e^(-|y|))``."""
    above = sp.Max(y, 0)
    return above + sp.log(1 + sp.exp(y - 2 * above))


#: The pulse extenders' default time constant (s): a spike's charge (its membrane above the knee
#: for ~0.2 µs) spread over a few inter-spike intervals, so that it reaches the next layer as a
#: step the cells can carry within their write thresholds, and a count within an 8 µs window adds up.
PULSE_TAU = 2e-6
_PULSE = sp.Symbol("Q")


@dataclass(frozen=True)
class PulseExtender:
    """A pulse extender (as in neuromorphic VLSI: Indiveri et al., Front. Neurosci. 2011, the
    circuit that stretches an address-event into a current pulse) between a neuron's membrane
    ``V`` and the buffers of the rows it drives: a transconductor that rectifies the membrane
    above ``knee`` (V) charges a capacitor with a leak, so that each spike leaves a charge that
    decays with ``tau`` (s)::

        tau·dQ/dt = gain·w·ln(1 + exp((V - knee)/w)) - Q

    (``w`` = :data:`RECTIFIER_WIDTH`; ``gain`` V/V). The knee is the readouts' spike level
    (:data:`~memspice.defaults.SPIKE_THRESHOLD`): only spikes charge it, so ``Q`` counts them
    with their recent past, where a membrane's mean saturates below the threshold. The rows get
    ``±(b(V) + Q)`` (:class:`RowBuffer`). ngspice holds ``Q`` on a capacitor charged by a
    B-source (:meth:`charge_expression`); the torch solver integrates the same linear equation
    at the neurons' own Radau IIA stages (:func:`memspice.solver.pulses.extend_pulses`)."""

    gain: float
    tau: float = PULSE_TAU
    knee: float = SPIKE_THRESHOLD

    def __post_init__(self) -> None:
        for name, value, allowed, ok in (
                ("pulse_gain", self.gain, "a number in (0, 1000] V/V", lambda x: 0 < x <= 1000),
                ("pulse_tau", self.tau, "a time in [1e-9, 1e-3] s", lambda x: 1e-9 <= x <= 1e-3),
                ("pulse_knee", self.knee, "a voltage in (-2, 2) V", lambda x: abs(x) < 2)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise NetlistError(f"{name} must be {allowed}; got {value!r}")

    def charge_expression(self) -> sp.Expr:
        """``gain·w·softplus((V - knee)/w)`` (V) in the symbol ``V``: what ``Q`` relaxes to."""
        w = sp.Float(RECTIFIER_WIDTH)
        return sp.Float(self.gain) * w * _Softplus((_MEMBRANE - sp.Float(self.knee)) / w)

    @functools.cached_property
    def _torch(self):
        return sp.lambdify(_MEMBRANE, self.charge_expression(),
                           modules=[{"_Softplus": torch.nn.functional.softplus}])

    def charge(self, v: torch.Tensor) -> torch.Tensor:
        """What ``Q`` relaxes to (V) for membranes ``v`` (V, any shape), differentiable."""
        return self._torch(v)

    def spice_charge(self, membrane: str) -> str:
        """:meth:`charge_expression` as an ngspice expression of ``V(membrane)``."""
        return spice_expr(self.charge_expression().replace(_Softplus, _softplus_written_out),
                          {_MEMBRANE: f"V({membrane})"})


@dataclass(frozen=True)
class RowBuffer:
    """The buffers from a layer's membranes ``V`` to the rows they drive, ``+b(V)`` into the G⁺
    cells and ``-b(V)`` into the G⁻ cells. Without a ``knee`` (V) they are linear, ``b(V) =
    gain·V``; with one they rectify, ``b(V) = gain·w·ln(1 + exp((V - knee)/w))`` (``w`` =
    :data:`RECTIFIER_WIDTH`): a softplus that passes what lies above the knee and nothing below.
    A knee of 0 V makes it a ReLU of the membranes; with the knee at the MIF neuron's M1
    threshold (0.40 V) only spikes pass, too little to lift a loaded column to threshold
    (docs/devices.md). A precision rectifier (op-amp and diode) builds it: still no ADC. With a
    ``rail`` (V) the buffers' output swings only within ``±rail``, as an amplifier's does: it
    saturates smoothly there (:func:`_railed`), so that a high gain can lift small membranes to
    the next layer's threshold while a spike, passed on at the rail, keeps the cells within their
    write thresholds. With a ``pulse`` extender (:class:`PulseExtender`) the rows get ``±(b(V) +
    Q)``: each spike's charge added to the membrane's share after the rail (a summing stage behind
    the amplifier), so that a spike still counts where its membrane's share has saturated. One
    expression (:meth:`expression`) gives both engines theirs: the torch solver's
    (:meth:`__call__` and :meth:`rows`) and ngspice's B-source (:meth:`spice`)."""

    gain: float = 2.0
    knee: float | None = None
    pulse: PulseExtender | None = None
    rail: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gain, bool) or not isinstance(self.gain, (int, float)) or not 0 < self.gain <= 10:
            raise NetlistError(f"buffer_gain must be a number in (0, 10] V/V; got {self.gain!r}")
        if self.rail is not None and (isinstance(self.rail, bool) or not isinstance(self.rail, (int, float))
                                      or not 0.1 <= self.rail < 2):
            raise NetlistError(f"buffer_rail must be None (no saturation) or a voltage in [0.1, 2) V; "
                               f"got {self.rail!r}")
        if self.knee is not None and (isinstance(self.knee, bool) or not isinstance(self.knee, (int, float))
                                      or not abs(self.knee) < 2):
            raise NetlistError(f"buffer_knee must be None (linear buffers) or a voltage in (-2, 2) V; "
                               f"got {self.knee!r}")
        if self.pulse is not None and not isinstance(self.pulse, PulseExtender):
            raise NetlistError(f"pulse must be None or a PulseExtender; got {self.pulse!r}")

    @property
    def rectifying(self) -> bool:
        return self.knee is not None

    def expression(self) -> sp.Expr:
        """The row voltage in the symbols ``V`` (and ``Q`` with a pulse extender), the softplus
        ``ln(1 + e^y)`` (:class:`_Softplus`) kept whole: ``b(V)``, ``gain·V`` or
        ``gain·w·softplus((V - knee)/w)``, saturated at ``±rail`` (:func:`_railed`), plus ``Q``."""
        b = _railed(self._membrane_share(), self.rail)
        return b if self.pulse is None else b + _PULSE

    def _membrane_share(self) -> sp.Expr:
        if self.knee is None:
            return sp.Float(self.gain) * _MEMBRANE
        w = sp.Float(RECTIFIER_WIDTH)
        return sp.Float(self.gain) * w * _Softplus((_MEMBRANE - sp.Float(self.knee)) / w)

    @functools.cached_property
    def _torch(self):
        # (torch's softplus returns y itself above y = 20, where ln(1 + e^y) differs from y by 2e-9)
        return sp.lambdify(_MEMBRANE, self._membrane_share(), modules=[{"_Softplus": torch.nn.functional.softplus}])

    @functools.cached_property
    def _torch_railed(self):
        return sp.lambdify(_ROW, _railed(_ROW, self.rail), modules=[{"_Softplus": torch.nn.functional.softplus}])

    def _share(self, v: torch.Tensor) -> torch.Tensor:
        return self.gain * v if self.knee is None else self._torch(v)

    def _saturate(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if self.rail is None else self._torch_railed(rows)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``b(v)`` of membranes ``v`` (V, any shape), differentiable: the rows without a pulse
        extender's share."""
        return self._saturate(self._share(v))

    def settings(self) -> dict:
        """The flat settings :func:`row_buffer` takes, as :class:`Network` and a network's config name them."""
        pulse = self.pulse
        return {"buffer_gain": self.gain, "buffer_knee": self.knee, "pulse_gain": None if pulse is None else pulse.gain,
                "pulse_tau": PULSE_TAU if pulse is None else pulse.tau, "buffer_rail": self.rail}

    def rows(self, v: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        """The row voltages ``b(v) + q`` (V; :meth:`expression`) of membranes ``v`` and the pulse
        extenders' ``q`` (V, the same shape; ``None`` without extenders), differentiable."""
        if (q is None) != (self.pulse is None):
            raise ConfigError("the pulse extenders' voltages are needed exactly when the buffers have extenders")
        return self(v) if q is None else self(v) + q

    def spice(self, membrane: str, pulse: str | None = None) -> str:
        """The row voltage as an ngspice expression of the node voltages ``V(membrane)`` and (with a
        pulse extender) ``V(pulse)``, the extender's capacitor."""
        if (pulse is None) != (self.pulse is None):
            raise NetlistError("a pulse extender's node is needed exactly when the buffers have extenders")
        nodes = {_MEMBRANE: f"V({membrane})", **({_PULSE: f"V({pulse})"} if pulse else {})}
        return spice_expr(self.expression().replace(_Softplus, _softplus_written_out), nodes)


@dataclass(frozen=True, eq=False)
class Crossbar:
    """Differential-pair conductances ``g_pos``, ``g_neg``: arrays of shape ``(n_in, n_out)``, S.
    ``g_range`` (S, S) is the ``[g_min, g_max]`` of this crossbar's memristors when it has its own
    (trained networks scale it with the fan-in); otherwise the network's synapse parameters hold."""

    g_pos: np.ndarray
    g_neg: np.ndarray
    g_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        g_pos, g_neg = (np.array(g, dtype=float) for g in (self.g_pos, self.g_neg))
        if g_pos.ndim != 2 or g_pos.shape != g_neg.shape or 0 in g_pos.shape:
            raise NetlistError(f"crossbar conductances must be two non-empty (n_in, n_out) arrays of one shape; "
                               f"got {g_pos.shape} and {g_neg.shape}")
        for label, g in (("g_pos", g_pos), ("g_neg", g_neg)):
            if not np.all(np.isfinite(g) & (g > 0)):
                bad = tuple(int(i) for i in np.argwhere(~(np.isfinite(g) & (g > 0)))[0])
                raise NetlistError(
                    f"crossbar {label}{list(bad)} = {float(g[bad])!r} S: conductances must be finite and > 0"
                )
        object.__setattr__(self, "g_pos", g_pos)
        object.__setattr__(self, "g_neg", g_neg)
        if self.g_range is not None:
            lo, hi = (float(g) for g in self.g_range)
            if not 0 < lo < hi:
                raise NetlistError(f"crossbar g_range must be (g_min, g_max) with 0 < g_min < g_max S; "
                                   f"got {self.g_range!r}")
            object.__setattr__(self, "g_range", (lo, hi))

    @property
    def n_in(self) -> int:
        return self.g_pos.shape[0]

    @property
    def n_out(self) -> int:
        return self.g_pos.shape[1]

    def column_currents(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Currents (A) into the columns, shape ``(..., n_out)``, for row drives ``u`` (V,
        ``(..., n_in)``) and column (membrane) voltages ``v`` (V, ``(..., n_out)``)."""
        return u @ (self.g_pos - self.g_neg) - v * (self.g_pos + self.g_neg).sum(axis=0)


@dataclass(frozen=True, eq=False)
class NeuronLayer:
    """``size`` neurons of the one-port device ``model`` (the MIF neuron unless another is given)
    sharing the parameters ``params`` (overrides of the model's defaults), except those in
    ``per_neuron``: one value per neuron (arrays of shape ``(size,)``), for chips whose neurons
    differ (:mod:`memspice.hardware`); ``bias``: a constant current (A, ``(size,)``) into each
    membrane, or None (a chip's threshold trims); ``rest``: the membrane voltages (V, ``(size,)``)
    a transient starts from instead of 0, or None (where those trims hold the membranes)."""

    size: int
    params: Mapping[str, float] = field(default_factory=dict)
    per_neuron: Mapping[str, np.ndarray] = field(default_factory=dict)
    model: DeviceModel = MIF
    bias: np.ndarray | None = None
    rest: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise NetlistError(f"a neuron layer needs a positive integer size; got {self.size!r}")
        if not isinstance(self.model, DeviceModel) or len(self.model.ports) != 1:
            raise NetlistError(f"a neuron is a one-port device model; got {self.model!r}")
        self.model.resolve(self.params)
        per_neuron = {name: np.array(values, dtype=float) for name, values in self.per_neuron.items()}
        for name, values in per_neuron.items():
            if values.shape != (self.size,):
                raise NetlistError(f"per-neuron {name} must hold one value per neuron ({self.size}); "
                                   f"got shape {values.shape}")
        object.__setattr__(self, "per_neuron", per_neuron)
        for name, what in (("bias", "currents"), ("rest", "voltages")):
            if getattr(self, name) is not None:
                values = np.array(getattr(self, name), dtype=float)
                if values.shape != (self.size,) or not np.isfinite(values).all():
                    raise NetlistError(f"a neuron layer's {name} must be finite {what}, one per neuron ({self.size}); "
                                       f"got shape {values.shape}")
                object.__setattr__(self, name, values)
        for j in range(self.size if per_neuron else 0):
            self.model.resolve(self.neuron(j))

    @property
    def resolved(self) -> dict[str, float]:
        """Every parameter's value (SI units) shared by the layer (``per_neuron`` aside)."""
        return self.model.resolve(self.params)

    def neuron(self, j: int) -> dict[str, float]:
        """Neuron ``j``'s parameter overrides: the layer's with its own values."""
        return {**self.params, **{name: float(values[j]) for name, values in self.per_neuron.items()}}


def row_buffer(gain: float, knee: float | None, pulse_gain: float | None, pulse_tau: float = PULSE_TAU,
               rail: float | None = None) -> RowBuffer:
    """The :class:`RowBuffer` of the flat settings a network's config and checkpoints hold
    (``pulse_gain`` ``None``: no pulse extenders; ``rail`` ``None``: no saturation)."""
    return RowBuffer(gain, knee, None if pulse_gain is None else PulseExtender(pulse_gain, pulse_tau), rail)


def check_sources(sources, n_layers: int, error: type[Exception]) -> tuple[tuple[int, ...], ...]:
    """``sources`` as tuples if they describe a feed-forward network of ``n_layers`` layers (one
    non-empty entry per layer of distinct sources, 0 for the inputs and ``j`` for layer ``j``,
    layer ``k`` reading only earlier layers, layer 1 only the inputs); else ``error`` naming the
    layer and what it may read."""
    sources = tuple(tuple(s) for s in sources)
    if len(sources) != n_layers:
        raise error(f"sources needs one entry per layer ({n_layers}); got {len(sources)}")
    for k, read in enumerate(sources):
        allowed = (0,) if k == 0 else tuple(range(k + 1))
        if not read or len(set(read)) != len(read) or any(
                isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s not in allowed for s in read):
            raise error(f"layer {k + 1} reads {read!r}: sources are distinct numbers from {allowed} "
                        "(0: the inputs, j: layer j's membranes; a layer reads only earlier layers)")
    return sources


@dataclass(frozen=True)
class Network:
    """A feed-forward network: ``layers`` of (crossbar, neuron layer); ``synapse`` is how a
    crossbar cell is built in SPICE: an ideal ``"resistor"`` or the ``"memristor"`` device model
    programmed to the same conductance (``synapse_params`` override its defaults).
    ``buffer_gain`` (V/V) and ``buffer_knee`` (V, ``None``: linear) are the row buffers
    between layers (:class:`RowBuffer`, :attr:`buffer`), ``pulse_gain`` (V/V, ``None``: none) and
    ``pulse_tau`` (s) the pulse extenders of every membrane that drives rows
    (:class:`PulseExtender`), ``buffer_rail`` (V, ``None``: none) the buffers' output swing
    (:class:`RowBuffer`). ``wire_resistance`` (Ω, 0: ideal wires) is each row and column
    wire segment between two cells, in tiles of ``tile_size`` rows and columns (``None``: one tile
    per layer; :mod:`memspice.hardware.wires` describes the layout).

    ``sources`` (``None``: a chain, each layer reading the one before) gives the topology of any
    other feed-forward network: ``sources[k]`` lists what drives layer ``k+1``'s rows, ``0`` for
    the input stimuli and ``j`` for layer ``j``'s membranes (buffered), one after the other: its
    crossbar's rows are theirs in that order (several inputs' column currents add at the
    membrane, so their crossbars stacked are the layer's crossbar). Layer 1 reads the inputs only."""

    layers: tuple[tuple[Crossbar, NeuronLayer], ...]
    synapse: str = "resistor"
    synapse_params: Mapping[str, float] = field(default_factory=dict)
    buffer_gain: float = 2.0
    wire_resistance: float = 0.0
    tile_size: int | None = None
    sources: tuple[tuple[int, ...], ...] | None = None
    buffer_knee: float | None = None
    pulse_gain: float | None = None
    pulse_tau: float = PULSE_TAU
    buffer_rail: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise NetlistError("a network needs at least one layer")
        self._check_sources()
        for k, (crossbar, neurons) in enumerate(self.layers):
            if crossbar.n_out != neurons.size:
                raise NetlistError(f"layer {k + 1}: the crossbar has {crossbar.n_out} columns but the neuron "
                                   f"layer {neurons.size} neurons")
            rows = sum(self.source_size(s) for s in self.layer_sources[k])
            if k and crossbar.n_in != rows:
                read = ", ".join("the inputs" if s == 0 else f"layer {s}" for s in self.layer_sources[k])
                raise NetlistError(f"layer {k + 1}: the crossbar has {crossbar.n_in} rows but {read} "
                                   f"{'has' if len(self.layer_sources[k]) == 1 else 'have'} {rows} outputs")
        self.buffer  # validates the buffers
        if isinstance(self.wire_resistance, bool) or not isinstance(self.wire_resistance, (int, float)) \
                or not 0 <= self.wire_resistance < float("inf"):
            raise NetlistError(f"wire_resistance must be a finite number >= 0 Ω; got {self.wire_resistance!r}")
        if self.tile_size is not None and (isinstance(self.tile_size, bool)
                                           or not isinstance(self.tile_size, (int, np.integer)) or self.tile_size < 1):
            raise NetlistError(f"tile_size must be a positive integer or None; got {self.tile_size!r}")
        if self.synapse not in SYNAPSE_KINDS:
            raise NetlistError(f"synapse must be one of {SYNAPSE_KINDS}; got {self.synapse!r}")
        # a netlist defines each subcircuit once, by name
        models = [neurons.model for _, neurons in self.layers] + ([SYNAPSE] if self.synapse == "memristor" else [])
        for name in {m.name for m in models}:
            if len({id(m) for m in models if m.name == name}) > 1:
                raise NetlistError(f"two different device models are named {name!r}: a netlist defines one "
                                   "subcircuit per name; rename one")
        params = SYNAPSE.resolve(self.synapse_params)
        if self.synapse == "memristor":
            for k, (crossbar, _) in enumerate(self.layers):
                lo, hi = crossbar.g_range or (params["gmin"], params["gmax"])
                g = np.concatenate([crossbar.g_pos.ravel(), crossbar.g_neg.ravel()])
                # float32-trained conductances may sit a rounding error outside their range
                if g.min() < lo * (1 - 1e-6) or g.max() > hi * (1 + 1e-6):
                    raise NetlistError(f"layer {k + 1}: conductances span [{g.min():g}, {g.max():g}] S, outside the "
                                       f"memristor range [gmin, gmax] = [{lo:g}, {hi:g}] S")

    def _check_sources(self) -> None:
        if self.sources is not None:
            object.__setattr__(self, "sources", check_sources(self.sources, len(self.layers), NetlistError))

    @property
    def buffer(self) -> RowBuffer:
        """The row buffers between layers."""
        return row_buffer(self.buffer_gain, self.buffer_knee, self.pulse_gain, self.pulse_tau, self.buffer_rail)

    @property
    def layer_sources(self) -> tuple[tuple[int, ...], ...]:
        """What drives each layer's rows (:attr:`sources`, or the chain's ``((0,), (1,), ...)``)."""
        return self.sources if self.sources is not None else tuple((k,) for k in range(len(self.layers)))

    def source_size(self, source: int) -> int:
        """How many rows ``source`` drives: the inputs (0) or layer ``source``'s neurons."""
        return self.layers[0][0].n_in if source == 0 else self.layers[source - 1][1].size

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(n_in, n_hidden..., n_out)``."""
        return (self.layers[0][0].n_in, *(neurons.size for _, neurons in self.layers))
