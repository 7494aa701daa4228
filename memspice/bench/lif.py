"""The conventional baseline of ``memspice bench``: a leaky integrate-and-fire SNN trained with a
surrogate gradient (snnTorch's ``Leaky`` neuron with its default fast-sigmoid surrogate, in plain
torch so that the benchmark needs no extra package).

Discrete time, one update per step: ``u ← β·u + W·s_in - s_out·θ`` (reset by subtraction),
``s_out = H(u - θ)`` forward, ``∂s/∂u = 1 / (1 + k·|u - θ|)²`` backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative backward (slope ``k = 25``, snnTorch's default)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (u,) = ctx.saved_tensors
        return grad / (1.0 + 25.0 * u.abs()) ** 2


class LIFNetwork(nn.Module):
    """Fully connected LIF layers ``sizes = (n_in, ..., n_out)``, decay ``beta`` and threshold 1.

    ``forward(inputs)`` takes input currents ``(batch, n_steps, n_in)`` and returns the output
    layer's membrane potentials ``(batch, n_steps, n_out)``."""

    def __init__(self, sizes: Sequence[int], beta: float = 0.9) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.beta = beta

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch, n_steps, _ = inputs.shape
        potentials = [inputs.new_zeros(batch, layer.out_features) for layer in self.layers]
        out = []
        for n in range(n_steps):
            spikes = inputs[:, n]
            for k, layer in enumerate(self.layers):
                u = self.beta * potentials[k] + layer(spikes)
                spikes = _Spike.apply(u - 1.0)
                potentials[k] = u - spikes.detach()  # reset by subtraction, not differentiated (snnTorch's default)
            out.append(potentials[-1])
        return torch.stack(out, dim=1)
