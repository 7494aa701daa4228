"""The integration methods: a registry of method classes, after torchdiffeq's ``SOLVERS``.

A method is a class that carries its tableau, its order and its local error estimate; the
:class:`~memspice.solver.integrators.Stepper` of a layer holds one instance (its estimator's
memory is per layer) and asks it for the fractions of a step at which it needs the drive
(:meth:`Method.nodes`), for the step (:meth:`Method.advance`) and for the step's error
(:meth:`Method.local_error`). Adding a method is a subclass decorated with :func:`register`; no
dispatcher changes.

* ``euler``: linearly implicit Euler (one Rosenbrock stage): one linear solve per step, no
  iteration; first order, L-stable. The cheap one.
* ``trap``: trapezoidal rule (SPICE's default) with Newton iterations; second order, A-stable.
* ``radau3``, ``radau5``, ``radau7``: Radau IIA collocation with 2, 3 and 4 stages, orders 3, 5
  and 7, L-stable and stiffly accurate; Newton on all stages at once, an embedded error estimate
  (so they can adapt their steps). ``radau5`` is the default; ``radau7`` holds the spike times at
  fewer steps per inter-spike interval (docs/solver.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from numpy.polynomial import legendre, polynomial

from memspice.errors import ConfigError
from memspice.solver import fused as fused_step

if TYPE_CHECKING:
    from memspice.solver.integrators import StepContext, Stepper

#: An error record per neuron: the largest estimate / tolerance, its time (s) and component.
Worst = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: A drive ``(a, b)``: the input current ``a + b·v`` (A, S) at one or more nodes of a step, ``a``
#: ``(B, n)`` at one, ``(k, B, n)`` at ``k``; ``b`` of that shape or any that broadcasts to it without
#: the node axis (a per-neuron load ``(n,)``, a scalar).
Drive = tuple[torch.Tensor, torch.Tensor]
#: A step's start ``(1+m, 1, B, n)`` and stages ``(1+m, s, B, n)``.
Stages = tuple[torch.Tensor, torch.Tensor]


def at_nodes(drive: Drive, index: int | slice) -> Drive:
    """The drive at node ``index`` (or the nodes of a slice) of a drive at several nodes."""
    a, b = drive
    return a[index], (b[index] if b.ndim == a.ndim else b)


@dataclass(frozen=True)
class Tableau:
    """An implicit method written as ``s`` stages at the fractions ``nodes`` of the step:

        M·(Y_i - y_n) = dt·Σ_j A_ij·g(Y_j, t_n + c_j·dt) + explicit,     y_{n+1} = Y_s

    (``explicit`` is ``dt/2·g(y_n)`` for the trapezoidal rule, 0 for Radau IIA)."""

    matrix: tuple[tuple[float, ...], ...]
    nodes: tuple[float, ...]


class Method(ABC):
    """One step of ``dt`` of ``M dy/dt = g(y, t)`` for a layer of neurons.

    ``order``: the method's order; ``estimate_order``: the power of dt of its local error
    estimate; ``adaptive``: whether the estimate is embedded in the step (error-controlled step
    sizes need it); ``tableau``: the stages Newton's method solves for, ``None`` for a method
    without iterations; ``predictor_points``: how many of the previous step's last points (its
    start, then its stages) the first Newton iterate extrapolates through (``None``: all of them,
    the collocation polynomial, as RADAU5 does); ``estimate_from_step_alone``: whether the local
    error estimate needs nothing but the step's start, stages and drive at the start (not earlier
    steps; the method is then stiffly accurate, its end its last stage), so that steps can be
    estimated later, many at once; ``estimate_reads_start_drive``: whether that estimate reads the
    drive at the step's start (which the caller then hands over apart, without a gradient, when
    :meth:`nodes` do not begin there)."""

    name: ClassVar[str]
    order: ClassVar[int]
    estimate_order: ClassVar[int]
    adaptive: ClassVar[bool] = False
    tableau: ClassVar[Tableau | None] = None
    predictor_points: ClassVar[int | None] = None
    estimate_from_step_alone: ClassVar[bool] = False
    estimate_reads_start_drive: ClassVar[bool] = False

    @abstractmethod
    def nodes(self) -> tuple[float, ...]:
        """The fractions of a step at which the method needs the drive."""

    @abstractmethod
    def advance(self, stepper: Stepper, y: torch.Tensor, start_drive: Drive | None, drive: Drive,
                dt: float, where: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``y_{n+1}`` ``(1+m, B, n)`` from ``y`` (components first) and the membranes at the
        nodes after the start, ``(k, B, n)``; ``drive`` is the drive at every node of
        :meth:`nodes`, ``start_drive`` the one at the start when they begin there."""

    @abstractmethod
    def local_error(self, stepper: Stepper, y: torch.Tensor, y_next: torch.Tensor, start_drive: Drive | None,
                    dt: float, stages: Stages | None) -> torch.Tensor | None:
        """The estimated local error ``(1+m, B, n)`` of the step ``y -> y_next`` (``stages``: its
        start and stages, as :attr:`Stepper.last_step <memspice.solver.integrators.Stepper.last_step>`
        holds them), or ``None`` when there is none yet (a predictor that needs more points)."""

    def fold_error(self, stepper: Stepper, worst: Worst, tolerance: tuple[float, float], y: torch.Tensor,
                   y_next: torch.Tensor, start_drive: Drive | None, dt: float, time: torch.Tensor,
                   stages: Stages | None) -> Worst:
        """``worst`` with this step's error against ``tolerance`` (V on the membrane, each state's
        own) folded in."""
        error = self.local_error(stepper, y, y_next, start_drive, dt, stages)
        if error is None:
            return worst
        scale = torch.tensor([tolerance[0]] + [tolerance[1]] * (y.shape[0] - 1), dtype=y.dtype, device=y.device)
        return fused_step.keep_worst(worst, *(error.abs() / scale.reshape(-1, 1, 1)).max(0), time)


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Adds a method class to :data:`METHODS` under its ``name``."""
    if cls.name in METHODS:
        raise ValueError(f"a method named {cls.name!r} is registered already ({METHODS[cls.name].__name__})")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """The registered method ``name``, or a ConfigError listing the methods."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def adaptive_methods() -> list[str]:
    """The names of the methods that can adapt their steps."""
    return [name for name, cls in METHODS.items() if cls.adaptive]


class _PredictorDifference:
    """The local error by Milne's device: the difference between the step's end and the
    polynomial through the last grid points extrapolated to it, times
    ``C_corrector / (C_predictor - C_corrector)``. ``weights``: those points' weights (oldest first)."""

    weights: ClassVar[tuple[float, ...]]
    factor: ClassVar[float]

    def __init__(self) -> None:
        self._points: list[torch.Tensor] = []  #: the last grid points (detached)
        self._spacing = 0.0  #: their spacing (s)

    def local_error(self, stepper: Stepper, y: torch.Tensor, y_next: torch.Tensor, start_drive: Drive | None,
                    dt: float, stages: Stages | None) -> torch.Tensor | None:
        if self._spacing != dt:  # a new run, or a split step: the points no longer fit
            self._points, self._spacing = [y], dt
        points, self._points = self._points, [*self._points, y_next][-len(self.weights):]
        if len(points) < len(self.weights):
            return None
        return self.factor * (y_next - sum(w * p for w, p in zip(self.weights, points)))


@register
class LinearlyImplicitEuler(_PredictorDifference, Method):
    """Linearly implicit Euler: ``(M - dt·J)·Δy = dt·g(y_n)`` at the step's end drive, one linear
    solve and no iteration; first order, L-stable."""

    name, order, estimate_order = "euler", 1, 2
    weights, factor = (-1.0, 2.0), 1 / 3

    def nodes(self) -> tuple[float, ...]:
        return (1.0,)

    def advance(self, stepper, y, start_drive, drive, dt, where):
        g, jac, mass = stepper.layer.system(y, *at_nodes(drive, 0))
        a_tilde = torch.full((1, 1), dt, dtype=y.dtype, device=y.device)
        y_next = y + stepper.layer.solve(a_tilde, mass.unsqueeze(1), jac.unsqueeze(2), dt * g.unsqueeze(1))[:, 0]
        return y_next, y_next[:1]


@register
class Trapezoidal(_PredictorDifference, Method):
    """The trapezoidal rule (SPICE's default), solved by Newton's method; second order, A-stable."""

    name, order, estimate_order = "trap", 2, 3
    tableau = Tableau(((0.5,),), (1.0,))
    weights, factor = (1.0, -3.0, 3.0), 1 / 13

    def nodes(self) -> tuple[float, ...]:
        return (0.0, *self.tableau.nodes)  # g(y_n) needs the drive at the step's start

    def advance(self, stepper, y, start_drive, drive, dt, where):
        g_now, _, _ = stepper.layer.system(y, *start_drive, jacobian=False)
        return stepper.solve_stages(y, 0.5 * dt * g_now.unsqueeze(1), self.tableau, drive, dt, where)


class RadauIIA(Method):
    """Radau IIA collocation (``s`` stages, order ``2s - 1``), L-stable and stiffly accurate, with
    the embedded error estimate of Hairer and Wanner (Solving ODEs II, IV.8):
    ``ŷ - y = γ₀·dt·f(y_n) + Σ e_i·M·(Y_i - y_n)``, the difference to the order-``s`` method with
    the same stages and the weight ``γ₀`` on ``f(y_n)``, ``O(dt^(s+1))``."""

    adaptive = True
    estimate_from_step_alone = True
    estimate_reads_start_drive = True  # f(y_n)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.gamma, cls.error_weights = embedded_estimate(cls.tableau)

    def nodes(self) -> tuple[float, ...]:
        return self.tableau.nodes

    def advance(self, stepper, y, start_drive, drive, dt, where):
        return stepper.solve_stages(y, None, self.tableau, drive, dt, where)

    def local_error(self, stepper, y, y_next, start_drive, dt, stages):
        start, z = stages  # (d, 1, B, n), (d, s, B, n)
        like = {"dtype": y.dtype, "device": y.device}
        a, b = (torch.as_tensor(t, **like).detach().expand(y.shape[1:]) for t in start_drive)
        g, jac, mass = stepper.layer.system(y, a, b)
        weights = self.error_weights.to(z).reshape(1, -1, *(1 for _ in z.shape[2:]))
        rhs = dt * self.gamma * g + mass * (weights * (z - start)).sum(1)
        a_tilde = torch.full((1, 1), dt * self.gamma, **like)
        return stepper.layer.solve(a_tilde, mass.unsqueeze(1), jac.unsqueeze(2), rhs.unsqueeze(1))[:, 0]

    def fold_error(self, stepper, worst, tolerance, y, y_next, start_drive, dt, time, stages):
        if not stepper.fusable():
            return super().fold_error(stepper, worst, tolerance, y, y_next, start_drive, dt, time, stages)
        like = {"dtype": y.dtype, "device": y.device}
        a, b = (torch.as_tensor(t, **like).detach().expand(y.shape[1:]).contiguous() for t in start_drive)
        return self.fused_error_fold(stepper, tolerance, dt, y.dtype, y.device)(worst, *stages, a, b, time)

    def fused_error_fold(self, stepper: Stepper, tolerance: tuple[float, float], dt: float, dtype: torch.dtype,
                         device: torch.device) -> Callable[..., Worst]:
        """:meth:`fold_error` of a fused layer's steps of ``dt``, its kernel and constants bound once (a
        run folds every step): ``f(worst, start, z, a, b, time) -> worst`` for a step's start
        ``(d, 1, B, n)``, stages ``(d, s, B, n)``, drive at its start ``a``, ``b`` ``(B, n)``
        (contiguous) and end time (s, 0-d)."""
        kernel = fused_step.error_kernel(stepper.layer.device, stepper.floats, tuple(self.error_weights.tolist()),
                                         tolerance)
        gamma_dt = torch.tensor(dt * self.gamma, dtype=dtype, device=device)
        tensors = stepper.tensors
        return lambda worst, start, z, a, b, time: kernel(tensors, start, z, a, b, gamma_dt, *worst, time)


def embedded_estimate(tableau: Tableau) -> tuple[float, torch.Tensor]:
    """``γ₀`` and the weights ``e`` of a Radau IIA tableau's embedded estimate:
    ``e = (b̂ - b)ᵀ·A⁻¹``. ``γ₀`` is ``A``'s real eigenvalue (RADAU5's; its filter
    ``(M - γ₀·dt·J)⁻¹`` then reuses the method's own spectrum), the real part of its pair when it
    has none (two stages)."""
    a = torch.tensor(tableau.matrix, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvals(a)
    gamma = float(min(eigenvalues.tolist(), key=lambda z: (abs(z.imag), -z.real)).real)
    c, s = torch.tensor(tableau.nodes, dtype=torch.float64), len(tableau.nodes)
    # b̂ makes the method with nodes (0, c) exact for polynomials of degree < s
    rhs = torch.tensor([1.0 / (k + 1) for k in range(s)], dtype=torch.float64)
    rhs[0] -= gamma
    b_hat = torch.linalg.solve(torch.stack([c**k for k in range(s)]), rhs)
    return gamma, (b_hat - a[-1]) @ torch.linalg.inv(a)


_R6 = math.sqrt(6.0)


@register
class Radau3(RadauIIA):
    """Radau IIA with 2 stages, order 3."""

    name, order, estimate_order = "radau3", 3, 3
    tableau = Tableau(((5 / 12, -1 / 12), (3 / 4, 1 / 4)), (1 / 3, 1.0))


@register
class Radau5(RadauIIA):
    """Radau IIA with 3 stages, order 5 (Hairer and Wanner's RADAU5)."""

    name, order, estimate_order = "radau5", 5, 4
    tableau = Tableau((
        ((88 - 7 * _R6) / 360, (296 - 169 * _R6) / 1800, (-2 + 3 * _R6) / 225),
        ((296 + 169 * _R6) / 1800, (88 + 7 * _R6) / 360, (-2 - 3 * _R6) / 225),
        ((16 - _R6) / 36, (16 + _R6) / 36, 1 / 9)), ((4 - _R6) / 10, (4 + _R6) / 10, 1.0))


def radau_iia_tableau(stages: int) -> Tableau:
    """The Radau IIA tableau of ``stages`` stages (order ``2·stages - 1``), computed: the nodes
    are the zeros of ``P_s(2c - 1) - P_(s-1)(2c - 1)`` (Legendre polynomials; the last is 1),
    and ``A_ij`` the integral from 0 to ``c_i`` of the ``j``-th Lagrange polynomial on the nodes
    (collocation). For ``s`` above 3, whose nodes have no short closed form."""
    nodes = (np.sort(legendre.legroots([0.0] * (stages - 1) + [-1.0, 1.0]).real) + 1) / 2
    nodes[-1] = 1.0
    matrix = np.empty((stages, stages))
    for j in range(stages):
        others = np.delete(nodes, j)
        integral = polynomial.polyint(polynomial.polyfromroots(others) / np.prod(nodes[j] - others))
        matrix[:, j] = polynomial.polyval(nodes, integral)
    return Tableau(tuple(tuple(float(a) for a in row) for row in matrix), tuple(float(c) for c in nodes))


@register
class Radau7(RadauIIA):
    """Radau IIA with 4 stages, order 7 (stage order 4). Its ``A`` has no real eigenvalue, so
    the embedded estimate's ``γ₀`` is the real part of the pair nearest the real axis."""

    name, order, estimate_order = "radau7", 7, 5
    tableau = radau_iia_tableau(4)
    # its degree-4 polynomial extrapolated a whole step overshoots at spikes: the quadratic through
    # the last three points starts Newton closer (3.1 instead of 3.9 iterations per step at 250 ns,
    # 3.3 instead of 5.2 at 300 ns, on the bench's 784-128-10 Fashion window)
    predictor_points = 3
