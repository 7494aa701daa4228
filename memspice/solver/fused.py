"""The implicit step of an arrow-Jacobian device as one elementwise kernel: the fused path of
:class:`~memspice.solver.integrators.Stepper`.

Same equations and same linear algebra as the reference path (the device's linearization from
its one definition, the stage elimination of :func:`memspice.solver.linear.arrow_factor`), but
written per neuron: every quantity is one tensor of the batch shape ``(B, n)`` (one element
per neuron; a tensor of any other shape would cost a loop and a round trip through memory of
its own), and every small matrix (stages by stages) a nested list of them, unrolled
when traced. Nothing is then left but elementwise arithmetic, and inductor (the compiler of
:func:`torch.compile`, here without its frame evaluation: :class:`CompiledKernel`) turns it
into one loop over the neurons (C++ on the CPU, Triton on CUDA) that reads each neuron's state
once and keeps the rest in registers:

* :func:`newton_kernel`: one damped Newton iteration on all stages (the device's currents,
  state derivatives and Jacobians at every stage, the elimination, the update and each
  neuron's convergence measure), as :class:`~memspice.solver.integrators.NewtonOptions` says;
  :func:`predicted_newton_kernel` the same as a step's first iteration, its first iterate
  extrapolated from the previous step inside the kernel;
* :class:`ImplicitStep`: the converged stages as a differentiable function of the step's
  inputs. Its backward is the implicit-function gradient ``-M⁻¹·∂r/∂θ`` (``M`` the Newton
  matrix at the solution, ``r`` the residual), one compiled kernel too: the transposed
  elimination and the residual's derivatives with respect to the start, the drive and the
  trapezoidal rule's explicit term, written out.

Layouts as in :mod:`memspice.solver.integrators`: stage values ``z`` ``(d, s, B, n)`` with
``d = 1 + m`` components (membrane first) and ``s`` stages; the step's start ``(d, 1, B, n)``;
the drive ``a`` (A), ``b`` (S) ``(k, B, n)`` at the step's ``k >= s`` nodes, the stages' the last
``s`` (a run hands over its drives whole: slicing them here is free); ``a_tilde = dt·A``
``(s, s)``.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from memspice.codegen.torch_functions import TorchDevice
from memspice.solver.linear import Matrix, list_matmul, small_inverse

Vector = list[torch.Tensor]


class _Stage:
    """A device's linearization at one stage, per neuron: ``current`` (A), ``derivatives``
    (1/s, per state), ``capacitance`` (F), ``di_dv`` (S), ``di_dx``, ``df_dv``, ``df_dx`` (the
    diagonal ``∂f_k/∂x_k``; an arrow Jacobian has no other state entries)."""

    def __init__(self, device: TorchDevice, params: list, v: torch.Tensor, xs: Vector) -> None:
        m = len(xs)
        out = device.linear_function(v, *xs, *params)  # the order of TorchDevice.linear_function
        self.current, self.derivatives, self.capacitance = out[0], out[1 : 1 + m], out[1 + m]
        self.di_dv, self.di_dx = out[2 + m], out[3 + m : 3 + 2 * m]
        self.df_dv = out[3 + 2 * m : 3 + 3 * m]
        self.df_dx = [out[3 + 3 * m + k * m + k] for k in range(m)]


def _matvec(m: Matrix, x: Vector) -> Vector:
    return [sum(m_ij * x_j for m_ij, x_j in zip(row, x)) for row in m]


def _matvec_transposed(m: Matrix, x: Vector) -> Vector:
    return [sum(m[i][j] * x[i] for i in range(len(m))) for j in range(len(m[0]))]


def _largest(values: Vector) -> torch.Tensor:
    out = torch.as_tensor(values[0])
    for value in values[1:]:
        out = torch.maximum(out, torch.as_tensor(value))
    return out


class _Factors:
    """The elimination of the Newton matrix ``δ_ij·diag(mass_i) - Ã_ij·J_j`` of an arrow
    Jacobian (:func:`memspice.solver.linear.arrow_factor`, per neuron): per state ``k``
    ``W_k = S_k⁻¹``, ``U_k = W_k·Ã·diag(∂f_k/∂v)``, ``Z_k = Ã·diag(∂g_v/∂x_k)``; ``P`` the inverse
    of the row-scaled Schur complement and ``scale`` its reciprocal row maxima."""

    def __init__(self, a_tilde: Matrix, stages: list[_Stage], b: Vector) -> None:
        s, m = len(stages), len(stages[0].derivatives)
        col = range(s)
        self.w, self.u, self.z = [], [], []
        schur = [[(stages[i].capacitance if i == j else 0.0) - a_tilde[i][j] * (b[j] - stages[j].di_dv)
                  for j in col] for i in col]
        for k in range(m):
            w = small_inverse([[(1.0 if i == j else 0.0) - a_tilde[i][j] * stages[j].df_dx[k] for j in col]
                               for i in col])
            u = list_matmul(w, [[a_tilde[i][j] * stages[j].df_dv[k] for j in col] for i in col])
            z = [[-a_tilde[i][j] * stages[j].di_dx[k] for j in col] for i in col]
            zu = list_matmul(z, u)
            schur = [[schur[i][j] - zu[i][j] for j in col] for i in col]
            self.w.append(w), self.u.append(u), self.z.append(z)
        self.scale = [1.0 / _largest([abs(entry) for entry in row]) for row in schur]
        self.p = small_inverse([[entry * self.scale[i] for entry in row] for i, row in enumerate(schur)])

    def solve(self, r: list[Vector]) -> list[Vector]:
        """``M⁻¹·r`` for ``r[c][i]`` (component ``c``, stage ``i``)."""
        t = [_matvec(w, r_k) for w, r_k in zip(self.w, r[1:])]  # Δx_k = t_k + U_k·Δv
        rhs = [r[0][i] + sum(_matvec(z, t_k)[i] for z, t_k in zip(self.z, t)) for i in range(len(r[0]))]
        dv = _matvec(self.p, [rhs_i * scale for rhs_i, scale in zip(rhs, self.scale)])
        return [dv, *([t_i + u_i for t_i, u_i in zip(t_k, _matvec(u, dv))] for t_k, u in zip(t, self.u))]

    def solve_transposed(self, g: list[Vector]) -> list[Vector]:
        """``M⁻ᵀ·g``: the adjoint solve of the backward pass."""
        s = len(g[0])
        back = [g[0][j] + sum(_matvec_transposed(u, g_k)[j] for u, g_k in zip(self.u, g[1:])) for j in range(s)]
        lam_v = [entry * scale for entry, scale in zip(_matvec_transposed(self.p, back), self.scale)]
        lam_x = [_matvec_transposed(w, [g_k[i] + _matvec_transposed(z, lam_v)[i] for i in range(s)])
                 for w, z, g_k in zip(self.w, self.z, g[1:])]
        return [lam_v, *lam_x]


def _unpack(z: torch.Tensor) -> list[Vector]:
    """``(d, s, B, n)`` as ``[component][stage]`` tensors ``(B, n)``."""
    return [list(component.unbind(0)) for component in z.unbind(0)]


def _pack(values: list[Vector]) -> torch.Tensor:
    """``[component][stage]`` tensors ``(B, n)`` as one ``(d, s, B, n)`` (one stack: nested
    stacks would each fill a buffer of their own and copy it into the outer one)."""
    return torch.stack([t for component in values for t in component]).unflatten(0, (len(values), len(values[0])))


def _linearize(device: TorchDevice, params: list, z: list[Vector]) -> list[_Stage]:
    return [_Stage(device, params, z[0][i], [z_k[i] for z_k in z[1:]]) for i in range(len(z[0]))]


def _newton_iteration(device: TorchDevice, params: list, tolerance: tuple[float, float],
                      limit: tuple[float, float], z: torch.Tensor, start: torch.Tensor, a: torch.Tensor,
                      b: torch.Tensor, explicit: torch.Tensor | None, a_tilde: torch.Tensor, last: torch.Tensor):
    """One damped Newton update of the stages ``z`` (an iteration of the loop of
    :meth:`~memspice.solver.integrators.Stepper._reference_newton`, elementwise). Returns the
    new stages, per neuron ``(B, n)`` the update's size in units of the tolerance, and the
    largest error it leaves over the neurons (a 0-d tensor; :func:`remaining_error`, from the
    previous update's size ``last``; ≤ 1: converged, NaN when any neuron met one)."""
    return _iterate(device, params, tolerance, limit, _unpack(z), start, a, b, explicit, a_tilde, last)


def _predicted_newton_iteration(device: TorchDevice, params: list, tolerance: tuple[float, float],
                                limit: tuple[float, float], weights: tuple[tuple[float, ...], ...],
                                previous_start: torch.Tensor, previous_z: torch.Tensor, start: torch.Tensor,
                                a: torch.Tensor, b: torch.Tensor, explicit: torch.Tensor | None,
                                a_tilde: torch.Tensor):
    """The first Newton iteration of a step (:func:`_newton_iteration` without a previous update)
    from the previous step's collocation polynomial extrapolated to this step's stages: the
    polynomial through the last ``len(weights[0])`` points of that step's start
    ``previous_start`` ``(d, 1, B, n)`` and stages ``previous_z`` ``(d, s, B, n)``, with the Lagrange
    ``weights`` (``(s, p)`` floats, :meth:`~memspice.solver.integrators.Stepper._guess`'s).
    Extrapolated in the kernel, the first iterate never goes through memory."""
    points = [[y[0], *z_c][-len(weights[0]):] for y, z_c in zip(_unpack(previous_start), _unpack(previous_z))]
    guess = [[sum(w * p for w, p in zip(row, component)) for row in weights] for component in points]
    return _iterate(device, params, tolerance, limit, guess, start, a, b, explicit, a_tilde, None)


def _iterate(device: TorchDevice, params: list, tolerance: tuple[float, float], limit: tuple[float, float],
             zs: list[Vector], start: torch.Tensor, a: torch.Tensor, b: torch.Tensor, explicit: torch.Tensor | None,
             a_tilde: torch.Tensor, last: torch.Tensor | None):
    """:func:`_newton_iteration` from the stages as ``[component][stage]`` tensors; ``last``
    ``None`` in a step's first iteration (the error it leaves is then its update's size)."""
    y0 = [component[0] for component in _unpack(start)]
    s = len(zs[0])
    a_s, b_s, a_t = a.unbind(0)[-s:], b.unbind(0)[-s:], [list(row.unbind(0)) for row in a_tilde.unbind(0)]
    e = _unpack(explicit) if explicit is not None else None
    stages = _linearize(device, params, zs)
    g = [[a_s[j] + b_s[j] * zs[0][j] - stages[j].current for j in range(s)],
         *([stage.derivatives[k] for stage in stages] for k in range(len(zs) - 1))]
    r = []
    for c, (z_c, g_c) in enumerate(zip(zs, g)):
        mass = [stage.capacitance for stage in stages] if c == 0 else [1.0] * s
        r.append([mass[i] * (z_c[i] - y0[c]) - sum(a_t[i][j] * g_c[j] for j in range(s))
                  - (e[c][i if len(e[c]) > 1 else 0] if e is not None else 0.0) for i in range(s)])
    delta = _Factors(a_t, stages, b_s).solve(r)
    # per neuron: the update against the tolerance (convergence) and the limit (damping)
    size_v, size_x = _largest([d.abs() for d in delta[0]]), _largest([d.abs() for d_k in delta[1:] for d in d_k])
    misses = torch.maximum(size_v * (1 / tolerance[0]), size_x * (1 / tolerance[1]))
    damping = 1.0 / torch.clamp(torch.maximum(size_v * (1 / limit[0]), size_x * (1 / limit[1])), min=1.0)
    new = _pack([[z_ci - d_ci * damping for z_ci, d_ci in zip(z_c, d_c)] for z_c, d_c in zip(zs, delta)])
    left = misses if last is None else remaining_error(misses, last, damping)
    return new, misses, left.amax()


#: The contraction above which Newton's iterations do not count on it to stop early.
MAX_CONTRACTION = 0.5


def remaining_error(misses: torch.Tensor, last: torch.Tensor, damping: torch.Tensor) -> torch.Tensor:
    """Per neuron, the error an undamped Newton update of size ``misses`` leaves (in units of the
    tolerance), from the contraction ``θ = misses / last`` of the previous update (``last``; 0
    before the first): ``θ/(1 - θ)·misses`` while the iterations contract fast (``θ <``
    :data:`MAX_CONTRACTION`), the update itself otherwise (Hairer and Wanner, Solving ODEs II,
    IV.8: RADAU5's stopping rule)."""
    theta = misses / torch.clamp(last, min=1e-30)
    fast = (theta < MAX_CONTRACTION) & (damping >= 1.0)
    return torch.where(fast, torch.minimum(misses, misses * theta / (1.0 - torch.clamp(theta, max=MAX_CONTRACTION))),
                       misses)


def _adjoint(device: TorchDevice, params: list, z: torch.Tensor, b: torch.Tensor, a_tilde: torch.Tensor,
             grad_end: torch.Tensor, grad_v: torch.Tensor, explicit: bool):
    """The gradients of :class:`ImplicitStep` with respect to its start ``(d, 1, B, n)``, drive
    ``a``, ``b`` ``(k, B, n)`` (zero at the nodes before the stages) and explicit term (or
    ``None``) from the gradients of its outputs: ``grad_end`` ``(d, B, n)`` of the last stage
    (the step's end), ``grad_v`` ``(s, B, n)`` of the stage membranes."""
    zs, s = _unpack(z), z.shape[1]
    b_s, before = b.unbind(0)[-s:], [torch.zeros_like(b[0])] * (b.shape[0] - s)
    a_t = [list(row.unbind(0)) for row in a_tilde.unbind(0)]
    stages = _linearize(device, params, zs)
    ends, membranes = list(grad_end.unbind(0)), list(grad_v.unbind(0))
    grad = [[(membranes[i] if c == 0 else 0.0) + (ends[c] if i == s - 1 else 0.0) for i in range(s)]
            for c in range(len(zs))]
    lam = _Factors(a_t, stages, b_s).solve_transposed(grad)
    # the stages are z - M⁻¹·r(z; start, a, b, e): ∂r/∂start = -mass, ∂r_v,i/∂a_j = -Ã_ij,
    # ∂r_v,i/∂b_j = -Ã_ij·v_j, ∂r/∂e = -1
    masses = [[stage.capacitance for stage in stages], *([1.0] * s for _ in zs[1:])]
    grad_start = [sum(m_i * l_i for m_i, l_i in zip(mass, lam_c)) for mass, lam_c in zip(masses, lam)]
    drive = _matvec_transposed(a_t, lam[0])
    return (torch.stack(grad_start).unsqueeze(1), torch.stack(before + drive),
            torch.stack(before + [g * v for g, v in zip(drive, zs[0])]), _pack(lam) if explicit else None)


def keep_worst(worst: tuple[torch.Tensor, torch.Tensor, torch.Tensor], ratio: torch.Tensor, component: torch.Tensor,
               time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each neuron's largest error ratio so far (NaN counts as infinite), with its time (s) and
    component index: ``worst`` updated by one step's ``ratio`` and ``component`` (``(B, n)``)."""
    ratio = torch.nan_to_num(ratio, nan=torch.inf)
    worse = ratio > worst[0]
    return (torch.where(worse, ratio, worst[0]), torch.where(worse, time, worst[1]),
            torch.where(worse, component, worst[2]))


def _local_error(device: TorchDevice, params: list, weights: tuple[float, ...], tolerance: tuple[float, float],
                 start: torch.Tensor, z: torch.Tensor, a: torch.Tensor, b: torch.Tensor, gamma_dt: torch.Tensor,
                 worst_ratio: torch.Tensor, worst_time: torch.Tensor, worst_component: torch.Tensor,
                 time: torch.Tensor):
    """The embedded error estimate of a Radau IIA step (the reference is
    :meth:`~memspice.solver.integrators.Stepper._estimate`), elementwise: ``(M - γ₀·dt·J)⁻¹·
    (γ₀·dt·g(y_n) + M·Σ e_i·(Z_i - y_n))`` per component against the tolerance, folded into
    each neuron's worst so far (:func:`keep_worst`)."""
    zs, y0 = _unpack(z), [component[0] for component in _unpack(start)]
    stage = _Stage(device, params, y0[0], y0[1:])
    g = [a + b * y0[0] - stage.current, *stage.derivatives]
    mass = [stage.capacitance] + [1.0] * (len(zs) - 1)
    rhs = [[gamma_dt * g_c + m_c * sum(w * (z_ci - y_c) for w, z_ci in zip(weights, z_c))]
           for g_c, m_c, z_c, y_c in zip(g, mass, zs, y0)]
    error = _Factors([[gamma_dt]], [stage], [b]).solve(rhs)
    ratios = torch.stack([error[0][0].abs() * (1 / tolerance[0]),
                          *(e_k[0].abs() * (1 / tolerance[1]) for e_k in error[1:])])
    return keep_worst((worst_ratio, worst_time, worst_component), *ratios.max(0), time)


@functools.cache
def error_kernel(device: TorchDevice, floats: tuple, weights: tuple[float, ...], tolerance: tuple[float, float]):
    """``f(tensor_params, start, z, a, b, gamma_dt, *worst, time) -> worst``: :func:`_local_error`
    compiled (as :func:`newton_kernel`)."""
    return CompiledKernel(lambda tensors, *inputs: _local_error(device, _merge(floats, tensors), weights, tolerance,
                                                                *inputs))


#: Inductor's settings for the kernels: no limit on the nodes fused into one loop (its default, 64,
#: splits a Newton iteration of ~1100 operations into three loops that pass ~100 intermediates
#: through memory; docs/solver.md, "Profile before and after")
_INDUCTOR_OPTIONS = {"max_fusion_size": 4096}


#: Sizes the kernels are traced at on their dynamic axes (batch, neurons): the first two that no
#: static axis has, so that the tracer, which gives equal sizes one symbol, keeps them apart
_TRACE_SIZES = (11, 13, 17, 19, 23, 29, 31, 37)


class CompiledKernel:
    """``function(tensors, *inputs)`` (``tensors`` the device's tensor parameters, ``(n,)`` or
    broadcasting to it) traced into an ATen graph with the neuron axes of every batch-shaped
    input symbolic (the last two; ``matrix``, the index in ``inputs`` of the one input that is
    not batch-shaped, ``a_tilde`` ``(s, s)``, and the inputs under two axes keep their shapes), and
    compiled by inductor once per layout of the other axes: one kernel for every layer and batch
    size. Called without :func:`torch.compile`'s frame evaluation and guards, which cost more than
    a small layer's arithmetic (docs/solver.md, "Kernels without dynamo"); the compiled code
    checks every input's sizes and strides itself (inputs are made contiguous first)."""

    def __init__(self, function, matrix: int | None = None) -> None:
        self.function, self.matrix = function, matrix
        self.variants = {}  #: the compiled kernels by :meth:`_layout`
        self.by_shapes = {}  #: the same by every input's shape, dtype, device and thread count: a lookup per call

    def _batch_shaped(self, inputs) -> list[bool]:
        return [isinstance(t, torch.Tensor) and t.ndim >= 2 and i != self.matrix for i, t in enumerate(inputs)]

    def _layout(self, tensors, inputs) -> tuple:
        """What a kernel is compiled for: dtype, device, thread count, the static axes of every
        input, and which parameters run along the neuron axis (``-1``)."""
        batched = self._batch_shaped(inputs)
        n = next(t.shape[-1] for t, batch in zip(inputs, batched) if batch)
        return (inputs[0].dtype, inputs[0].device, torch.get_num_threads(),
                tuple((*t.shape[:-1], -1) if t.ndim and t.shape[-1] == n else t.shape for t in tensors),
                tuple(None if t is None else t.shape[:-2] if batch else t.shape for t, batch in zip(inputs, batched)))

    def _compile(self, layout: tuple, tensors, inputs):
        from torch._inductor import standalone_compile  # (imports inductor: only when a kernel is first needed)

        dtype, device, _, param_shapes, input_shapes = layout
        static = {size for shape in (*param_shapes, *input_shapes) if shape is not None for size in shape}
        batch, n = [size for size in _TRACE_SIZES if size not in static][:2]
        like = {"dtype": dtype, "device": device}
        examples = [torch.zeros(tuple(n if size == -1 else size for size in shape), **like) for shape in param_shapes]
        for t, shape, batched in zip(inputs, input_shapes, self._batch_shaped(inputs)):
            if t is not None:
                examples.append(torch.zeros(*shape, batch, n, **like) if batched else t.detach().clone())
        present, count = [t is not None for t in inputs], len(tensors)

        outputs = []  # whether each output is a tensor (a graph returns tensors only)

        def flat(*args):
            rest = iter(args[count:])
            out = self.function(list(args[:count]), *(next(rest) if p else None for p in present))
            outputs[:] = [t is not None for t in out]
            return tuple(t for t in out if t is not None)

        # inductor 2.13 warns about its own use of a deprecated helper on every compile: noise to users
        warnings.filterwarnings("ignore", message=r".*_prims_common\.check.*", category=FutureWarning)
        graph = make_fx(flat, tracing_mode="symbolic")(*examples)
        kernel = standalone_compile(graph, examples, dynamic_shapes="from_graph",
                                    options={"config_patches": _INDUCTOR_OPTIONS})
        if all(outputs):
            return kernel

        def with_nones(*args):
            out = iter(kernel(*args))
            return tuple(next(out) if tensor else None for tensor in outputs)

        return with_nones

    def __call__(self, tensors, *inputs):
        shapes = (inputs[0].dtype, inputs[0].device, torch.get_num_threads(), *[t.shape for t in tensors],
                  *[None if t is None else t.shape for t in inputs])
        kernel = self.by_shapes.get(shapes)
        if kernel is None:
            layout = self._layout(tensors, inputs)
            if layout not in self.variants:
                self.variants[layout] = self._compile(layout, tensors, inputs)
            kernel = self.by_shapes[shapes] = self.variants[layout]
        # (the compiled code takes the layout it was traced with: contiguous; a no-op for the solver's own inputs)
        return kernel(*(t.contiguous() for t in tensors), *(t.contiguous() for t in inputs if t is not None))


def split_params(params: list) -> tuple[tuple, list[torch.Tensor]]:
    """A layer's parameters as the floats (``None`` where a tensor stands) and the tensors:
    the floats are compiled into the kernels as constants, the tensors are their arguments."""
    return (tuple(None if isinstance(p, torch.Tensor) else float(p) for p in params),
            [p for p in params if isinstance(p, torch.Tensor)])


def _merge(floats: tuple, tensors: list) -> list:
    given = iter(tensors)
    return [next(given) if value is None else value for value in floats]


@functools.cache
def newton_kernel(device: TorchDevice, floats: tuple, tolerance: tuple[float, float],
                  limit: tuple[float, float]):
    """``f(tensor_params, z, start, a, b, explicit, a_tilde, last) -> (z, misses, worst)``:
    :func:`_newton_iteration` for one device, its float parameters (:func:`split_params`) and
    options, compiled (built once; compiled on first call, for any shape)."""
    return CompiledKernel(lambda tensors, *inputs: _newton_iteration(device, _merge(floats, tensors), tolerance, limit,
                                                                     *inputs), matrix=5)


@functools.cache
def predicted_newton_kernel(device: TorchDevice, floats: tuple, tolerance: tuple[float, float],
                            limit: tuple[float, float], weights: tuple[tuple[float, ...], ...]):
    """``f(tensor_params, previous_start, previous_z, start, a, b, explicit, a_tilde) -> (z,
    misses, worst)``: :func:`_predicted_newton_iteration`, a step's first iteration, compiled (as
    :func:`newton_kernel`; the predictor's ``weights`` are constants of the kernel)."""
    return CompiledKernel(lambda tensors, *inputs: _predicted_newton_iteration(
        device, _merge(floats, tensors), tolerance, limit, weights, *inputs), matrix=6)


@functools.cache
def _adjoint_kernel(device: TorchDevice, floats: tuple, explicit: bool):
    return CompiledKernel(lambda tensors, *inputs: _adjoint(device, _merge(floats, tensors), *inputs, explicit),
                          matrix=2)


def _run_adjoint(device: TorchDevice, params: list, z: torch.Tensor, b: torch.Tensor, a_tilde: torch.Tensor,
                 grad_x: torch.Tensor, carried: torch.Tensor, grad_v: torch.Tensor, grad_b: torch.Tensor):
    """One step of :class:`ImplicitRun`'s backward: :func:`_adjoint` of the step whose end has the
    gradient ``carried`` (the next step's start's, ``(d, B, n)``) plus the run's own on its states
    ``grad_x`` ``(m, B, n)`` (its membrane's is the last stage's, in ``grad_v`` ``(s, B, n)``), with
    the load's gradient accumulated over the steps so far ``grad_b`` ``(s, B, n)`` (the same load
    drives every step). Returns the gradient of the step's start ``(d, B, n)`` (carried into the
    step before), of its drive ``a`` ``(s, B, n)`` and ``grad_b`` with the step's added."""
    grad_end = carried + torch.cat([torch.zeros_like(grad_x[:1]), grad_x])
    grad_start, grad_a, step_b, _ = _adjoint(device, params, z, b, a_tilde, grad_end, grad_v, False)
    return grad_start[:, 0], grad_a, grad_b + step_b


@functools.cache
def _run_adjoint_kernel(device: TorchDevice, floats: tuple):
    return CompiledKernel(lambda tensors, *inputs: _run_adjoint(device, _merge(floats, tensors), *inputs), matrix=2)


class ImplicitStep(torch.autograd.Function):
    """The converged stages ``z`` (``(d, s, B, n)``, no graph of their own) as a function of the
    step's ``start``, drive ``a``, ``b`` and ``explicit`` term (or ``None``). Forward returns
    what the step hands on: the last stage ``(d, B, n)`` (the step's end) and the stage
    membranes ``(s, B, n)`` (the next layer's drive); backward is the implicit-function
    gradient (:func:`_adjoint`, compiled) with the Newton matrix of the last iteration, taken
    at ``linearized_at`` (the iterate before ``z``), as the reference path's. The device's
    parameters (``floats`` and ``tensors``, :func:`split_params`) are constants here (the caller
    takes the reference path when one needs a gradient)."""

    @staticmethod
    def forward(ctx, z, linearized_at, start, a, b, explicit, a_tilde, device, floats, tensors):
        ctx.save_for_backward(linearized_at, b, a_tilde)
        ctx.device, ctx.params, ctx.start_shape = device, (floats, tensors), start.shape
        ctx.explicit_shape = explicit.shape if explicit is not None else None
        return z[:, -1].contiguous(), z[0]  # (a view of z: its stages are not changed afterwards)

    @staticmethod
    def backward(ctx, grad_end, grad_v):
        z, b, a_tilde = ctx.saved_tensors
        explicit = ctx.explicit_shape is not None
        floats, tensors = ctx.params
        kernel = _adjoint_kernel(ctx.device, floats, explicit)
        grad_start, grad_a, grad_b, grad_e = kernel(tensors, z, b, a_tilde, grad_end, grad_v)
        if explicit and ctx.explicit_shape[1] == 1:
            grad_e = grad_e.sum(1, keepdim=True)
        return None, None, grad_start.reshape(ctx.start_shape), grad_a, grad_b, grad_e, None, None, None, None


def run_outputs(stages: list[torch.Tensor], with_states: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """What a layer's run hands on from its steps' stages (each ``(d, s, B, n)``): the stage membranes
    ``(steps, s, B, n)`` and, ``with_states``, the states at every step's end ``(steps, m, B, n)``
    (else an empty tensor)."""
    v_nodes = torch.stack([z[0] for z in stages])
    return v_nodes, torch.stack([z[1:, -1] for z in stages]) if with_states else v_nodes.new_empty(0)


class ImplicitRun(torch.autograd.Function):
    """A layer's whole run on a fixed grid, its steps solved already (``stages``: per step the
    converged ``z`` ``(d, s, B, n)``; ``linearized``: per step the iterate its Newton matrix was
    taken at), as a differentiable function of the run's ``start`` ``(d, 1, B, n)``, its drive
    ``a`` ``(steps, s, B, n)`` at every step's stages and its load ``b`` ``(s, B, n)`` (the same at
    every step). Forward returns the stage membranes ``(steps, s, B, n)`` (the next layer's drive;
    the last stage is the step's end) and, ``with_states``, the states at every step's end
    ``(steps, m, B, n)`` (else an empty tensor). Backward is :class:`ImplicitStep`'s gradient step
    by step in reverse, one kernel per step (:func:`_run_adjoint`), the gradient of each step's
    start carried into the end of the step before: what autograd would do with a graph of
    ``ImplicitStep`` nodes, without the graph (a few nodes per step whose bookkeeping costs more
    than a small layer's arithmetic)."""

    @staticmethod
    def forward(ctx, start, a, b, stages, linearized, a_tilde, device, floats, tensors, with_states):
        ctx.save_for_backward(b, a_tilde)
        ctx.linearized, ctx.device, ctx.params, ctx.start_shape = linearized, device, (floats, tensors), start.shape
        return run_outputs(stages, with_states)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_v, grad_x):
        b, a_tilde = ctx.saved_tensors
        floats, tensors = ctx.params
        kernel = _run_adjoint_kernel(ctx.device, floats)
        d, steps = ctx.start_shape[0], len(ctx.linearized)
        like = {"dtype": b.dtype, "device": b.device}
        carry = torch.zeros((d, *b.shape[1:]), **like)  # the gradient of a step's end
        grad_v = torch.zeros((steps, *b.shape), **like) if grad_v is None else grad_v
        no_grad_x = torch.zeros((d - 1, *b.shape[1:]), **like) if grad_x is None or grad_x.numel() == 0 else None
        grad_a, grad_b = [], torch.zeros_like(b)
        for n in reversed(range(steps)):
            carry, step_a, grad_b = kernel(tensors, ctx.linearized[n], b, a_tilde,
                                           grad_x[n] if no_grad_x is None else no_grad_x, carry, grad_v[n], grad_b)
            grad_a.append(step_a)
        grad_a.reverse()
        return carry.reshape(ctx.start_shape), torch.stack(grad_a), grad_b, None, None, None, None, None, None, None
