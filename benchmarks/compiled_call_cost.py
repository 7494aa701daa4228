"""What one call of a compiled kernel costs on top of its arithmetic: the solver's Newton
iteration kernel (radau5, the default neuron, float32) called at a batch of one neuron, where its
arithmetic is nil, and at the bench's first layer (64 x 128 neurons), against ``x + 1`` compiled
the two ways: by :func:`torch.compile` (dynamo's frame and guards on every call, then inductor's
wrapper) and as the solver compiles its kernels (:class:`memspice.solver.fused.CompiledKernel`:
traced once, inductor's wrapper only). A training iteration of ``memspice bench`` makes about 220 such
calls (2.7 Newton iterations per step and layer, one gradient kernel per step and layer, 30 steps,
2 layers). Prints the median time per call of each. Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compiled_call_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from memspice.devices import MIF
from memspice.solver import fused
from memspice.solver.integrators import NeuronEquations, NewtonOptions, _scaled_matrix
from memspice.solver.methods import method_class


def per_call(fn, calls: int) -> float:
    """Median seconds per call of ``fn()`` over 5 rounds of ``calls`` calls."""
    fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def newton_call(batch: int, n: int):
    """The Newton kernel on ``batch`` x ``n`` neurons at rest under a small drive, as a call."""
    layer = NeuronEquations(MIF)
    floats, tensors = fused.split_params(layer.params)
    options = NewtonOptions()
    kernel = fused.newton_kernel(layer.device, floats, options.tolerances(torch.float32),
                                 (options.max_dv, options.max_dx))
    tableau = method_class("radau5").tableau
    d, s = 1 + len(layer.initial), len(tableau.nodes)
    start = torch.tensor([0.0, *layer.initial]).reshape(d, 1, 1, 1).expand(d, 1, batch, n).contiguous()
    z = start.expand(d, s, batch, n).contiguous()
    a, b = torch.full((s + 1, batch, n), 1e-6), torch.full((s + 1, batch, n), -1e-5)
    a_tilde = _scaled_matrix(tableau.matrix, 2e-7, torch.float32, torch.device("cpu"))
    last = torch.zeros(batch, n)
    return lambda: kernel(tensors, z, start, a, b, None, a_tilde, last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plus_one = torch.compile(lambda x: x + 1, dynamic=True)
    plus_one_traced = fused.CompiledKernel(lambda tensors, x: (x + 1,))
    x = torch.zeros(1, 1)
    print(f"x + 1, torch.compile:                 {per_call(lambda: plus_one(x), args.calls) * 1e6:7.1f} us per call")
    print(f"x + 1, as the solver compiles:        "
          f"{per_call(lambda: plus_one_traced([], x), args.calls) * 1e6:7.1f} us per call")
    for batch, n in ((1, 1), (64, 128)):
        seconds = per_call(newton_call(batch, n), max(int(args.calls / (batch * n) ** 0.5), 20))
        print(f"Newton iteration kernel, {batch:2d} x {n:3d} neurons: {seconds * 1e6:7.1f} us per call")


if __name__ == "__main__":
    main()
