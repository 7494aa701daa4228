"""One time step of a layer of one-port neuron devices.

Each neuron of a layer is the system ``M dy/dt = g(y, t)`` with ``y = (v, x_1..x_m)``: the
membrane voltage ``v`` (V) and the device's states. Its input is a current that is affine in
its own voltage, ``a + b·v`` (``a`` in A, ``b`` in S: a crossbar column gives
``a = u·(G⁺ - G⁻)``, ``b = -Σ(G⁺ + G⁻)``, the loading term). So

    g_v = a + b·v - I(v, x),   g_x = f(v, x),   M = diag(C, 1, ..., 1)

with ``I``, ``f``, ``C = dQ/dv`` and their Jacobians from the device model
(:meth:`memspice.codegen.torch_functions.TorchDevice.linearize_ordered`): the solver never restates a
device equation.

The methods (``euler``, ``trap``, ``radau3``, ``radau5``) are classes in
:mod:`memspice.solver.methods`; the stepper here does what they share.

Newton starts from the previous step's collocation polynomial and runs without autograd until
converged; one last Newton step from the converged point is taken with autograd. Because the
residual vanishes there, that step's derivative is exactly the implicit-function-theorem
gradient, at the memory cost of a single step. Two executions of the same algorithm: the
reference path (tensor form, eager, any device) and, with ``fused`` for arrow-Jacobian devices,
:mod:`memspice.solver.fused` (one compiled kernel per Newton iteration and one for the gradient;
it hands any step it cannot finish to the reference path, whose errors say why).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
import torch

from memspice.codegen.torch_functions import TorchDevice, torch_device
from memspice.devices.model import DeviceModel
from memspice.errors import ConfigError, NewtonFailure, SolverError
from memspice.solver import fused as fused_step
from memspice.solver.accuracy import LayerError, Tolerance
from memspice.solver.linear import arrow_factor, solve_arrow, solve_dense, solve_factored
from memspice.solver.methods import Tableau, at_nodes, method_class


@dataclass
class StepContext:
    """Where a step is, for error messages: step index, time (s), layer (from 1)."""

    step: int
    time: float
    layer: int


class NeuronEquations:
    """The equations of ``n`` neurons of one device model, with their (float or tensor)
    parameters; tensors have shape ``(n,)`` or broadcast to it."""

    def __init__(self, model: DeviceModel, params: Mapping[str, float | torch.Tensor] | None = None) -> None:
        if len(model.ports) != 1:
            raise ConfigError(f"the solver integrates one-port neuron devices; {model.name} has ports {model.ports}")
        self.model = model
        self.device = torch_device(model)
        self.params = self.device.ordered(params)
        floats = {k: v for k, v in (params or {}).items() if not isinstance(v, torch.Tensor)}
        self.initial = self.device.initial_states(floats)
        self.n_states = len(model.states)
        self.solve = solve_arrow if _states_uncoupled(model) else solve_dense
        self.device.linear_function, self.device.residual_function  # noqa: B018 (built now, not when compiling)

    def initial_state(self, batch: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``y`` at rest: ``(batch, n, 1 + n_states)``, v = 0 and the states' initial values
        (stored components first, the layout :class:`Stepper` works in)."""
        values = torch.tensor([0.0, *self.initial], dtype=dtype, device=device)
        return values.reshape(-1, 1, 1).expand(-1, batch, n).contiguous().movedim(0, -1)

    def system(self, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, jacobian: bool = True):
        """For ``y`` ``(1+m, ...)`` (components first) and the drive ``a``, ``b`` (``(...)``):
        ``g(y)`` ``(1+m, ...)``, its Jacobian ``(1+m, 1+m, ...)`` (``None`` unless ``jacobian``)
        and the mass ``(1+m, ...)``."""
        return _system(self.device, self.params, y, a, b, jacobian)


def _system(device: TorchDevice, params: list, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
            jacobian: bool = True):
    """:meth:`NeuronEquations.system` as a function of its data (the device, its parameters, the tensors)."""
    v, x = y[0], y[1:]
    if not jacobian:
        currents, derivatives, capacitance = device.residual_ordered([v], x.unbind(0), params)
        g = torch.cat([(a + b * v - currents[0]).unsqueeze(0), derivatives])
        return g, None, torch.cat([capacitance[0], torch.ones_like(x)])
    lin = device.linearize_ordered([v], x.unbind(0), params)
    g = torch.cat([(a + b * v - lin.currents[0]).unsqueeze(0), lin.derivatives])
    mass = torch.cat([lin.capacitance[0], torch.ones_like(x)])
    top = torch.cat([(b - lin.di_dv[0, 0]).unsqueeze(0), -lin.di_dx[0]])
    bottom = torch.cat([lin.df_dv, lin.df_dx], dim=1)
    return g, torch.cat([top.unsqueeze(0), bottom]), mass


def _newton_update(device: TorchDevice, params: list, solve, z: torch.Tensor, start: torch.Tensor,
                   a_stage: torch.Tensor, b_stage: torch.Tensor, explicit, a_tilde: torch.Tensor, detach: bool):
    """One Newton update ``(1+m, s, ...)`` of the stage values ``z`` and their residual: the
    whole per-iteration work of the reference path."""
    g, jac, mass = _system(device, params, z, a_stage, b_stage)
    r = mass * (z - start) - torch.einsum("ij,dj...->di...", a_tilde, g) - explicit
    if detach:
        jac, mass = jac.detach(), mass.detach()
    return solve(a_tilde, mass, jac, r), r


@functools.lru_cache(maxsize=8)
def _no_error(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A worst-error record (ratio, time, component; :meth:`Stepper.error`) of no error yet; read
    only (every fold makes new tensors), so kept for the next run of the same shape: a fresh
    zero-filled megabyte per layer and run cost more than the estimate's arithmetic."""
    return (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device),
            torch.zeros(shape, dtype=torch.long, device=device))


def _is_batch_tensor(value, batch: torch.Size, dtype: torch.dtype) -> bool:
    """Whether ``value`` is already a tensor of shape ``batch`` and ``dtype`` (no conversion needed)."""
    return isinstance(value, torch.Tensor) and value.shape == batch and value.dtype == dtype


@functools.cache
def _states_uncoupled(model: DeviceModel) -> bool:
    """Whether every state's derivative is free of the other states (the Jacobian is an arrow
    matrix, :func:`~memspice.solver.linear.solve_arrow` applies)."""
    derivatives, states = model.state_derivatives(), model.state_symbols
    return all(sp.diff(f, x) == 0 for k, f in enumerate(derivatives) for j, x in enumerate(states) if k != j)


@dataclass
class NewtonOptions:
    """Convergence of the implicit methods: every neuron's remaining error below ``vtol`` (V) on
    the membrane and ``xtol`` on each state, within ``max_iter`` iterations. The error an
    iteration leaves is estimated from how fast the iterations contract
    (:func:`~memspice.solver.fused.remaining_error`, RADAU5's stopping rule), so the iteration
    that would only confirm convergence is not run. Left ``None``, the tolerances suit the dtype:
    :data:`DEFAULT_TOLERANCES` (float32 cannot resolve much below 1e-7 V; float64 solutions are
    kept far more accurate, so that finite differences of them are smooth).

    Far from the solution a full Newton update can jump across a switch's threshold and
    oscillate: like SPICE's junction limiting, each neuron's update is scaled down so that it
    moves the membrane by at most ``max_dv`` (V) and any state by at most ``max_dx``. A step
    that still fails is retried as 2, 4, ... substeps, at most ``2**max_splits`` (the way
    SPICE cuts its time step), before the solver gives up."""

    vtol: float | None = None
    xtol: float | None = None
    max_iter: int = 20
    max_dv: float = 0.2
    max_dx: float = 0.5
    max_splits: int = 4

    def __post_init__(self) -> None:
        for name in ("vtol", "xtol", "max_dv", "max_dx"):
            value = getattr(self, name)
            if value is None and name in ("vtol", "xtol"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"NewtonOptions.{name} must be a number > 0{' or None' if 'tol' in name else ''}; "
                                  f"got {value!r}")
        for name, least in (("max_iter", 1), ("max_splits", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"NewtonOptions.{name} must be an integer >= {least}; got {value!r}")

    def tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        """``(vtol, xtol)`` for solutions of ``dtype``: the ones given, else :data:`DEFAULT_TOLERANCES`."""
        vtol, xtol = DEFAULT_TOLERANCES[torch.float64 if dtype == torch.float64 else torch.float32]
        return (vtol if self.vtol is None else self.vtol, xtol if self.xtol is None else self.xtol)


@functools.lru_cache(maxsize=64)
def _scaled_matrix(matrix: tuple[tuple[float, ...], ...], dt: float, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """``dt·A`` ``(s, s)`` of a tableau's matrix ``A`` (made once: every step of a run needs it)."""
    return dt * torch.tensor(matrix, dtype=dtype, device=device)


@functools.cache
def _predictor_weights(nodes: tuple[float, ...], used: int) -> tuple[tuple[float, ...], ...]:
    """``(s, p)``: the Lagrange weights at ``1 + c_j`` (this step's nodes, in units of the step)
    of the polynomial through the previous step's last ``p = -used`` points of ``(0, *nodes)``."""
    points = (0.0, *nodes)[used:]
    return tuple(tuple(math.prod((1.0 + node - q) / (p - q) for q in points if q != p) for p in points)
                 for node in nodes)


@functools.lru_cache(maxsize=64)
def _predictor_matrix(weights: tuple[tuple[float, ...], ...], dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
    return torch.tensor(weights, dtype=dtype, device=device)


#: The most steps whose error estimates :class:`Stepper` defers before it folds them in.
MAX_DEFERRED = 64

#: Newton's tolerances (V on the membrane, each state's own) by dtype, where not given.
DEFAULT_TOLERANCES = {torch.float32: (1e-7, 1e-6), torch.float64: (1e-10, 1e-9)}


class Stepper:
    """Advances one layer by a step ``dt`` with ``method`` (a name in
    :data:`~memspice.solver.methods.METHODS`).

    :attr:`nodes` are the fractions of the step at which :meth:`step` needs the layer's drive;
    it returns the membrane voltages at the same instants, which drive the next layer. Where
    :attr:`needs_start_drive`, the step's error estimate also reads the drive at the step's
    start, which the caller hands over apart (no gradient flows through an estimate).

    With a ``tolerance`` every step estimates its local error (:mod:`memspice.solver.accuracy`)
    and the stepper keeps each neuron's largest (:meth:`error`). With ``defer_estimates`` (a run
    on a fixed grid, which needs no estimate before its end) the steps of a method whose estimate
    needs nothing but the step itself are estimated later, all at once (:meth:`fold_deferred`):
    one call instead of one per step, the same figures."""

    def __init__(self, layer: NeuronEquations, method: str, newton: NewtonOptions | None = None,
                 fused: bool = False, tolerance: Tolerance | None = None, defer_estimates: bool = False) -> None:
        self.scheme = method_class(method)()
        self.nodes = self.scheme.nodes()
        #: whether :meth:`step` takes the drive at the step's start apart (its ``start_drive``)
        self.needs_start_drive = (tolerance is not None and self.scheme.estimate_reads_start_drive
                                  and self.nodes[0] != 0.0)
        self.layer, self.method, self.fused, self.tolerance = layer, method, fused, tolerance
        #: per neuron ``(B, n)``: the largest estimate / tolerance so far, its time (s) and component
        self._worst: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._kept = self._worst  #: the run's worst while an adaptive step is tried (:meth:`open_attempt`)
        self._defer = defer_estimates and self.scheme.estimate_from_step_alone
        #: the steps whose estimate is still to be folded in: ``(start_drive, dt, time, (start, stages))``
        self._deferred: list[tuple] = []
        self.newton = newton or NewtonOptions()
        self.iterations = 0  #: Newton iterations so far, every step and stage at once counting one
        #: the layer's parameters as the fused kernels take them: constants, and tensors
        self.floats, self.tensors = fused_step.split_params(layer.params)
        #: ``(dt, start, stages)`` of the last step solved (detached), for :meth:`_guess`; ``None``
        #: when there is none
        self.last_step: tuple[float, torch.Tensor, torch.Tensor] | None = None
        #: whether the step being taken was solved by the fused kernels, whose convergence
        #: check (a NaN or Inf anywhere fails it) leaves nothing for :meth:`_check_finite`
        self._converged_finite = False
        self._fusable = fused and layer.solve is solve_arrow and not any(
            isinstance(p, torch.Tensor) and p.requires_grad for p in layer.params)

    def step(self, y: torch.Tensor, drive: tuple[torch.Tensor, torch.Tensor], dt: float, where: StepContext,
             start_drive: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``y_{n+1}`` from ``y_n`` (``(B, n, 1+m)``) and the membrane voltages ``(k, B, n)`` at
        the ``k`` :attr:`nodes`; ``drive = (a, b)`` drives the neurons at ``t_n + nodes[j]·dt``
        (:data:`~memspice.solver.methods.Drive`: ``a`` ``(k, B, n)``), ``start_drive`` (``a``
        ``(B, n)``, detached) at ``t_n``, where :attr:`needs_start_drive`. Raises
        :class:`NewtonFailure` when Newton's method does not converge."""
        y_c = y.movedim(-1, 0)  # components first: the layout of the linear algebra (a view)
        self._converged_finite = False
        if self.nodes[0] == 0.0:
            start_drive = at_nodes(drive, 0)
        elif self.needs_start_drive and start_drive is None:
            raise ConfigError(f"{self.method}: the error estimate needs the drive at the step's start (start_drive)")
        y_next, membranes = self.scheme.advance(self, y_c, start_drive, drive, dt, where)
        if self.nodes[0] == 0.0:
            membranes = torch.cat([y_c[:1], membranes])
        if not self._converged_finite:
            self._check_finite(y_next.movedim(0, -1), where)
        if self.tolerance is not None:
            with torch.no_grad():
                if self._defer:
                    batch = y_c.shape[1:]
                    start = tuple(t.detach() if _is_batch_tensor(t, batch, y.dtype)
                                  else torch.as_tensor(t, dtype=y.dtype, device=y.device).detach().expand(batch)
                                  for t in start_drive)
                    self._deferred.append((start, dt, where.time, self.last_step[1:]))
                    if len(self._deferred) >= MAX_DEFERRED:  # memory stays bounded on long runs
                        self.fold_deferred()
                else:
                    self._estimate(y_c.detach(), y_next.detach(), start_drive, dt,
                                   torch.tensor(where.time, dtype=y.dtype, device=y.device),
                                   self.last_step[1:] if self.last_step is not None else None)
        return y_next.movedim(0, -1), membranes

    def stage_states(self, y_next: torch.Tensor) -> torch.Tensor:
        """Every component at the nodes after the start of the step just taken, detached,
        ``(B, s, n, 1+m)``: its stages, or its end ``y_next`` (``(B, n, 1+m)``) for a method
        without stages."""
        if self.scheme.tableau is None:
            return y_next.detach().unsqueeze(1)
        return self.last_step[2].detach().permute(2, 1, 3, 0)

    def _estimate(self, y: torch.Tensor, y_next: torch.Tensor, start_drive, dt: float, time: torch.Tensor,
                  stages: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """The local error of the step ``y -> y_next`` (``(d, B, n)``, its ``stages`` as in
        :attr:`last_step`) against the tolerance, folded into each neuron's worst so far with
        ``time`` (s, 0-d or broadcasting to ``(B, n)``)."""
        if self._worst is None:
            self._worst = _no_error(y.shape[1:], y.dtype, y.device)
        self._worst = self.scheme.fold_error(self, self._worst, (self.tolerance.v, self.tolerance.x), y, y_next,
                                             start_drive, dt, time, stages)

    def fold_deferred(self) -> None:
        """Estimates the deferred steps (``defer_estimates``), those of one step size in one call
        with the steps side by side on the batch axis, and folds each neuron's worst in."""
        deferred, self._deferred = self._deferred, []
        for dt in dict.fromkeys(entry[1] for entry in deferred):  # a fixed grid has one; split steps add others
            steps = [entry for entry in deferred if entry[1] == dt]
            drive = tuple(torch.cat([entry[0][k] for entry in steps]) for k in range(2))
            stages = tuple(torch.cat([entry[3][k] for entry in steps], 2) for k in range(2))
            # (a method that estimates from its stages alone is stiffly accurate: y_n starts the
            # stages, y_{n+1} is the last)
            y, y_next = stages[0][:, 0], stages[1][:, -1]
            with torch.no_grad():
                ratio, _, component = self.scheme.fold_error(
                    self, _no_error(y.shape[1:], y.dtype, y.device), (self.tolerance.v, self.tolerance.x), y, y_next,
                    drive, dt, torch.zeros((), dtype=y.dtype, device=y.device), stages)
                # each neuron's worst step (the first of equals, as folding them one by one keeps)
                ratio, step = ratio.reshape(len(steps), *steps[0][0][0].shape).max(0)
                times = torch.tensor([entry[2] for entry in steps], dtype=y.dtype, device=y.device)
                component = component.reshape(len(steps), *ratio.shape).gather(0, step.unsqueeze(0))[0]
                if self._worst is None:
                    self._worst = _no_error(ratio.shape, y.dtype, y.device)
                self._worst = fused_step.keep_worst(self._worst, ratio, component, times[step])

    def open_attempt(self) -> None:
        """Estimate the steps from here on apart from the run's worst (an adaptive step's try)."""
        self._kept, self._worst = self._worst, None

    @property
    def attempt_ratio(self) -> float:
        """The largest estimate / tolerance since :meth:`open_attempt` (0 without one; NaN counts
        as infinite)."""
        return 0.0 if self._worst is None else float(self._worst[0].max())

    def close_attempt(self, keep: bool) -> None:
        """With ``keep`` the estimates since :meth:`open_attempt` join the run's worst; otherwise
        they are forgotten."""
        attempt, self._worst = self._worst, self._kept
        if keep and attempt is not None:
            ratio, time, component = attempt
            self._worst = attempt if self._worst is None else fused_step.keep_worst(self._worst, ratio, component,
                                                                                     time)

    def error(self, layer: int, dt: float) -> LayerError | None:
        """The largest local error estimate so far (``None`` without estimates) as a
        :class:`~memspice.solver.accuracy.LayerError` of layer number ``layer``; ``dt`` (s) is the
        grid step (times are reported on it)."""
        if self._worst is None:
            return None
        ratio, time, component = self._worst
        index = int(torch.argmax(ratio.reshape(-1)).item())
        batch_item, neuron = divmod(index, ratio.shape[-1])
        c = int(component.reshape(-1)[index].item())
        t = float(time.reshape(-1)[index].item())
        states = [state.name for state in self.layer.model.states]
        return LayerError(layer, float(ratio.reshape(-1)[index].item()), t, round(t / dt), batch_item, neuron,
                          "v" if c == 0 else states[c - 1], dt, self.scheme.estimate_order)

    def _check_finite(self, y: torch.Tensor, where: StepContext) -> None:
        """Raise :class:`SolverError` naming the first NaN or Inf of ``y`` (``(..., B, n, 1+m)``)."""
        if not torch.isfinite(y).all():
            index = tuple(torch.nonzero(~torch.isfinite(y))[0].tolist())
            bad, value = index[-3:], y[index].item()
            raise SolverError(f"{self.method}: state {bad[2]} of neuron {bad[1]} (batch item {bad[0]}) became "
                              f"{value} at step {where.step} (t = {where.time:.6g} s), layer {where.layer}; "
                              f"check the inputs and parameters, or try a smaller dt")

    def solve_stages(self, y: torch.Tensor, explicit: torch.Tensor | None, tableau: Tableau,
                     drive: tuple[torch.Tensor, torch.Tensor], dt: float,
                     where: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The stages of ``tableau`` from ``y`` ``(1+m, B, n)`` driven by ``drive`` at the step's
        nodes (``a`` ``(k, B, n)``, the stages' the last ``s``), by Newton's method on all stages
        at once (damped as :class:`NewtonOptions` says): the last stage ``(1+m, B, n)`` (the
        step's end, contiguous) and the stage membranes ``(s, B, n)``."""
        a_tilde = _scaled_matrix(tableau.matrix, dt, y.dtype, y.device)
        a_stage, b_stage = drive
        if b_stage.shape != a_stage.shape:  # the kernels take b like a (a run's loads already are)
            b_stage = b_stage.expand(a_stage.shape).contiguous()
        start = y.unsqueeze(1)
        if self.fusable():
            iterates = self._fused_newton(start, a_stage, b_stage, explicit, a_tilde, dt, tableau)
            if iterates is not None:
                linearized_at, z = iterates
                self.last_step = (dt, start.detach(), z)
                self._converged_finite = True
                inputs = (start, a_stage, b_stage, explicit)
                if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
                    return fused_step.ImplicitStep.apply(z, linearized_at, *inputs, a_tilde, self.layer.device,
                                                         self.floats, self.tensors)
                return z[:, -1].contiguous(), z[0]
            # not converged, or not finite: the reference path says why (or splits the step)
        s = len(tableau.nodes)
        z = self._reference_newton(self._guess(start, dt, tableau), start, a_stage[-s:], b_stage[-s:], explicit,
                                   a_tilde, where)
        self.last_step = (dt, start.detach(), z.detach())
        return z[:, -1].contiguous(), z[0]

    def fused_run(self, start: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt: float,
                  start_drives: torch.Tensor | None, with_states: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every step of a run on a fixed grid of ``dt`` by the fused kernels (a method whose steps are
        their stages, Radau IIA), from ``start`` ``(B, n, 1+m)``, driven by ``a`` ``(steps, s, B, n)``
        at each step's stages and the load ``b`` ``(s, B, n)``; ``start_drives`` ``(≥ steps, B, n)``,
        the drive at each step's start, is what the error estimates read (with a tolerance). Returns
        the stage membranes ``(steps, s, B, n)`` (the last stage is the step's end) and,
        ``with_states``, the states at every step's end ``(steps, m, B, n)`` (else an empty tensor),
        differentiable in ``start``, ``a`` and ``b`` (:class:`~memspice.solver.fused.ImplicitRun`),
        or ``None`` when a step's Newton iterations do not converge (step by step, the caller then
        splits the step or says why)."""
        tableau = self.scheme.tableau
        a_tilde = _scaled_matrix(tableau.matrix, dt, start.dtype, start.device)
        first = start.movedim(-1, 0).unsqueeze(1)  # (d, 1, B, n)
        y, drive, load = first.detach().contiguous(), a.detach(), b.detach()
        steps, like = drive.shape[0], {"dtype": y.dtype, "device": y.device}
        if self.tolerance is not None:
            fold = self.scheme.fused_error_fold(self, (self.tolerance.v, self.tolerance.x), dt, **like)
            times = torch.arange(1, steps + 1, **like) * dt  # each step's end (s)
            if self._worst is None:
                self._worst = _no_error(y.shape[2:], **like)
        stages, linearized = [], []
        for n in range(steps):
            iterates = self._fused_newton(y, drive[n], load, None, a_tilde, dt, tableau)
            if iterates is None:
                return None
            linearized_at, z = iterates
            self.last_step = (dt, y, z)
            if self.tolerance is not None:
                self._worst = fold(self._worst, y, z, start_drives[n], load[0], times[n])
            stages.append(z)
            linearized.append(linearized_at)
            y = z[:, -1:].contiguous()
        if torch.is_grad_enabled() and any(t.requires_grad for t in (start, a, b)):
            return fused_step.ImplicitRun.apply(first, a, b, stages, linearized, a_tilde, self.layer.device,
                                                self.floats, self.tensors, with_states)
        return fused_step.run_outputs(stages, with_states)

    def fusable(self) -> bool:
        """Whether the fused kernels can take this layer's steps: an arrow Jacobian and no
        parameter that needs a gradient."""
        return self._fusable

    def _guess(self, start: torch.Tensor, dt: float, tableau: Tableau) -> torch.Tensor:
        """The first Newton iterate ``(1+m, s, B, n)``: the previous step's collocation
        polynomial (through its start and stages, or its method's ``predictor_points`` last ones)
        extrapolated to this step's nodes, as Hairer and Wanner's RADAU5 starts; the start ``y_n``
        at every stage when there is no previous step of the same size."""
        d, s, batch = start.shape[0], len(tableau.nodes), start.shape[2:]
        last = self._history(start, dt)
        if last is None:
            return start.detach().expand(d, s, *batch).clone()
        weights = _predictor_matrix(self._predictor(tableau), start.dtype, start.device)
        values = torch.cat([last[0], last[1]], 1)[:, -weights.shape[1]:]  # (1+m, len(points), B, n)
        # one batched product over the components (half the time of the same einsum)
        return torch.matmul(weights, values.reshape(d, weights.shape[1], -1)).reshape(d, s, *batch)

    def _history(self, start: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The previous step's start ``(1+m, 1, B, n)`` and stages ``(1+m, s, B, n)`` when it had
        this step's size ``dt`` and shape, else ``None`` (then there is nothing to extrapolate)."""
        last = self.last_step
        if last is None or last[0] != dt or last[1].shape != start.shape:
            return None
        return last[1], last[2]

    def _predictor(self, tableau: Tableau) -> tuple[tuple[float, ...], ...]:
        """:func:`_predictor_weights` of this method's predictor (its ``predictor_points`` last
        points, else the start and every stage)."""
        return _predictor_weights(tableau.nodes, -(self.scheme.predictor_points or len(tableau.nodes) + 1))

    def _fused_newton(self, start, a_stage, b_stage, explicit, a_tilde, dt: float,
                      tableau: Tableau) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The last two iterates (the converged stages are the second; the first is where their
        Newton matrix was taken), each iteration one kernel, or ``None`` when Newton does not
        converge within ``max_iter`` iterations or meets a NaN (the reference path then says
        why). The first iteration starts from :meth:`_guess`, extrapolated inside its kernel
        (:func:`memspice.solver.fused.predicted_newton_kernel`) when there is a previous step to
        extrapolate; the others are :func:`memspice.solver.fused.newton_kernel`."""
        opts, layer = self.newton, self.layer
        options = (layer.device, self.floats, opts.tolerances(start.dtype), (opts.max_dv, opts.max_dx))
        kernel = fused_step.newton_kernel(*options)
        inputs = [t.detach() if t is not None else None for t in (start, a_stage, b_stage, explicit)]
        last = self._history(start, dt)
        with torch.no_grad():
            if last is None:
                z = previous = self._guess(start, dt, tableau)
                misses = torch.zeros(z.shape[2:], dtype=z.dtype, device=z.device)
            for iteration in range(opts.max_iter):
                if iteration == 0 and last is not None:
                    predicted = fused_step.predicted_newton_kernel(*options, self._predictor(tableau))
                    z, misses, worst = predicted(self.tensors, *last, *inputs, a_tilde)
                else:
                    previous = z
                    z, misses, worst = kernel(self.tensors, z, *inputs, a_tilde, misses)
                worst = worst.item()
                if not math.isfinite(worst):
                    return None
                if worst <= 1.0:
                    self.iterations += iteration + 1
                    if iteration == 0 and last is not None:  # converged at once: at the guess itself
                        previous = self._guess(start, dt, tableau)
                    return previous, z
        return None

    def _reference_newton(self, guess, start, a_stage, b_stage, explicit, a_tilde,
                          where: StepContext) -> torch.Tensor:
        """:meth:`_newton` in tensor form from the first iterate ``guess`` (any device; eager):
        the robust path, and the one whose errors say what failed. Returns the stages
        ``(1+m, s, B, n)``."""
        opts, layer = self.newton, self.layer
        d, batch = start.shape[0], start.shape[2:]
        like = {"dtype": start.dtype, "device": start.device}
        explicit = 0.0 if explicit is None else explicit
        per_component = (d, 1, *(1 for _ in batch))
        vtol, xtol = opts.tolerances(start.dtype)
        tolerance = torch.tensor([vtol] + [xtol] * (d - 1), **like).reshape(per_component)
        limit = torch.tensor([opts.max_dv] + [opts.max_dx] * (d - 1), **like).reshape(per_component)

        def newton_update(z, detach=False):  # z: (d, s, B, n)
            try:
                return _newton_update(layer.device, layer.params, layer.solve, z, start, a_stage, b_stage, explicit,
                                      a_tilde, detach)
            except torch.linalg.LinAlgError:  # an exactly singular matrix (dense solve)
                return torch.full_like(z, torch.nan), torch.zeros_like(z)

        def size(delta, scale):  # per neuron: the largest component of |delta| / scale
            return (delta.abs() / scale).amax(dim=(0, 1))

        with torch.no_grad():
            z, misses = guess, torch.zeros(guess.shape[2:], **like)
            for iteration in range(opts.max_iter):
                delta, r = newton_update(z)
                last, misses = misses, size(delta, tolerance)
                damping = 1.0 / size(delta, limit).clamp(min=1.0)
                worst_miss = fused_step.remaining_error(misses, last, damping).max().item()
                if not math.isfinite(worst_miss):
                    self._check_finite(r.movedim(0, -1), where)  # a NaN in the equations: splitting cannot help
                    raise NewtonFailure(f"{self.method}: singular Newton matrix at step {where.step} "
                                        f"(t = {where.time:.6g} s), layer {where.layer}")
                if worst_miss <= 1.0:  # (the differentiable step below applies this update)
                    self.iterations += iteration + 1
                    break
                z = z - delta * damping
            else:
                worst = torch.argmax(misses.reshape(-1)).item()
                batch_item, neuron = divmod(worst, misses.shape[-1])
                raise NewtonFailure(
                    f"{self.method}: Newton did not converge in {opts.max_iter} iterations at step {where.step} "
                    f"(t = {where.time:.6g} s), layer {where.layer}, neuron {neuron} (batch item {batch_item}): "
                    f"last update {delta[0].abs().max().item():.3g} V")
        # one differentiable Newton step from the solution, its matrix detached: the
        # implicit-function gradient
        if layer.solve is not solve_arrow:
            return z - newton_update(z, detach=True)[0]
        with torch.no_grad():  # the matrix, factored once; its backward is the transposed solve
            _, jac, mass = _system(layer.device, layer.params, z, a_stage.detach(), b_stage.detach())
            factors = arrow_factor(a_tilde, mass, jac)
        g, _, mass = layer.system(z, a_stage, b_stage, jacobian=False)
        r = mass * (z - start) - torch.einsum("ij,dj...->di...", a_tilde, g) - explicit
        return z - solve_factored(factors, r)
