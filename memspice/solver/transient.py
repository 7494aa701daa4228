"""Transient runs of neurons and feed-forward networks on a fixed time grid ``t_n = n·dt``.

Batch first: inputs are ``(batch, n_steps + 1, n)`` tensors sampled at the grid times, results
``(batch, n_steps + 1, n)``. Layer 1's rows are the inputs, layer ``k``'s rows are the buffers
(:class:`~memspice.circuit.RowBuffer`) ``±b`` of layer ``k-1``'s membranes at the same instant.
The network is feed-forward, so a layer's steps need nothing of the layers after it: exact for
the implicit methods too, the layers are solved in order within each step, or, with the fused
kernels on a fixed grid, one whole layer after the other (:func:`_integrate_layers`: a layer's
drive at every step in one matrix product, its gradient one adjoint pass).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from memspice.circuit import RowBuffer
from memspice.defaults import SPIKE_THRESHOLD
from memspice.devices import MIF
from memspice.devices.model import DeviceModel
from memspice.errors import ConfigError, SolverError
from memspice.signals import dense_spike_times, spike_times
from memspice.solver.accuracy import LayerError
from memspice.solver.cells import CellVoltage, cell_voltages
from memspice.solver.integrators import NeuronEquations, NewtonFailure, StepContext, Stepper
from memspice.solver.methods import RadauIIA, at_nodes, method_class
from memspice.solver.options import SolverOptions, solver_options
from memspice.solver.pulses import extend_pulses

Params = Mapping[str, "float | torch.Tensor"]
#: The most substeps an adaptive step splits a grid step into (dt / 64).
MAX_SUBSTEPS = 64


@dataclass
class Solution:
    """``t`` (s, ``(n_steps + 1,)``); per layer the membranes ``v`` (V, ``(batch, n_steps + 1,
    n_k)``) and, when recorded, the device states ``x`` (``(batch, n_steps + 1, n_k, m)``);
    ``newton_iterations``: per layer, the Newton iterations of the whole run (each solves every
    stage of every neuron of the batch at once; 0 for ``euler``); ``errors``: per layer, the
    largest local error estimate against the tolerance (:mod:`memspice.solver.accuracy`; ``None``
    when not estimated); ``split_steps``: grid steps that Newton's method only finished as
    substeps; ``cells``: per crossbar, the extreme voltages across its synapse cells
    (:mod:`memspice.solver.cells`; ``None`` for neurons without crossbars); ``pulses``: with pulse
    extenders, those of every layer but the last (V, ``(batch, n_steps + 1, n_k)``).

    With adaptive steps: ``substeps``, the steps taken (each grid step in ``2^k`` equal
    substeps). With adaptive steps or ``dense_output``: ``dense`` (:class:`DenseOutput`), every
    step taken, where :meth:`spike_times` reads spikes: between grid points, and narrower than
    the grid."""

    t: torch.Tensor
    v: list[torch.Tensor]
    x: list[torch.Tensor] | None
    newton_iterations: list[int] | None = None
    errors: list[LayerError] | None = None
    split_steps: int = 0
    cells: list[CellVoltage] | None = None
    substeps: int | None = None
    dense: DenseOutput | None = None
    pulses: list[torch.Tensor] | None = None

    def spike_times(self, layer: int = 0, item: int = 0, neuron: int = 0, component: int = 0,
                    level: float = SPIKE_THRESHOLD) -> np.ndarray:
        """The times (s) at which neuron ``neuron`` of layer ``layer`` (0 = the first) in batch
        item ``item`` crosses ``level`` upwards with its ``component`` (0: the membrane, V; ``k``:
        its ``k``-th state, e.g. a :class:`~memspice.devices.SpikeEvent`'s): located on each
        step's polynomial when the solution has a dense output
        (:func:`~memspice.signals.dense_spike_times`), else linearly between grid samples
        (:func:`~memspice.signals.spike_times`; a state needs ``record_states``)."""
        if self.dense is not None:
            d = self.dense
            return dense_spike_times(d.t.cpu().numpy(), _trace(d.y[layer], item, neuron, component),
                                     _trace(d.y_nodes[layer], item, neuron, component), d.nodes, level)
        if component == 0:
            trace = self.v[layer][item, :, neuron]
        elif self.x is not None:
            trace = self.x[layer][item, :, neuron, component - 1]
        else:
            raise ConfigError("a state's spikes need the states: simulate with record_states=True or dense_output=True")
        return spike_times(self.t.cpu().numpy(), trace.double().cpu().numpy(), level)


@dataclass
class DenseOutput:
    """Every step a solver took, substeps included: the ``K`` steps run from ``t[j]`` to
    ``t[j+1]`` (s, ``(K+1,)``); per layer the neurons' components (membrane first, V, then the
    states) at their ends ``y`` (``(batch, K+1, n_k, 1+m)``) and at the fractions ``nodes`` of
    each step ``y_nodes`` (``(batch, K, len(nodes), n_k, 1+m)``: a Radau step's stages, which
    with its ends define its collocation polynomial)."""

    t: torch.Tensor
    y: list[torch.Tensor]
    y_nodes: list[torch.Tensor]
    nodes: tuple[float, ...]


def _trace(y: torch.Tensor, item: int, neuron: int, component: int) -> np.ndarray:
    """One neuron's component from a dense output tensor, as float64 numpy."""
    return y[item, ..., neuron, component].double().cpu().numpy()


@dataclass(frozen=True)
class CrossbarPorts:
    """A crossbar as the linear multiport its columns present to the membranes: column currents
    ``I = rows @ transfer - v @ load.T`` (A) for row voltages ``rows`` (V, ``(..., n_in)``, the
    G⁻ side's negation included in ``transfer``) and membranes ``v`` (V, ``(..., n_out)``), with
    ``load = diag(self_load) + coupled``; ``transfer`` ``(n_in, n_out)``, ``self_load``
    ``(n_out,)``, ``coupled`` ``(n_out, n_out)`` with a zero diagonal, or None (S). The ideal
    crossbar (:meth:`ideal`) has ``transfer = G⁺ - G⁻``, ``self_load`` its column sums and no
    coupling; resistive wires (:mod:`memspice.hardware.wires`) couple the columns. The solver
    treats ``self_load`` implicitly and ``coupled`` with the membranes at each step's start: an
    error of the order of the coupling (1e-5 of the diagonal for 10 Ω wire segments in a 784x128
    layer) times the change of a membrane in one step."""

    transfer: torch.Tensor
    self_load: torch.Tensor
    coupled: torch.Tensor | None = None

    @classmethod
    def ideal(cls, g_pos: torch.Tensor, g_neg: torch.Tensor) -> CrossbarPorts:
        """The ideal crossbar of conductances ``g_pos``, ``g_neg`` (S, ``(n_in, n_out)``)."""
        if g_pos.shape != g_neg.shape or g_pos.ndim != 2:
            raise ConfigError(f"g_pos {tuple(g_pos.shape)} and g_neg {tuple(g_neg.shape)} must both be (n_in, n_out)")
        return cls(g_pos - g_neg, (g_pos + g_neg).sum(0))

    def coupling(self, v: torch.Tensor) -> torch.Tensor | None:
        """The current (A, like ``v``) the other columns' membranes ``v`` draw from each column."""
        return None if self.coupled is None else v @ self.coupled.T


def simulate_neurons(
    current: torch.Tensor,
    solver: SolverOptions | float = SolverOptions(),
    params: Params | None = None,
    model: DeviceModel = MIF,
    record_states: bool = True,
    dense_output: bool = False,
) -> Solution:
    """Neurons driven by input currents ``current`` (A, ``(batch, n_steps + 1, n)``) into their
    membranes, from rest, integrated as ``solver`` says (:class:`~memspice.solver.options.SolverOptions`;
    a bare number is the step dt in s with the default options). ``solver.fused`` runs each Newton
    iteration, and the gradient of each step, as one compiled kernel
    (:mod:`memspice.solver.fused`; the same numerics; it compiles once per device, dtype and method,
    cached on disk by torch). Every step estimates its local error against ``solver.tolerance``
    (``None``: no estimate), reported in :attr:`Solution.errors`;
    :func:`memspice.solver.accuracy.check_accuracy` warns about it. ``solver.adaptive`` (radau3,
    radau5) splits each grid step into as many equal substeps as keep the estimate within its
    tolerance, up to :data:`MAX_SUBSTEPS`: the solution stays on the grid, with every substep in
    its dense output. ``dense_output`` keeps every step with its stages, every component
    (:attr:`Solution.dense`), for :meth:`Solution.spike_times` between grid points."""
    _check_input(current, "current")
    layer = NeuronEquations(model, params)

    solver = solver_options(solver)
    nodes = method_class(solver.method)().nodes()
    no_load = torch.zeros((len(nodes), *current.shape[::2]), dtype=current.dtype, device=current.device)
    drives = _Drives(_Between(current, nodes), [no_load])
    return _integrate([layer], [current.shape[-1]], drives, current, solver, record_states, dense_output)


def simulate_network(
    weights: Sequence[tuple[torch.Tensor, torch.Tensor]],
    inputs: torch.Tensor,
    solver: SolverOptions | float = SolverOptions(),
    params: Sequence[Params | None] | None = None,
    buffer: RowBuffer | float = 2.0,
    model: DeviceModel = MIF,
    record_states: bool = False,
    column_noise: Sequence[torch.Tensor | None] | None = None,
    dense_output: bool = False,
    rest: Sequence[torch.Tensor | None] | None = None,
) -> Solution:
    """A feed-forward network of differential crossbars (``weights[k] = (g_pos, g_neg)``, S,
    ``(n_in, n_out)``, or the :class:`CrossbarPorts` of a crossbar with resistive wires) and
    neuron layers, driven by the row voltages ``inputs`` (V, ``(batch, n_steps + 1, n_in)``); see
    :mod:`memspice.circuit` for the conventions and :func:`simulate_neurons` for ``solver``;
    ``buffer``: the row buffers between layers (a number: linear buffers of that gain, V/V).
    ``column_noise[k]``: currents (A, ``(batch, n_steps + 1, n_k)``, linear between samples)
    added to layer ``k+1``'s column currents (a chip's read noise and trims); ``rest[k]``: the
    membrane voltages (V, ``(n_k,)``) layer ``k+1`` starts from instead of 0 (a chip's trimmed
    neurons at rest), or None; ``dense_output`` as in :func:`simulate_neurons`."""
    _check_input(inputs, "inputs")
    solver = solver_options(solver)
    buffer = buffer if isinstance(buffer, RowBuffer) else RowBuffer(buffer)
    params = list(params) if params is not None else [None] * len(weights)
    if len(params) != len(weights):
        raise ConfigError(f"{len(weights)} crossbars but {len(params)} neuron parameter sets")
    ports = [w if isinstance(w, CrossbarPorts) else CrossbarPorts.ideal(*w) for w in weights]
    sizes = []
    for k, port in enumerate(ports):
        n_in = inputs.shape[-1] if k == 0 else sizes[-1]
        if port.transfer.ndim != 2 or port.transfer.shape[0] != n_in:
            raise ConfigError(f"layer {k + 1}: the crossbar has {tuple(port.transfer.shape)} cells per side; it must "
                              f"be ({n_in}, n_out)")
        sizes.append(port.transfer.shape[1])
    layers = [NeuronEquations(model, p) for p in params]
    grid_nodes = method_class(solver.method)().nodes()
    # each layer's loading term at every node of a step, made once: the kernels take (nodes, B, n)
    loads = [-port.self_load.expand(len(grid_nodes), inputs.shape[0], n).contiguous() for port, n in zip(ports, sizes)]
    noise = list(column_noise) if column_noise is not None else [None] * len(ports)
    if len(noise) != len(ports) or any(c is not None and c.shape != (*inputs.shape[:2], n)
                                       for c, n in zip(noise, sizes)):
        raise ConfigError(f"column_noise needs one (batch, n_steps + 1, n_k) tensor or None per layer {sizes}")
    # the input layer's column currents at every grid time in one matrix product: they are
    # linear in the rows, so interpolating them equals driving with the interpolated rows
    input_currents = _Between(inputs @ ports[0].transfer + (0.0 if noise[0] is None else noise[0]), grid_nodes)
    later_noise = [None] + [None if c is None else _Between(c, grid_nodes) for c in noise[1:]]
    pulses = None if buffer.pulse is None else functools.partial(
        extend_pulses, dt=solver.dt, tau=buffer.pulse.tau, matrix=method_class(solver.method).tableau.matrix)
    drives = _Drives(input_currents, loads, ports, buffer, later_noise, pulses)
    if pulses is not None and not _layer_by_layer(drives, solver, dense_output):
        raise ConfigError("pulse extenders are integrated at the stages of a whole layer's run: they need a fixed "
                          "grid (no adaptive steps, dense output or checkpoint_every), the fused kernels, a Radau "
                          "IIA method and ideal wires")
    rest = list(rest) if rest is not None else [None] * len(ports)
    if len(rest) != len(ports) or any(r is not None and tuple(r.shape) != (n,) for r, n in zip(rest, sizes)):
        raise ConfigError(f"rest needs one (n_k,) tensor or None per layer {sizes}")
    solution = _integrate(layers, sizes, drives, inputs, solver, record_states, dense_output, rest)
    if pulses is not None:
        solution.pulses = [q.movedim(0, 1) for q in drives.pulse_grid]
    rows = [buffer.rows(v, q) for v, q in zip(solution.v[:-1], solution.pulses or [None] * (len(sizes) - 1))]
    solution.cells = cell_voltages([inputs, *rows], solution.v)
    return solution


def _check_input(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[1] < 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ConfigError(f"{name} must be a (batch, n_steps + 1, n) tensor with n_steps >= 1; got {shape}")
    if not tensor.is_floating_point():
        raise ConfigError(f"{name} must be a float tensor; got {tensor.dtype}")


class _Drives:
    """Each layer's drive in a run: the current ``a + b·v`` (A, with ``b`` in S) into its
    membranes. Layer 1's ``a`` are the grid samples ``first`` (linear between them, :class:`_Between`);
    layer ``k``'s the column currents of its crossbar ``ports[k]`` under the row voltages
    ``buffer(upstream)`` of the layer before, plus ``noise[k]`` (:class:`_Between`, or ``None``),
    less what wires couple in from the other columns; ``loads[k]`` is ``b`` at a step's nodes
    ``(nodes, B, n)``. Step by step (:meth:`step`) or, where no layer's drive depends on its own
    membranes (no coupled columns), every step of a layer at once (:meth:`run`, :meth:`on_grid`).
    ``pulses``: with pulse extenders in the buffers, :func:`~memspice.solver.pulses.extend_pulses`
    on the run's grid; they are integrated at the stages of a layer's whole run (:meth:`run`, which
    keeps each layer's on the grid in :attr:`pulse_grid`), not step by step."""

    def __init__(self, first: _Between, loads: list[torch.Tensor], ports: Sequence[CrossbarPorts] = (),
                 buffer: RowBuffer | None = None, noise: Sequence[_Between | None] = (),
                 pulses: Callable | None = None) -> None:
        self.first, self.loads, self.ports, self.buffer, self.noise = first, loads, ports, buffer, noise
        self.pulses, self.pulse_grid = pulses, []
        #: whether :meth:`run` applies (every layer's drive free of its own membranes)
        self.layer_by_layer = all(port.coupled is None for port in ports)

    def _columns(self, k: int, rows: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
        """Layer ``k``'s column currents under the membranes ``rows`` (``(..., n_{k-1})``) of the layer
        before and their pulse extenders' ``q`` (the same shape, or ``None``)."""
        if not self.buffer.rectifying and q is None:  # linear buffers commute with the product: scale its result
            return (rows @ self.ports[k].transfer) * self.buffer.gain
        return self.buffer.rows(rows, q) @ self.ports[k].transfer

    def step(self, k: int, n: int, nodes: list[float], upstream: torch.Tensor | None,
             start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``k``'s ``(a, b)`` at the fractions ``nodes`` of step ``n`` (``(len(nodes), B, n_k)``),
        from the membranes ``upstream`` of the layer before at the same instants and the layer's own at
        the step's start ``start`` ``(B, n_k)``."""
        if k == 0:
            currents = self.first(n, nodes)
        else:
            currents = self._columns(k, upstream)  # every node at once
            if self.noise[k] is not None:
                currents = currents + self.noise[k](n, nodes)
        coupling = self.ports[k].coupling(start) if self.ports else None
        return (currents if coupling is None else currents - coupling), self.loads[k]

    def run(self, k: int, upstream: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``k``'s ``(a, b)`` at every step's nodes, ``a`` ``(steps, nodes, B, n_k)`` from the
        membranes ``upstream`` of the layer before at the same instants (one matrix product), ``b``
        ``(nodes, B, n_k)``, the same at every step."""
        if k == 0:
            return self.first.every_step, self.loads[k]
        q = None
        if self.pulses is not None:
            q, grid = self.pulses(self.buffer.pulse.charge(upstream))
            self.pulse_grid.append(grid)
        currents = self._columns(k, upstream, q)
        return (currents if self.noise[k] is None else currents + self.noise[k].every_step), self.loads[k]

    def on_grid(self, k: int, upstream: torch.Tensor | None) -> torch.Tensor:
        """Layer ``k``'s ``a`` at the grid times ``(n_steps + 1, B, n_k)``, from the membranes ``upstream``
        of the layer before there (``(n_steps + 1, B, n_{k-1})``), without a gradient: what the error
        estimates read at every step's start."""
        with torch.no_grad():
            if k == 0:
                return self.first.by_step
            currents = self._columns(k, upstream, None if self.pulses is None else self.pulse_grid[k - 1])
            return currents if self.noise[k] is None else currents + self.noise[k].by_step


class _Between:
    """``samples`` (``(batch, n_steps + 1, ...)``) at ``t_n + node·dt`` for the nodes of a step,
    stacked ``(nodes, batch, ...)``: inputs are piecewise linear between the grid samples. At
    the method's own ``nodes`` every step is interpolated at once and unbound into per-step
    tensors, whose backward is one stack (indexing step by step would fill a zero gradient of
    the whole input at every step); the other fractions, those of a step split into substeps,
    are interpolated where they are asked for."""

    def __init__(self, samples: torch.Tensor, nodes: tuple[float, ...]) -> None:
        self.samples, self.nodes = samples, tuple(nodes)
        # every step's nodes at once, laid out step by step in memory, (steps, nodes, batch, ...): each
        # step's a contiguous view, as the solver's kernels take them
        self.by_step = samples.movedim(1, 0).contiguous()
        fractions = torch.tensor(nodes, dtype=samples.dtype, device=samples.device)
        #: ``(n_steps, nodes, batch, ...)``: every step's nodes
        self.every_step = _StepNodes.apply(self.by_step, fractions)

    @functools.cached_property
    def _per_step(self) -> tuple[torch.Tensor, ...]:
        return self.every_step.unbind(0)

    def __call__(self, n: int, nodes: list[float]) -> torch.Tensor:
        if tuple(nodes) == self.nodes:
            return self._per_step[n]
        if tuple(nodes) == (0.0,):  # a step's start: the sample itself
            return self.by_step[n].unsqueeze(0)
        return torch.stack([torch.lerp(self.samples[:, n], self.samples[:, n + 1], node) for node in nodes])


class _StepNodes(torch.autograd.Function):
    """``by_step`` (``(n_steps + 1, ...)``, contiguous) linear between its samples, at the
    ``fractions`` (``(k,)``) of every step: ``(n_steps, k, ...)``, contiguous. The backward is one
    batched product of each step's ``k`` gradients with the ``(2, k)`` weights on its two ends, where
    autograd's own gradient of ``torch.lerp`` multiplies and sums the broadcast gradient over the
    nodes twice (four passes over the largest tensor of the input layer's backward)."""

    @staticmethod
    def forward(ctx, by_step: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(fractions)
        shape = (-1, *(1 for _ in by_step.shape[1:]))
        return torch.lerp(by_step[:-1].unsqueeze(1), by_step[1:].unsqueeze(1), fractions.reshape(shape)).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (fractions,) = ctx.saved_tensors
        steps, rest = grad.shape[0], grad.shape[2:]
        ends = torch.stack([1.0 - fractions, fractions])  # (2, k): each node's weight on the step's start and end
        at_ends = torch.matmul(ends, grad.reshape(steps, len(fractions), -1))  # (n_steps, 2, ...)
        out = grad.new_zeros((steps + 1, at_ends.shape[-1]))
        out[:-1] += at_ends[:, 0]
        out[1:] += at_ends[:, 1]
        return out.reshape(steps + 1, *rest), None


def _integrate(
    layers: list[NeuronEquations],
    sizes: list[int],
    drives: _Drives,
    reference: torch.Tensor,
    solver: SolverOptions,
    record_states: bool,
    dense_output: bool = False,
    rest: Sequence[torch.Tensor | None] = (),
) -> Solution:
    if dense_output and solver.checkpoint_every:
        raise ConfigError("dense_output does not combine with checkpoint_every (a recomputed chunk would record "
                          "its steps again)")
    batch, n_points = reference.shape[0], reference.shape[1]
    dtype, device = reference.dtype, reference.device
    ys = [layer.initial_state(batch, n, dtype, device) for layer, n in zip(layers, sizes)]
    for y, v in zip(ys, rest):
        if v is not None:
            y[..., 0] = v.to(dtype=dtype, device=device)
    t = torch.arange(n_points, dtype=dtype, device=device) * solver.dt
    if _layer_by_layer(drives, solver, dense_output):
        solution = _integrate_layers(layers, ys, drives, solver, record_states, t)
        if solution is not None:
            return solution
        if drives.pulses is not None:
            raise SolverError("pulse extenders need the fused layer-by-layer run, and it did not apply: Newton's "
                              "method failed in a step (step by step, it would be split; try a smaller dt) or a "
                              "layer's device parameters need a gradient")
    run = _Integration(layers, ys, drives.step, solver, dense_output)
    record_v = [[y[..., 0]] for y in ys]
    record_x = [[y[..., 1:]] for y in ys]
    checkpoint_every = solver.checkpoint_every
    chunk = checkpoint_every or n_points
    for first in range(0, n_points - 1, chunk):
        last = min(first + chunk, n_points - 1)
        chunk_advance = functools.partial(run.advance, record_states=record_states,
                                          last_steps=[stepper.last_step for stepper in run.steppers])
        if checkpoint_every and torch.is_grad_enabled():
            ys, out_v, out_x = _checkpointed(chunk_advance, first, last, ys)
        else:
            ys, out_v, out_x = chunk_advance(first, last, ys)
        for k in range(len(layers)):
            record_v[k] += out_v[k]
            record_x[k] += out_x[k]
    v = [torch.stack(r, dim=1) for r in record_v]
    x = [torch.stack(r, dim=1) for r in record_x] if record_states else None
    return run.solution(t, v, x)


def _layer_by_layer(drives: _Drives, solver: SolverOptions, dense_output: bool) -> bool:
    """Whether a run can be integrated a whole layer at a time (:func:`_integrate_layers`): a fixed
    grid (no adaptive steps, no dense output, no checkpointed chunks), the fused kernels, a method
    whose steps are their stages alone (Radau IIA), and no layer driven by its own membranes."""
    scheme = method_class(solver.method)
    return (solver.fused and solver.adaptive is False and not dense_output and not solver.checkpoint_every
            and issubclass(scheme, RadauIIA) and drives.layer_by_layer)


def _integrate_layers(layers: list[NeuronEquations], starts: list[torch.Tensor], drives: _Drives,
                      solver: SolverOptions, record_states: bool, t: torch.Tensor) -> Solution | None:
    """A run on a fixed grid one layer at a time: layer ``k``'s every step, then layer ``k+1``'s
    driven by the membranes of all of them in one matrix product (the network is feed-forward;
    the same steps as step by step, in another order). Each layer's run is one
    :class:`~memspice.solver.fused.ImplicitRun`: its gradient is the adjoint of every step without a
    graph node per step. ``None`` when a step's Newton iterations fail or a layer cannot take the
    fused kernels: the caller then integrates step by step, where steps split and errors say why."""
    steppers = [Stepper(layer, solver.method, solver.newton, solver.fused, solver.tolerance) for layer in layers]
    if not all(stepper.fusable() for stepper in steppers):
        return None
    upstream = upstream_grid = None  # the layer before's membranes at every step's nodes, and on the grid
    v, x = [], []
    for k, (stepper, start) in enumerate(zip(steppers, starts)):
        a, b = drives.run(k, upstream)
        start_drives = drives.on_grid(k, upstream_grid) if solver.tolerance is not None else None
        run = stepper.fused_run(start, a, b, solver.dt, start_drives, record_states)
        if run is None:
            return None
        upstream, states = run  # (n_steps, s, B, n_k), (n_steps, m, B, n_k) or empty
        # (B, n_steps + 1, n_k): the start, then every step's end (its last stage)
        v.append(torch.cat([start[..., 0].unsqueeze(1), upstream[:, -1].movedim(0, 1)], dim=1))
        if record_states:
            x.append(torch.cat([start[..., 1:].unsqueeze(1), states.permute(2, 0, 3, 1)], dim=1))
        upstream_grid = v[-1].detach().movedim(1, 0)
    errors = None if solver.tolerance is None else [
        e for e in (stepper.error(k + 1, solver.dt) for k, stepper in enumerate(steppers)) if e is not None]
    return Solution(t, v, x if record_states else None, [stepper.iterations for stepper in steppers], errors, 0)


class _Integration:
    """One integration: a stepper per layer driven by ``drive``, the grid steps taken whole,
    split where Newton fails, or (``adaptive``) in as many substeps as the error estimate asks,
    and what the solution reports of them."""

    def __init__(self, layers: list[NeuronEquations], start: list[torch.Tensor], drive: Callable,
                 solver: SolverOptions, dense: bool = False) -> None:
        self.drive, self.dt, self.newton, self.adaptive = drive, solver.dt, solver.newton, solver.adaptive is not False
        self.tolerance = solver.step_tolerance
        self.steppers = [Stepper(layer, solver.method, solver.newton, solver.fused, self.tolerance,
                                 defer_estimates=not self.adaptive) for layer in layers]
        self.split_steps: set[int] = set()  #: grid steps Newton only finished in substeps
        self.parts = 1  #: adaptive: the substeps per grid step, carried from one step to the next
        self.substeps_taken = 0  #: adaptive: the substeps of the whole run
        self.dense = dense or self.adaptive  #: whether every (sub)step taken is recorded:
        self.dense_t: list[float] = [0.0]  #: its end time (s)...
        self.dense_y = [[y.detach()] for y in start]  #: ...each layer's components, from ``start``...
        self.dense_nodes: list[list[torch.Tensor]] = [[] for _ in start]  #: ...and at its nodes ``(B, s, n, d)``
        self.nodes = tuple(c for c in self.steppers[0].nodes if c > 0.0)  #: the nodes after a step's start

    def substeps(self, n: int, states: list[torch.Tensor], parts: int,
                 visited: list | None = None) -> list[torch.Tensor]:
        """Step ``n -> n+1`` of every layer, as ``parts`` equal substeps (each one's end time and
        components, at its end and at its nodes, appended to ``visited``, when given)."""
        dt = self.dt
        for part in range(parts):
            upstream = None  # the membranes of the layer before at this substep's nodes (nodes, B, n)
            new_states, stage_states = [], []
            for k, stepper in enumerate(self.steppers):
                drive = self.drive(k, n, [(part + node) / parts for node in stepper.nodes], upstream,
                                   states[k][..., 0])
                start_drive = self.start_drive(k, n, part / parts, states) if stepper.needs_start_drive else None
                where = StepContext(n + 1, (n + (part + 1) / parts) * dt, k + 1)
                y, upstream = stepper.step(states[k], drive, dt / parts, where, start_drive)
                new_states.append(y)
                if visited is not None:
                    stage_states.append(stepper.stage_states(y))
            states = new_states
            if visited is not None:
                visited.append(((n + (part + 1) / parts) * dt, [y.detach() for y in states], stage_states))
        return states

    def start_drive(self, k: int, n: int, fraction: float, states: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Layer ``k``'s drive ``(B, n)`` at ``t_n + fraction·dt`` (a (sub)step's start, where
        every layer is at ``states``), detached: what an error estimate reads."""
        with torch.no_grad():
            upstream = None if k == 0 else states[k - 1][..., 0].unsqueeze(0)
            return at_nodes(self.drive(k, n, [fraction], upstream, states[k][..., 0]), 0)

    def adaptive_step(self, n: int, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """Step ``n -> n+1`` in equal substeps, their number doubled until every layer's local
        error estimate is within the tolerance (or :data:`MAX_SUBSTEPS` are reached: the estimate
        then says so), and halved for the next step when it would still be well within."""
        parts = self.parts
        while True:
            for stepper in self.steppers:
                stepper.open_attempt()
            visited: list = []
            try:
                new_states = self.substeps(n, states, parts, visited)
                ratio = max(stepper.attempt_ratio for stepper in self.steppers)
            except NewtonFailure:
                if parts >= MAX_SUBSTEPS:
                    raise
                self.split_steps.add(n)
                ratio = float("inf")
            accept = ratio <= 1.0 or parts >= MAX_SUBSTEPS
            for stepper in self.steppers:
                stepper.close_attempt(keep=accept)
            if accept:
                break
            parts *= 2
        self.record(visited)
        self.substeps_taken += parts
        if parts > 1 and ratio * 2.0 ** self.steppers[0].scheme.estimate_order < 0.5:
            parts //= 2
        self.parts = parts
        return new_states

    def record(self, visited: list) -> None:
        """Keeps the (sub)steps of one grid step in the dense output."""
        for time, ends, stage_states in visited:
            self.dense_t.append(time)
            for k, (y, y_nodes) in enumerate(zip(ends, stage_states)):
                self.dense_y[k].append(y)
                self.dense_nodes[k].append(y_nodes)

    def split_step(self, n: int, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """Step ``n -> n+1`` whole, or, where Newton's method fails, in 2, 4, ... substeps."""
        for split in range(self.newton.max_splits + 1):
            visited = [] if self.dense else None
            try:
                states = self.substeps(n, states, 2**split, visited)
                if visited is not None:
                    self.record(visited)
                return states
            except NewtonFailure as failure:
                self.split_steps.add(n)
                if split == self.newton.max_splits:
                    raise NewtonFailure(f"{failure} (also with the step split into {2**split} substeps); "
                                        f"try a smaller dt") from None

    def advance(self, first: int, last: int, states: list[torch.Tensor], record_states: bool, last_steps: list):
        """Grid steps ``first..last`` from ``states``: the states after them and, per layer, the
        membranes (and device states, with ``record_states``) at each step's end."""
        for stepper, last_step in zip(self.steppers, last_steps):  # a recomputed chunk starts from the same guesses
            stepper.last_step = last_step
        out_v, out_x = [[] for _ in states], [[] for _ in states]
        for n in range(first, last):
            states = self.adaptive_step(n, states) if self.adaptive else self.split_step(n, states)
            for k, y in enumerate(states):
                out_v[k].append(y[..., 0])
                if record_states:
                    out_x[k].append(y[..., 1:])
        for stepper in self.steppers:
            stepper.fold_deferred()
        return states, out_v, out_x

    def solution(self, t: torch.Tensor, v: list[torch.Tensor], x: list[torch.Tensor] | None) -> Solution:
        """The :class:`Solution` of the grid ``t``, membranes ``v`` and states ``x``, with the
        run's statistics, error estimates and (adaptive) dense output."""
        errors = None if self.tolerance is None else [
            e for e in (stepper.error(k + 1, self.dt) for k, stepper in enumerate(self.steppers)) if e is not None]
        solution = Solution(t, v, x, [stepper.iterations for stepper in self.steppers], errors, len(self.split_steps))
        if self.adaptive:
            solution.substeps = self.substeps_taken
        if self.dense:
            solution.dense = DenseOutput(torch.tensor(self.dense_t, dtype=t.dtype, device=t.device),
                                         [torch.stack(r, dim=1) for r in self.dense_y],
                                         [torch.stack(r, dim=1) for r in self.dense_nodes], self.nodes)
        return solution


def _checkpointed(advance, first, last, ys):
    """Run ``advance`` over steps ``first..last`` keeping only its inputs and outputs for the
    backward pass (recomputed then): memory O(chunk) instead of O(steps) for the internals."""
    n_layers = len(ys)

    def run(*flat):
        new_states, out_v, out_x = advance(first, last, list(flat))
        counts = [len(o) for o in out_v] + [len(o) for o in out_x]
        return (*new_states, *(t for o in out_v for t in o), *(t for o in out_x for t in o)), counts

    counts_box = {}

    def wrapped(*flat):
        outputs, counts = run(*flat)
        counts_box["counts"] = counts
        return outputs

    outputs = checkpoint(wrapped, *ys, use_reentrant=False)
    counts = counts_box["counts"]
    new_states = list(outputs[:n_layers])
    pos = n_layers
    out_v, out_x = [], []
    for c in counts[:n_layers]:
        out_v.append(list(outputs[pos : pos + c]))
        pos += c
    for c in counts[n_layers:]:
        out_x.append(list(outputs[pos : pos + c]))
        pos += c
    return new_states, out_v, out_x
