"""One time step of a layer of one-port neuron devices, by three integration methods.

Each neuron of a layer is the system ``M dy/dt = g(y, t)`` with ``y = (v, x_1..x_m)``: the
membrane voltage ``v`` (V) and the device's states. Its input is a current that is affine in
its own voltage, ``a + b·v`` (``a`` in A, ``b`` in S: a crossbar column gives
``a = u·(G⁺ - G⁻)``, ``b = -Σ(G⁺ + G⁻)``, the loading term). So

    g_v = a + b·v - I(v, x),   g_x = f(v, x),   M = diag(C, 1, ..., 1)

with ``I``, ``f``, ``C = dQ/dv`` and their Jacobians from the device model
(:meth:`memspice.codegen.torch_functions.TorchDevice.linearize`): the solver never restates a
device equation.

Methods (``dt`` fixed):

* ``euler``: linearly implicit Euler (one Rosenbrock stage): one linear solve per step, no
  iteration; first order, L-stable. The cheap one.
* ``trap``: trapezoidal rule with Newton iterations; second order, A-stable (rings on very stiff
  loads).
* ``bdf2``: second-order backward differentiation with Newton iterations (backward Euler on the
  first step); L-stable. The accurate one.

Newton runs without autograd until converged; one last Newton step from the converged point is
taken with autograd. Because the residual vanishes there, that step's derivative is exactly the
implicit-function-theorem gradient, at the memory cost of a single step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from memspice.codegen.torch_functions import torch_device
from memspice.devices.model import DeviceModel
from memspice.errors import SolverError

METHODS = ("euler", "trap", "bdf2")


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

    def initial_state(self, batch: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``y`` at rest: ``(batch, n, 1 + n_states)``, v = 0 and the states' initial values."""
        y = torch.zeros(batch, n, 1 + self.n_states, dtype=dtype, device=device)
        y[..., 1:] = torch.tensor(self.initial, dtype=dtype, device=device)
        return y

    def system(self, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, jacobian: bool = True):
        """``g(y)`` ``(..., 1+m)``, its Jacobian ``(..., 1+m, 1+m)`` and the mass ``(..., 1+m)``."""
        v, x = y[..., :1], y[..., 1:]
        lin = self.device.linearize_ordered(v, x, self.params)
        g_v = a + b * v[..., 0] - lin.currents[..., 0]
        g = torch.cat([g_v.unsqueeze(-1), lin.derivatives], dim=-1)
        mass = torch.cat([lin.capacitance[..., 0, :], torch.ones_like(x)], dim=-1)
        if not jacobian:
            return g, None, mass
        top = torch.cat([(b - lin.di_dv[..., 0, 0]).unsqueeze(-1), -lin.di_dx[..., 0, :]], dim=-1)
        bottom = torch.cat([lin.df_dv, lin.df_dx], dim=-1)
        return g, torch.cat([top.unsqueeze(-2), bottom], dim=-2), mass


@dataclass
class NewtonOptions:
    """Convergence of the implicit methods: every neuron's update below ``vtol`` (V) on the
    membrane and ``xtol`` on each state, within ``max_iter`` iterations."""

    vtol: float = 1e-7
    xtol: float = 1e-6
    max_iter: int = 12


class Stepper:
    """Advances one layer by ``dt`` with ``method``; keeps the history the method needs."""

    def __init__(self, layer: NeuronLayer, method: str, dt: float, newton: NewtonOptions | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        self.layer, self.method, self.dt = layer, method, dt
        self.newton = newton or NewtonOptions()
        self.previous: torch.Tensor | None = None  # y_{n-1} for bdf2

    def step(self, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, a_now: torch.Tensor, b_now: torch.Tensor,
             where: StepContext) -> torch.Tensor:
        """``y_{n+1}`` from ``y_n`` (``(B, n, 1+m)``); ``a, b`` drive the neurons at ``t_{n+1}``,
        ``a_now, b_now`` at ``t_n``."""
        dt = self.dt
        if self.method == "euler":
            g, jac, mass = self.layer.system(y, a, b)
            matrix = torch.diag_embed(mass / dt) - jac
            y_next = y + torch.linalg.solve(matrix, g)
        else:
            if self.method == "trap":
                g_now, _, _ = self.layer.system(y, a_now, b_now, jacobian=False)
                beta, anchor, extra = 0.5, y, 0.5 * dt * g_now
            elif self.previous is None:  # bdf2 starts with backward Euler
                beta, anchor, extra = 1.0, y, 0.0
            else:
                beta, anchor, extra = 2.0 / 3.0, (4.0 * y - self.previous) / 3.0, 0.0
            y_next = self._newton(y, anchor, beta, extra, a, b, where)
        self.previous = y
        if not torch.isfinite(y_next).all():
            bad = torch.nonzero(~torch.isfinite(y_next))[0].tolist()
            raise SolverError(f"{self.method}: state {bad[2]} of neuron {bad[1]} (batch item {bad[0]}) became "
                              f"{y_next[tuple(bad)].item()} at step {where.step} (t = {where.time:.6g} s), "
                              f"layer {where.layer}; try a smaller dt")
        return y_next

    def _newton(self, y, anchor, beta, extra, a, b, where: StepContext) -> torch.Tensor:
        dt, opts = self.dt, self.newton

        def residual(z, jacobian=True):
            g, jac, mass = self.layer.system(z, a, b, jacobian)
            r = mass * (z - anchor) - beta * dt * g - extra
            return r, (torch.diag_embed(mass) - beta * dt * jac) if jacobian else None

        with torch.no_grad():
            z = y.detach().clone()
            for _ in range(opts.max_iter):
                r, matrix = residual(z)
                delta = torch.linalg.solve(matrix, r)
                z = z - delta
                dv, dx = delta[..., 0].abs(), delta[..., 1:].abs()
                if dv.max() <= opts.vtol and (dx.numel() == 0 or dx.max() <= opts.xtol):
                    break
            else:
                worst = torch.argmax(dv.reshape(-1)).item()
                batch_item, neuron = divmod(worst, dv.shape[-1])
                raise SolverError(
                    f"{self.method}: Newton did not converge in {opts.max_iter} iterations at step {where.step} "
                    f"(t = {where.time:.6g} s), layer {where.layer}, neuron {neuron} (batch item {batch_item}): "
                    f"last update {dv.max().item():.3g} V; try a smaller dt or method='euler'")
        # one differentiable Newton step from the solution: the implicit-function gradient
        r, matrix = residual(z.detach())
        return z.detach() - torch.linalg.solve(matrix.detach(), r)
