"""The linear systems of an implicit step, for every neuron of a batch at once.

An ``s``-stage method on a neuron with ``d = 1 + m`` unknowns ``(v, x_1..x_m)`` solves, per
neuron and Newton iteration, the ``s·d`` system whose block ``(i, j)`` is

    δ_ij·diag(mass_i) - Ã_ij·J_j,        Ã = dt·A (the method's matrix),

with ``J_j`` the neuron's Jacobian at stage ``j``. Two solvers:

* :func:`solve_dense` factors the whole ``s·d`` matrix (``torch.linalg.solve``): any device.
* :func:`solve_arrow` is for devices whose states couple only through the membrane
  (``∂f_k/∂x_l = 0`` for ``k ≠ l``, true of the MIF neuron: each switch's state follows its own
  branch voltage). ``J`` is then an arrow matrix, the states eliminate stage-block by
  stage-block, and what is left are ``m + 1`` systems of size ``s`` per neuron, inverted in
  closed form: elementwise tensor arithmetic, no per-matrix LAPACK call. Same solution as the
  dense factorization up to rounding (a test checks it), several times faster.

Both scale rows to a largest entry of 1 before they solve: membrane rows hold charges (~1e-11)
and state rows numbers ~1, ten orders of magnitude apart, too many for float32 pivoting.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def solve_dense(a_tilde: torch.Tensor, mass: torch.Tensor, jac: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The Newton update ``(d, s, ...)`` for the residual ``r`` (``(d, s, ...)``), ``mass``
    (``(d, s, ...)``), stage Jacobians ``jac`` (``(d, d, s, ...)``) and ``a_tilde`` (``(s, s)``);
    components first, then stages, then the batch shape. Raises ``torch.linalg.LinAlgError`` on
    an exactly singular matrix."""
    d, s, batch = r.shape[0], r.shape[1], r.shape[2:]
    eye_s, eye_d = torch.eye(s, dtype=r.dtype, device=r.device), torch.eye(d, dtype=r.dtype, device=r.device)
    blocks = torch.einsum("ij,pi...,pq->...ipjq", eye_s, mass, eye_d) - torch.einsum("ij,pqj...->...ipjq", a_tilde, jac)
    matrix = blocks.reshape(*batch, s * d, s * d)
    rhs = r.movedim((0, 1), (-1, -2)).reshape(*batch, s * d)
    scale = matrix.detach().abs().amax(-1).clamp(min=torch.finfo(matrix.dtype).tiny)
    delta = torch.linalg.solve(matrix / scale.unsqueeze(-1), rhs / scale)
    return delta.unflatten(-1, (s, d)).movedim((-1, -2), (0, 1))


class ArrowFactors(NamedTuple):
    """The factorization :func:`arrow_factor` computes once per Newton matrix; batch flattened
    to ``N``, small matrices ``(..., s, s, N)``."""

    w: torch.Tensor  #: S_k⁻¹, (m, s, s, N)
    u: torch.Tensor  #: S_k⁻¹·Ã·diag(∂f_k/∂v), (m, s, s, N)
    z: torch.Tensor  #: Ã·diag(∂g_v/∂x_k), (m, s, s, N)
    p: torch.Tensor  #: the inverse of the row-scaled Schur complement, (s, s, N)
    scale: torch.Tensor  #: the Schur complement's row scales, (s, N)


def arrow_factor(a_tilde: torch.Tensor, mass: torch.Tensor, jac: torch.Tensor) -> ArrowFactors:
    """Factor the Newton matrix of an arrow Jacobian (states coupled only through the membrane;
    the off-diagonal state entries of ``jac`` are ignored), shapes as :func:`solve_dense`.

    Per state ``k``: ``S_k = diag(mass_k) - Ã·diag(∂f_k/∂x_k)`` and
    ``Δx_k = S_k⁻¹(r_k + Ã·diag(∂f_k/∂v)·Δv)``; substituted into the membrane rows this leaves
    one ``s x s`` system for ``Δv`` (the Schur complement). Small matrices are stored
    ``(..., s, s, N)`` with the flattened batch ``N`` last, so every operation runs over
    contiguous memory."""
    s = mass.shape[1]
    mass, jac = mass.flatten(2), jac.flatten(3)
    a_t = a_tilde.unsqueeze(-1)  # (s, s, 1)
    eye = torch.eye(s, dtype=mass.dtype, device=mass.device).unsqueeze(-1)
    alpha, beta, gamma = jac[0, 0], jac[0, 1:], jac[1:, 0]  # ∂g_v/∂v (s, N); ∂g_v/∂x_k, ∂f_k/∂v (m, s, N)
    delta = torch.diagonal(jac[1:, 1:], dim1=0, dim2=1).movedim(-1, 0)  # ∂f_k/∂x_k (m, s, N)
    w = _inverse(eye * mass[1:].unsqueeze(-2) - a_t * delta.unsqueeze(-3))
    u = _matmul(w, a_t) * gamma.unsqueeze(-3)
    z = a_t * beta.unsqueeze(-3)
    schur = eye * mass[0].unsqueeze(-2) - a_t * alpha.unsqueeze(-3) - _matmul(z, u).sum(0)
    scale = schur.abs().amax(-2).clamp(min=torch.finfo(schur.dtype).tiny)  # (s, N) row maxima
    return ArrowFactors(w, u, z, _inverse(schur / scale.unsqueeze(-2)), scale)


def arrow_apply(f: ArrowFactors, r: torch.Tensor) -> torch.Tensor:
    """The Newton update ``(d, s, ...)`` for the residual ``r`` (``(d, s, ...)``)."""
    shape = r.shape
    r = r.flatten(2)
    t = _matvec(f.w, r[1:])  # Δx_k = t_k + u_k·Δv
    dv = _matvec(f.p, (r[0] + _matvec(f.z, t).sum(0)) / f.scale)  # (s, N)
    return torch.cat([dv.unsqueeze(0), t + _matvec(f.u, dv)]).reshape(shape)


def arrow_apply_transposed(f: ArrowFactors, g: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`arrow_apply`'s linear map applied to ``g`` (``(d, s, ...)``): the
    adjoint solve of the backward pass."""
    shape = g.shape
    g = g.flatten(2)
    g_rhs = _matvec_transposed(f.p, g[0] + _matvec_transposed(f.u, g[1:]).sum(0)) / f.scale
    g_t = g[1:] + _matvec_transposed(f.z, g_rhs)
    return torch.cat([g_rhs.unsqueeze(0), _matvec_transposed(f.w, g_t)]).reshape(shape)


class _ArrowSolve(torch.autograd.Function):
    """``arrow_apply(factors, r)``, differentiable in ``r`` only (the factors are constants:
    the Newton matrix of the last, differentiable Newton step is detached)."""

    @staticmethod
    def forward(ctx, r, *factors):
        ctx.save_for_backward(*factors)
        return arrow_apply(ArrowFactors(*factors), r)

    @staticmethod
    def backward(ctx, grad):
        factors = ctx.saved_tensors  # unpacked once (activation checkpointing allows no more)
        return (arrow_apply_transposed(ArrowFactors(*factors), grad), *(None,) * len(factors))


def solve_factored(factors: ArrowFactors, r: torch.Tensor) -> torch.Tensor:
    """The Newton update for ``r`` with precomputed factors; its backward pass is the transposed
    solve, not a replay of the elimination's arithmetic."""
    return _ArrowSolve.apply(r, *factors)


def solve_arrow(a_tilde: torch.Tensor, mass: torch.Tensor, jac: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """:func:`solve_dense` for arrow Jacobians (:func:`arrow_factor`). An exactly singular
    system gives non-finite entries instead of an exception (the caller checks)."""
    return arrow_apply(arrow_factor(a_tilde, mass, jac), r)


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrix @ vector`` for ``(..., s, s, N)`` and ``(..., s, N)``."""
    return (matrix * vector.unsqueeze(-3)).sum(-2)


def _matvec_transposed(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrixᵀ @ vector`` for ``(..., s, s, N)`` and ``(..., s, N)``."""
    return (matrix * vector.unsqueeze(-2)).sum(-3)


def _matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right`` for ``(..., s, s, N)`` matrices."""
    return (left.unsqueeze(-2) * right.unsqueeze(-4)).sum(-3)


Matrix = list[list[torch.Tensor]]


def small_inverse(m: Matrix) -> Matrix:
    """The inverse of an ``s x s`` matrix given as nested lists of same-shaped tensors (one
    element per neuron), without pivoting: adjugate over determinant for ``s ≤ 3``, above that
    by 2 x 2 blocks, ``[[A, B], [C, D]]⁻¹`` through ``A⁻¹`` and the Schur complement
    ``D - C·A⁻¹·B`` (the Newton matrices here, ``diag(mass) - dt·A·diag(∂f/∂y)`` of a
    Radau IIA matrix ``A`` and a stable device, keep their leading blocks regular)."""
    # one division per matrix: a multiplication is several times cheaper in a vector loop
    s = len(m)
    if s == 1:
        return [[1.0 / m[0][0]]]
    if s == 2:
        (a, b), (c, d) = m
        r = 1.0 / (a * d - b * c)
        return [[d * r, -b * r], [-c * r, a * r]]
    if s == 3:
        (a, b, c), (d, e, f), (g, h, i) = m
        c0, c1, c2 = e * i - f * h, f * g - d * i, d * h - e * g
        r = 1.0 / (a * c0 + b * c1 + c * c2)
        adjugate = [[c0, c * h - b * i, b * f - c * e], [c1, a * i - c * g, c * d - a * f],
                    [c2, b * g - a * h, a * e - b * d]]
        return [[entry * r for entry in row] for row in adjugate]
    h = s // 2
    a_inv = small_inverse([row[:h] for row in m[:h]])
    b, c, d = [row[h:] for row in m[:h]], [row[:h] for row in m[h:]], [row[h:] for row in m[h:]]
    a_inv_b, c_a_inv = list_matmul(a_inv, b), list_matmul(c, a_inv)
    schur_inv = small_inverse(_list_sub(d, list_matmul(c, a_inv_b)))
    top_right = _list_neg(list_matmul(a_inv_b, schur_inv))
    bottom_left = _list_neg(list_matmul(schur_inv, c_a_inv))
    top_left = _list_sub(a_inv, list_matmul(top_right, c_a_inv))
    return [left + right for left, right in zip(top_left, top_right)] + \
        [left + right for left, right in zip(bottom_left, schur_inv)]


def list_matmul(left: Matrix, right: Matrix) -> Matrix:
    """``left @ right`` for nested-list matrices."""
    return [[sum(left[i][k] * right[k][j] for k in range(len(right))) for j in range(len(right[0]))]
            for i in range(len(left))]


def _list_sub(left: Matrix, right: Matrix) -> Matrix:
    return [[a - b for a, b in zip(row_l, row_r)] for row_l, row_r in zip(left, right)]


def _list_neg(m: Matrix) -> Matrix:
    return [[-a for a in row] for row in m]


def _inverse(m: torch.Tensor) -> torch.Tensor:
    """The inverse of every ``(..., s, s, N)`` matrix (:func:`small_inverse`)."""
    rows = [list(row.unbind(-2)) for row in m.unbind(-3)]
    return torch.stack([torch.stack(row, -2) for row in small_inverse(rows)], -3)
