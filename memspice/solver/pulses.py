"""The pulse extenders (:class:`~memspice.circuit.PulseExtender`) of a layer's neurons, integrated at
the Radau IIA stages of the layer's own steps.

``tau·dQ/dt = c(t) - Q`` is linear and driven only by its neuron's membrane (``c = charge(V)``),
so the collocation equations of a step of ``h`` with the stage charges ``c`` (``(s,)``) have a
closed form: with ``ε = h/tau`` and ``M = (I + ε·A)⁻¹``,

    Q_stages = M·1·Q_n + ε·M·A·c,     Q_{n+1} = Q_stages[-1]   (stiffly accurate),

exactly what the solver would find with ``Q`` as one more state of the neuron (no Newton
iteration needed), and every step of a run at once: ``Q_{n+1} = α·Q_n + βᵀ·c_n`` unrolls into one
lower-triangular product with the powers of ``α = R(-ε)``, the method's stability function. The
gradient is autograd's through those products.
"""

from __future__ import annotations

import numpy as np
import torch


def extend_pulses(charges: torch.Tensor, dt: float, tau: float,
                  matrix: tuple[tuple[float, ...], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q`` (V) from rest for the charges ``c`` (V) at every step's stages ``(steps, s, ...)`` of
    a Radau IIA method of Butcher ``matrix`` (``s × s``) on a grid of ``dt`` (s), with the time
    constant ``tau`` (s). Returns ``Q`` at the same stages ``(steps, s, ...)`` and on the grid
    ``(steps + 1, ...)`` (0 V at ``t = 0``)."""
    steps, s = charges.shape[:2]
    a = np.asarray(matrix, dtype=float)
    if a.shape != (s, s):
        raise ValueError(f"a {a.shape} Butcher matrix for {s} stages")
    eps = dt / tau
    m = np.linalg.inv(np.eye(s) + eps * a)
    from_start, from_charges = m @ np.ones(s), eps * m @ a  # Q_stages = from_start·Q_n + from_charges·c
    like = {"dtype": charges.dtype, "device": charges.device}
    flat = charges.reshape(steps, s, -1)
    weights = torch.as_tensor(from_charges, **like)
    driven = torch.matmul(weights, flat)  # (steps, s, rest): each step's stages from its own charges
    # Q_{n+1} = alpha·Q_n + driven[n, -1]: Q_{n+1} = Σ_{m<=n} alpha^(n-m)·driven[m, -1]
    alpha = float(from_start[-1])
    lags = np.arange(steps)[:, None] - np.arange(steps)[None, :]
    powers = torch.as_tensor(np.where(lags >= 0, alpha ** np.maximum(lags, 0), 0.0), **like)
    ends = powers @ driven[:, -1]  # (steps, rest): Q at every step's end
    starts = torch.cat([ends.new_zeros((1, ends.shape[-1])), ends[:-1]])
    stages = driven + torch.as_tensor(from_start, **like)[None, :, None] * starts[:, None, :]
    grid = torch.cat([starts[:1], ends])
    return stages.reshape(charges.shape), grid.reshape(steps + 1, *charges.shape[2:])
