"""The conventional baseline of ``memspice bench``: snnTorch's ``Leaky`` neurons behind fully
connected layers, trained with snnTorch's defaults (the arctangent surrogate gradient, reset
by subtraction applied one step late), in the usual snnTorch loop over time steps.

snnTorch is an optional dependency (``pip install 'memspice[bench]'``; the test command
installs it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from memspice.errors import MemspiceError


def require_snntorch():
    """The ``snntorch`` module, or :class:`MemspiceError` saying how to install it."""
    try:
        import snntorch
    except ImportError as missing:
        raise MemspiceError("the LIF baseline of memspice bench needs snnTorch: pip install 'memspice[bench]'") \
            from missing
    return snntorch


class LIFNetwork(nn.Module):
    """Fully connected layers ``sizes = (n_in, ..., n_out)``, each followed by
    ``snntorch.Leaky(beta)`` (threshold 1).

    ``forward(inputs)`` takes input currents ``(batch, n_steps, n_in)`` and returns the output
    layer's membrane potentials ``(batch, n_steps, n_out)``."""

    def __init__(self, sizes: Sequence[int], beta: float = 0.9) -> None:
        super().__init__()
        snntorch = require_snntorch()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.neurons = nn.ModuleList(snntorch.Leaky(beta=beta) for _ in self.layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        membranes = [neuron.reset_mem() for neuron in self.neurons]
        out = []
        for n in range(inputs.shape[1]):
            spikes = inputs[:, n]
            for k, (layer, neuron) in enumerate(zip(self.layers, self.neurons)):
                spikes, membranes[k] = neuron(layer(spikes), membranes[k])
            out.append(membranes[-1])
        return torch.stack(out, dim=1)

