"""Step-wise layers for your own time loops and topologies, in the spirit of snnTorch.

A :class:`MemristiveLayer` is one or more differential crossbars whose columns meet at a layer
of neurons, MIF unless you give another one-port device model (the column currents of every
input add at the membrane). You advance it one
time step at a time::

    layer1 = MemristiveLayer(64, 32)
    layer2 = MemristiveLayer((32, 64), 10)          # two inputs: layer 1 and the pixels (a skip)
    s1, s2 = layer1.init_state(batch), layer2.init_state(batch)
    for n in range(n_steps):
        v1, s1 = layer1.step(rows[:, n + 1], s1)     # row voltages at the step's end (V)
        v2, s2 = layer2.step([s1, rows[:, n + 1]], s2)

Each step is the implicit solve of :class:`~memspice.nn.MemristiveSNN`: the loading term
``-Σ(G⁺ + G⁻)·v`` inside the Newton system, the implicit-function gradient, the same methods.
An input is either a tensor of row voltages at the step's end (linear in between, from the
previous step's value: the convention of every memspice input) or the :class:`LayerState` of
an upstream layer after its step: its membranes, through the buffers ``±b``
(:class:`~memspice.circuit.RowBuffer`: gain ``buffer_gain``, linear or rectifying),
at every stage of the step (the same values the whole-network solver uses, so a chain of layers
equals :class:`~memspice.nn.MemristiveSNN` to rounding). A step whose Newton iterations fail is
redone as 2, 4, ... substeps of this layer, its upstream inputs read from their stages'
polynomial. Topologies must be feed-forward: step each layer after the layers it reads.

:class:`LayerGraph` wires layers into a network by naming each one's sources: it runs the time
loop (``forward``) and describes the circuit for the netlister (``describe``), so any such
topology runs in ngspice too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from memspice.circuit import PULSE_TAU, Network, NeuronLayer, check_sources, row_buffer
from memspice.circuit import Crossbar as CrossbarDescription
from memspice.devices import MIF, DeviceModel
from memspice.errors import ConfigError, NewtonFailure
from memspice.nn.crossbar import (
    COLUMN_CONDUCTANCE,
    INIT_NEG,
    INIT_POS,
    ON_OFF_RATIO,
    MemristiveCrossbar,
    conductance_range,
)
from memspice.solver.accuracy import LayerError
from memspice.solver.integrators import NeuronEquations, StepContext, Stepper
from memspice.solver.methods import at_nodes
from memspice.solver.options import SolverOptions, solver_options


@dataclass
class LayerState:
    """A :class:`MemristiveLayer`'s state between steps: ``y`` the neurons' membranes and switch
    states (``(batch, n, 1 + m)``; :attr:`v` the membranes, V), ``step`` the steps taken, and
    what the next step and the layers downstream need: the membranes at the fractions ``nodes``
    of the last step (``stages``, each ``(batch, n)``), the row voltages of each tensor input at
    the last step's end, the stepper (its previous stages start Newton's iterations; its error
    estimates) and the crossbars as the neurons see them, taken once per time loop: each input's
    ``transfers`` ``G⁺ - G⁻`` (S, ``(n_in, n)``) and the columns' ``load`` ``-Σ(G⁺ + G⁻)`` (S, ``(n,)``)."""

    y: torch.Tensor
    step: int = 0
    nodes: tuple[float, ...] = ()
    stages: list[torch.Tensor] = field(default_factory=list)
    rows: list[torch.Tensor | None] = field(default_factory=list)
    stepper: Stepper | None = None
    transfers: list[torch.Tensor] = field(default_factory=list)
    load: torch.Tensor | None = None

    @property
    def v(self) -> torch.Tensor:
        """Membranes (V, ``(batch, n)``) at the end of the last step."""
        return self.y[..., 0]

    def membranes_at(self, fractions: Sequence[float]) -> list[torch.Tensor]:
        """Membranes at the ``fractions`` of the last step: its stages where they are, else the
        polynomial through the step's start and stages (the collocation polynomial of the
        implicit methods; linear for ``euler``)."""
        if tuple(fractions) == self.nodes:
            return list(self.stages)
        known = dict(zip(self.nodes, self.stages))
        points = sorted(known)
        out = []
        for f in fractions:
            if f in known:
                out.append(known[f])
                continue
            weights = [math.prod((f - q) / (p - q) for q in points if q != p) for p in points]
            out.append(sum(w * known[p] for w, p in zip(weights, points)))
        return out


class MemristiveLayer(nn.Module):
    """Crossbars from ``in_features`` inputs (one int, or one per input) onto ``out_features``
    neurons of ``neuron_model`` (a one-port :class:`~memspice.devices.DeviceModel`, the MIF neuron
    by default; ``neuron_params``: overrides of its defaults), advanced by :meth:`step`.
    Conductances as in :class:`~memspice.nn.MemristiveCrossbar` (``g_max = column_conductance / n_in`` per
    input, ``on_off_ratio``, ``init_pos``, ``init_neg``, ``parametrization``); ``buffer_gain``
    (V/V) and ``buffer_knee`` (V, ``None``: linear): the buffers between an upstream layer's
    membranes and these rows (:class:`~memspice.circuit.RowBuffer`; ``buffer_rail``: their swing;
    ``pulse_gain``, ``pulse_tau``: its pulse extenders, which only whole runs integrate: :meth:`step`
    refuses them); ``solver``: how each step is integrated (:class:`~memspice.solver.SolverOptions`,
    or a step dt in s: its ``dt``, ``method``, ``newton``, ``tolerance`` and ``fused``; a layer
    steps on a fixed grid, so not ``adaptive`` or ``checkpoint_every``). ``crossbars``: existing
    :class:`~memspice.nn.MemristiveCrossbar` modules to use instead of new ones (shared parameters)."""

    def __init__(self, in_features: int | Sequence[int], out_features: int,
                 neuron_params: Mapping[str, float] | None = None, buffer_gain: float = 2.0,
                 solver: SolverOptions | float = SolverOptions(), column_conductance: float = COLUMN_CONDUCTANCE,
                 on_off_ratio: float = ON_OFF_RATIO, init_pos: tuple[float, float] = INIT_POS,
                 init_neg: tuple[float, float] = INIT_NEG, parametrization: str = "sigmoid", seed: int = 0,
                 crossbars: Sequence[MemristiveCrossbar] | None = None, neuron_model: DeviceModel = MIF,
                 buffer_knee: float | None = None, pulse_gain: float | None = None,
                 pulse_tau: float = PULSE_TAU, buffer_rail: float | None = None) -> None:
        super().__init__()
        sizes = (in_features,) if isinstance(in_features, int) else tuple(in_features)
        for n in (*sizes, out_features):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"in_features and out_features must be positive integers; got {in_features!r}, "
                                  f"{out_features!r}")
        solver = solver_options(solver)
        if solver.adaptive is not False or solver.checkpoint_every is not None:
            raise ConfigError("a step-wise layer steps on its fixed grid: adaptive steps and checkpoint_every belong "
                              "to whole-network runs (simulate_network, MemristiveSNN)")
        if not isinstance(neuron_model, DeviceModel) or len(neuron_model.ports) != 1:
            raise ConfigError(f"neuron_model must be a one-port DeviceModel; got {neuron_model!r}")
        neuron_model.resolve(neuron_params or {})  # validates: one clear error here, not inside the solver
        if crossbars is None:
            generator = torch.Generator().manual_seed(seed)
            crossbars = [MemristiveCrossbar(n, out_features, *conductance_range(n, column_conductance, on_off_ratio),
                                  init_pos=init_pos, init_neg=init_neg, parametrization=parametrization,
                                  generator=generator) for n in sizes]
        elif [(c.n_in, c.n_out) for c in crossbars] != [(n, out_features) for n in sizes]:
            raise ConfigError(f"crossbars of {[(c.n_in, c.n_out) for c in crossbars]} cells for inputs {sizes} "
                              f"onto {out_features} neurons")
        self.in_features, self.out_features = sizes, out_features
        self.crossbars = nn.ModuleList(crossbars)
        self.neuron_model, self.overrides = neuron_model, dict(neuron_params or {})
        self.buffer = row_buffer(float(buffer_gain), buffer_knee, pulse_gain, pulse_tau, buffer_rail)
        self.solver = solver

    def init_state(self, batch: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   rows: Sequence[torch.Tensor | None] | None = None) -> LayerState:
        """Every neuron at rest (v = 0 V, switches off), before the first step; ``rows``: each
        tensor input's row voltages at t = 0 (V, ``(batch, n_in)``; default 0 V), from which the
        first step's rows rise linearly. The crossbars' conductances are taken here for the whole time
        loop: start a new state after an optimizer step."""
        equations = NeuronEquations(self.neuron_model, self.overrides)
        solver = self.solver
        stepper = Stepper(equations, solver.method, solver.newton, solver.fused, solver.tolerance)
        device = torch.device(device or "cpu")
        y = equations.initial_state(batch, self.out_features, dtype, device)
        rows = list(rows) if rows is not None else [None] * len(self.in_features)
        if len(rows) != len(self.in_features):
            raise ConfigError(f"rows needs one entry per input ({len(self.in_features)}); got {len(rows)}")
        start = [torch.zeros(batch, n, dtype=dtype, device=device) if r is None else r.to(dtype=dtype, device=device)
                 for r, n in zip(rows, self.in_features)]
        # the conductances once per time loop, not per step: one graph node for every step's gradient
        sides = [(c.g_pos.to(dtype=dtype, device=device), c.g_neg.to(dtype=dtype, device=device))
                 for c in self.crossbars]
        load = -sum((g_pos + g_neg).sum(0) for g_pos, g_neg in sides)
        return LayerState(y, 0, (0.0,), [y[..., 0]], start, stepper, [g_pos - g_neg for g_pos, g_neg in sides], load)

    def step(self, inputs: torch.Tensor | LayerState | Sequence[torch.Tensor | LayerState],
             state: LayerState) -> tuple[torch.Tensor, LayerState]:
        """One step of ``dt``: ``inputs`` (one per crossbar: row voltages at the step's end, V,
        ``(batch, n_in)``, or an upstream layer's :class:`LayerState` after its step) drive the
        neurons from ``state``. Returns the membranes at the step's end (V, ``(batch, n)``) and
        the new state."""
        inputs = [inputs] if isinstance(inputs, (torch.Tensor, LayerState)) else list(inputs)
        if len(inputs) != len(self.crossbars):
            raise ConfigError(f"the layer has {len(self.crossbars)} inputs; got {len(inputs)}")
        if self.buffer.pulse is not None and any(isinstance(source, LayerState) for source in inputs):
            raise ConfigError("a step-wise layer does not integrate pulse extenders; run the whole network "
                              "(MemristiveSNN.forward, simulate_network)")
        rows_now = self._check_inputs(inputs, state)
        stepper, dt, load = state.stepper, self.solver.dt, state.load

        def drive(fractions: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
            currents = 0.0
            for source, previous, now, transfer in zip(inputs, state.rows, rows_now, state.transfers):
                if isinstance(source, LayerState):
                    rows = self.buffer(torch.stack(source.membranes_at(fractions)))
                else:
                    rows = torch.stack([torch.lerp(previous, now, f) for f in fractions])
                currents = currents + rows @ transfer
            return currents, load

        for split in range(self.solver.newton.max_splits + 1):
            parts, y, trace = 2**split, state.y, [(0.0, state.y[..., 0])]
            try:
                for part in range(parts):
                    fractions = [(part + node) / parts for node in stepper.nodes]
                    where = StepContext(state.step + 1, (state.step + (part + 1) / parts) * dt, 1)
                    start = None
                    if stepper.needs_start_drive:  # (what the step's error estimate reads)
                        with torch.no_grad():
                            start = at_nodes(drive([part / parts]), 0)
                    y, stages = stepper.step(y, drive(fractions), dt / parts, where, start)
                    trace += [(f, v) for f, v in zip(fractions, stages) if f > 0]
                break
            except NewtonFailure:
                if split == self.solver.newton.max_splits:
                    raise
        nodes, stages = zip(*trace)
        rows = [self.buffer(source.v) if isinstance(source, LayerState) else now
                for source, now in zip(inputs, rows_now)]
        return y[..., 0], LayerState(y, state.step + 1, tuple(nodes), list(stages), rows, stepper, state.transfers,
                                     load)

    def _check_inputs(self, inputs: list, state: LayerState) -> list[torch.Tensor | None]:
        """Each tensor input as rows ``(batch, n_in)`` of the state's dtype; a ConfigError for a
        wrong shape or an upstream layer that is not one step ahead."""
        batch = state.y.shape[0]
        rows = []
        for k, (source, n_in) in enumerate(zip(inputs, self.in_features)):
            if isinstance(source, LayerState):
                if source.v.shape != (batch, n_in) or source.step != state.step + 1:
                    raise ConfigError(f"input {k}: an upstream layer of {tuple(source.v.shape)} membranes at step "
                                      f"{source.step}; this layer needs ({batch}, {n_in}) at step {state.step + 1} "
                                      "(step the layers it reads first)")
                rows.append(None)
            elif isinstance(source, torch.Tensor) and source.shape == (batch, n_in):
                rows.append(source.to(dtype=state.y.dtype, device=state.y.device))
            else:
                shape = tuple(source.shape) if isinstance(source, torch.Tensor) else type(source).__name__
                raise ConfigError(f"input {k}: row voltages must be a ({batch}, {n_in}) tensor or an upstream "
                                  f"LayerState; got {shape}")
        return rows

    def device_params(self) -> dict[str, float]:
        """Every device parameter of the layer's neurons (the model's defaults with the layer's
        overrides), SI units."""
        return self.neuron_model.resolve(self.overrides)

    def error(self, state: LayerState) -> LayerError | None:
        """The largest local error estimate of the steps so far (with a ``tolerance``)."""
        return state.stepper.error(1, self.solver.dt)

    def project_(self) -> None:
        """Put the crossbars' parameters back in range (after each optimizer step)."""
        for crossbar in self.crossbars:
            crossbar.project_()

    def extra_repr(self) -> str:
        return (f"{'+'.join(map(str, self.in_features))} -> {self.out_features} {self.neuron_model.name}, "
                f"dt={self.solver.dt:g} s, method={self.solver.method}")


class LayerGraph(nn.Module):
    """``layers`` wired into a feed-forward network: ``sources[k]`` lists what drives layer
    ``k+1``'s inputs, in its crossbars' order: ``0`` for the network's input rows, ``j`` for layer
    ``j`` (``j <= k``). Every layer takes the same step ``dt`` and buffers (the circuit has one
    kind of buffer)."""

    def __init__(self, layers: Sequence[MemristiveLayer], sources: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if not layers:
            raise ConfigError("a LayerGraph needs at least one layer")
        self.sources = check_sources(sources, len(layers), ConfigError)
        for name, values in (("dt", [layer.solver.dt for layer in layers]),
                             ("buffer", [layer.buffer for layer in layers])):
            if len(set(values)) > 1:
                raise ConfigError(f"every layer needs the same {name}; got {values}")
        n_inputs = layers[0].in_features[0]
        for k, (layer, read) in enumerate(zip(layers, self.sources)):
            sizes = tuple(n_inputs if s == 0 else layers[s - 1].out_features for s in read)
            if sizes != layer.in_features:
                raise ConfigError(f"layer {k + 1} has inputs of {layer.in_features} rows; its sources {read} give "
                                  f"{sizes}")
        self.n_inputs = n_inputs

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's membranes (V, ``(batch, n_steps + 1, n_k)``) for the input row voltages
        ``inputs`` (V, ``(batch, n_steps + 1, n_in)``, linear between samples), from rest."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.n_inputs or inputs.shape[1] < 2:
            raise ConfigError(f"inputs must be (batch, n_steps + 1, {self.n_inputs}) with n_steps >= 1; "
                              f"got {tuple(inputs.shape)}")
        batch, like = inputs.shape[0], {"dtype": inputs.dtype, "device": inputs.device}
        states = [layer.init_state(batch, **like, rows=[inputs[:, 0] if s == 0 else None for s in read])
                  for layer, read in zip(self.layers, self.sources)]
        membranes = [[state.v] for state in states]
        for n in range(inputs.shape[1] - 1):
            for k, (layer, read) in enumerate(zip(self.layers, self.sources)):
                v, states[k] = layer.step([inputs[:, n + 1] if s == 0 else states[s - 1] for s in read], states[k])
                membranes[k].append(v)
        return [torch.stack(v, 1) for v in membranes]

    def describe(self, synapse: str = "resistor") -> Network:
        """The circuit as a :class:`memspice.circuit.Network` with these :attr:`sources`: each
        layer's crossbars stacked row-wise into one (float64), ideal resistors or memristors as
        synapses (memristors need one conductance range per layer)."""
        layers = []
        for layer in self.layers:
            parts = [crossbar.describe() for crossbar in layer.crossbars]
            ranges = {part.g_range for part in parts}
            stacked = CrossbarDescription(np.concatenate([p.g_pos for p in parts]),
                                          np.concatenate([p.g_neg for p in parts]),
                                          g_range=ranges.pop() if len(ranges) == 1 else None)
            layers.append((stacked, NeuronLayer(layer.out_features, layer.overrides, model=layer.neuron_model)))
        buffer = self.layers[0].buffer
        return Network(tuple(layers), synapse=synapse, **buffer.settings(),
                       sources=self.sources)

    def project_(self) -> None:
        """Put every crossbar's parameters back in range (after each optimizer step)."""
        for layer in self.layers:
            layer.project_()
