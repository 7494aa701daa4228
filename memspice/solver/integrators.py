"""One time step of a layer of one-port neuron devices.

Each neuron of a layer is the system ``M dy/dt = g(y, t)`` with ``y = (v, x_1..x_m)``: the
membrane voltage ``v`` (V) and the device's states. Its input is a current that is affine in
its own voltage, ``a + b·v`` (``a`` in A, ``b`` in S: a crossbar column gives
``a = u·(G⁺ - G⁻)``, ``b = -Σ(G⁺ + G⁻)``, the loading term). So

    g_v = a + b·v - I(v, x),   g_x = f(v, x),   M = diag(C, 1, ..., 1)

with ``I``, ``f``, ``C = dQ/dv`` and their Jacobians from the device model
(:meth:`memspice.codegen.torch_functions.TorchDevice.linearize_ordered`): the solver never restates a
device equation.

Methods (one step of ``dt``):

* ``euler``: linearly implicit Euler (one Rosenbrock stage): one linear solve per step, no
  iteration; first order, L-stable. The cheap one.
* ``trap``: trapezoidal rule (SPICE's default) with Newton iterations; second order, A-stable.
* ``radau3``, ``radau5``: Radau IIA collocation with 2 and 3 stages, orders 3 and 5, L-stable
  and stiffly accurate; Newton on all stages at once. ``radau5`` is the accurate one: at a
  step that resolves the switches' time constants it follows a spike train with a few steps per
  switching event (docs/solver.md).

Newton runs without autograd until converged; one last Newton step from the converged point is
taken with autograd. Because the residual vanishes there, that step's derivative is exactly the
implicit-function-theorem gradient, at the memory cost of a single step.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
import torch

from memspice.codegen.torch_functions import TorchDevice, torch_device
from memspice.devices.model import DeviceModel
from memspice.errors import SolverError
from memspice.solver.linear import ArrowFactors, arrow_factor, solve_arrow, solve_dense, solve_factored

METHODS = ("euler", "trap", "radau3", "radau5")


@dataclass
class StepContext:
    """Where a step is, for error messages: step index, time (s), layer (from 1)."""

    step: int
    time: float
    layer: int


class NeuronLayer:
    """The equations of ``n`` neurons of one device model, with their (float or tensor)
    parameters; tensors have shape ``(n,)`` or broadcast to it."""

    def __init__(self, model: DeviceModel, params: Mapping[str, float | torch.Tensor] | None = None) -> None:
        if len(model.ports) != 1:
            raise ValueError(f"the solver integrates one-port neuron devices; {model.name} has ports {model.ports}")
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
    """:meth:`NeuronLayer.system` as a function of its data (what :func:`torch.compile` traces)."""
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
    whole per-iteration work, elementwise, in one function so that it can be fused."""
    g, jac, mass = _system(device, params, z, a_stage, b_stage)
    r = mass * (z - start) - torch.einsum("ij,dj...->di...", a_tilde, g) - explicit
    if detach:
        jac, mass = jac.detach(), mass.detach()
    return solve(a_tilde, mass, jac, r), r


def _factor_at(device: TorchDevice, params: list, z: torch.Tensor, a_stage: torch.Tensor, b_stage: torch.Tensor,
               a_tilde: torch.Tensor) -> ArrowFactors:
    """The arrow factorization of the Newton matrix at the stage values ``z``."""
    _, jac, mass = _system(device, params, z, a_stage, b_stage)
    return arrow_factor(a_tilde, mass, jac)


@functools.cache
def _fused_factor_at():
    """:func:`_factor_at` compiled by :func:`torch.compile`."""
    return _compiled(_factor_at)


@functools.cache
def _fused_newton_update():
    """:func:`_newton_update` compiled by :func:`torch.compile` (one fused kernel per shape;
    built on first use, compiled per shape on first call)."""
    return _compiled(_newton_update)


def _compiled(function):
    # inductor 2.13 warns about its own use of a deprecated helper on every compile: noise to users
    warnings.filterwarnings("ignore", message=r".*_prims_common\.check.*", category=FutureWarning)
    return torch.compile(function, dynamic=None)


def _states_uncoupled(model: DeviceModel) -> bool:
    """Whether every state's derivative is free of the other states (the Jacobian is an arrow
    matrix, :func:`~memspice.solver.linear.solve_arrow` applies)."""
    derivatives, states = model.state_derivatives(), model.state_symbols
    return all(sp.diff(f, x) == 0 for k, f in enumerate(derivatives) for j, x in enumerate(states) if k != j)


@dataclass
class NewtonOptions:
    """Convergence of the implicit methods: every neuron's update below ``vtol`` (V) on the
    membrane and ``xtol`` on each state, within ``max_iter`` iterations.

    Far from the solution a full Newton update can jump across a switch's threshold and
    oscillate: like SPICE's junction limiting, each neuron's update is scaled down so that it
    moves the membrane by at most ``max_dv`` (V) and any state by at most ``max_dx``. A step
    that still fails is retried as 2, 4, ... substeps, at most ``2**max_splits`` (the way
    SPICE cuts its time step), before the solver gives up."""

    vtol: float = 1e-7
    xtol: float = 1e-6
    max_iter: int = 20
    max_dv: float = 0.2
    max_dx: float = 0.5
    max_splits: int = 4


class NewtonFailure(SolverError):
    """Newton's method did not converge within a step (the caller may split the step)."""


@dataclass(frozen=True)
class Method:
    """An implicit method written as ``s`` stages at the fractions ``nodes`` of the step:

        M·(Y_i - y_n) = dt·Σ_j A_ij·g(Y_j, t_n + c_j·dt) + explicit,     y_{n+1} = Y_s

    (``explicit`` is ``dt/2·g(y_n)`` for the trapezoidal rule, 0 for Radau IIA)."""

    matrix: tuple[tuple[float, ...], ...]
    nodes: tuple[float, ...]


_R6 = math.sqrt(6.0)
_TABLEAUS = {
    "trap": Method(((0.5,),), (1.0,)),
    "radau3": Method(((5 / 12, -1 / 12), (3 / 4, 1 / 4)), (1 / 3, 1.0)),
    "radau5": Method((
        ((88 - 7 * _R6) / 360, (296 - 169 * _R6) / 1800, (-2 + 3 * _R6) / 225),
        ((296 + 169 * _R6) / 1800, (88 + 7 * _R6) / 360, (-2 - 3 * _R6) / 225),
        ((16 - _R6) / 36, (16 + _R6) / 36, 1 / 9)), ((4 - _R6) / 10, (4 + _R6) / 10, 1.0)),
}


class Stepper:
    """Advances one layer by a step ``dt`` with ``method``.

    :attr:`nodes` are the fractions of the step at which :meth:`step` needs the layer's drive;
    it returns the membrane voltages at the same instants, which drive the next layer."""

    def __init__(self, layer: NeuronLayer, method: str, newton: NewtonOptions | None = None,
                 fused: bool = False) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        self.layer, self.method, self.fused = layer, method, fused
        self.newton = newton or NewtonOptions()
        # the trapezoidal rule also needs the drive at the start of the step
        self.nodes = {"euler": (1.0,), "trap": (0.0, 1.0)}.get(method) or _TABLEAUS[method].nodes

    def step(self, y: torch.Tensor, drives: list[tuple[torch.Tensor, torch.Tensor]], dt: float,
             where: StepContext) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``y_{n+1}`` from ``y_n`` (``(B, n, 1+m)``) and the membrane voltages at :attr:`nodes`;
        ``drives[j] = (a, b)`` drive the neurons at ``t_n + nodes[j]·dt``. Raises
        :class:`NewtonFailure` when Newton's method does not converge."""
        y_c = y.movedim(-1, 0)  # components first: the layout of the linear algebra (a view)
        if self.method == "euler":
            g, jac, mass = self.layer.system(y_c, *drives[0])
            a_tilde = torch.full((1, 1), dt, dtype=y.dtype, device=y.device)
            y_next = y_c + self.layer.solve(a_tilde, mass.unsqueeze(1), jac.unsqueeze(2), dt * g.unsqueeze(1))[:, 0]
            stages = [y_next[0]]
        else:
            explicit = 0.0
            if self.method == "trap":
                g_now, _, _ = self.layer.system(y_c, *drives[0], jacobian=False)
                explicit, drives = 0.5 * dt * g_now.unsqueeze(1), drives[1:]
            stage_values = self._newton(y_c, explicit, _TABLEAUS[self.method], drives, dt, where)
            y_next = stage_values[:, -1].contiguous()  # the canonical layout for the next step
            stages = list(stage_values[0].unbind(0))
            if self.method == "trap":
                stages = [y_c[0], *stages]
        y_next = y_next.movedim(0, -1)
        self._check_finite(y_next, where)
        return y_next, stages

    def _check_finite(self, y: torch.Tensor, where: StepContext) -> None:
        """Raise :class:`SolverError` naming the first NaN or Inf of ``y`` (``(..., B, n, 1+m)``)."""
        if not torch.isfinite(y).all():
            index = tuple(torch.nonzero(~torch.isfinite(y))[0].tolist())
            bad, value = index[-3:], y[index].item()
            raise SolverError(f"{self.method}: state {bad[2]} of neuron {bad[1]} (batch item {bad[0]}) became "
                              f"{value} at step {where.step} (t = {where.time:.6g} s), layer {where.layer}; "
                              f"check the inputs and parameters, or try a smaller dt")

    def _newton(self, y, explicit, method: Method, drives, dt: float, where: StepContext) -> torch.Tensor:
        """The stage values ``(1+m, s, B, n)`` of ``method`` from ``y`` ``(1+m, B, n)``, by
        Newton's method on all stages at once (damped as :class:`NewtonOptions` says)."""
        opts = self.newton
        s, d, batch = len(method.nodes), y.shape[0], y.shape[1:]
        like = {"dtype": y.dtype, "device": y.device}
        a_matrix = torch.tensor(method.matrix, **like)
        a_tilde = dt * a_matrix
        a_stage = torch.stack([torch.as_tensor(a, **like).expand(batch) for a, _ in drives])
        b_stage = torch.stack([torch.as_tensor(b, **like).expand(batch) for _, b in drives])
        per_component = (d, 1, *(1 for _ in batch))
        tolerance = torch.tensor([opts.vtol] + [opts.xtol] * (d - 1), **like).reshape(per_component)
        limit = torch.tensor([opts.max_dv] + [opts.max_dx] * (d - 1), **like).reshape(per_component)
        start = y.unsqueeze(1)

        layer = self.layer

        def newton_update(z, detach=False):  # z: (d, s, B, n)
            # fused: the iterations without autograd (most of the work; one compiled graph per
            # layer shape, inputs detached so that grad flags do not multiply the graphs)
            fuse = self.fused and not torch.is_grad_enabled()
            update = _fused_newton_update() if fuse else _newton_update
            inputs = (z, start, a_stage, b_stage, explicit)
            if fuse:
                inputs = tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in inputs)
                detach = False  # no autograd: nothing to detach
            try:
                return update(layer.device, layer.params, layer.solve, *inputs, a_tilde, detach)
            except torch.linalg.LinAlgError:  # an exactly singular matrix (dense solve)
                return torch.full_like(z, torch.nan), torch.zeros_like(z)

        def size(delta, scale):  # per neuron: the largest component of |delta| / scale
            return (delta.abs() / scale).amax(dim=(0, 1))

        with torch.no_grad():
            z = start.detach().expand(d, s, *batch).clone()
            for _ in range(opts.max_iter):
                delta, r = newton_update(z)
                misses = size(delta, tolerance)
                worst_miss = misses.max().item()
                if not math.isfinite(worst_miss):
                    self._check_finite(r.movedim(0, -1), where)  # a NaN in the equations: splitting cannot help
                    raise NewtonFailure(f"{self.method}: singular Newton matrix at step {where.step} "
                                        f"(t = {where.time:.6g} s), layer {where.layer}")
                if worst_miss <= 1.0:
                    break
                z = z - delta / size(delta, limit).clamp(min=1.0)
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
        with torch.no_grad():  # the matrix, factored once (fused); its backward is the transposed solve
            factor = _fused_factor_at() if self.fused else _factor_at
            factors = factor(layer.device, layer.params, z, a_stage.detach(), b_stage.detach(), a_tilde)
        g, _, mass = layer.system(z, a_stage, b_stage, jacobian=False)
        r = mass * (z - start) - torch.einsum("ij,dj...->di...", a_tilde, g) - explicit
        return z - solve_factored(factors, r)
