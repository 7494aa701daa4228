"""How many neurons still need Newton's iterations: the bench's training forward (784-128-10,
batch 64, 30 steps of 200 ns, float32, the fused path), each step's Newton iterations per layer,
and after each iteration the share of the layer's neurons whose remaining error (the stopping
rule's, :func:`memspice.solver.fused.remaining_error`) is still above the tolerance. The layer's
worst neuron decides when the whole layer stops; the shares say what an iteration on the
unconverged neurons alone would cost. Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/newton_convergence.py
"""

from __future__ import annotations

import collections
import statistics

import torch

from memspice.bench.measure import BenchSettings, _inputs
from memspice.nn import MemristiveSNN
from memspice.solver import fused
from memspice.solver.integrators import Stepper


def main() -> None:
    torch.set_num_threads(1)
    settings = BenchSettings()
    rows, _ = _inputs(settings, settings.train_batch, settings.train_window)
    model = MemristiveSNN(settings.network, solver=settings.solver)
    steps = collections.Counter()  # (layer size, iterations) -> steps
    unconverged = collections.defaultdict(list)  # (layer size, iteration) -> shares
    solve = Stepper._fused_newton

    def counting(self, z, start, a, b, explicit, a_tilde):
        """The iterations of :meth:`Stepper._fused_newton` once more, counted, then the solver's own."""
        options, first = self.newton, z
        kernel = fused.newton_kernel(self.layer.device, self.floats, options.tolerances(z.dtype),
                                     (options.max_dv, options.max_dx))
        inputs = [t.detach() if t is not None else None for t in (start, a, b, explicit)]
        misses = torch.zeros(z.shape[2:], dtype=z.dtype)
        for iteration in range(1, options.max_iter + 1):
            z, now, worst = kernel(self.tensors, z, *inputs, a_tilde, misses)
            # (every update counted as undamped: near convergence, where the shares matter, none is damped)
            left = fused.remaining_error(now, misses, torch.ones_like(now))
            unconverged[(z.shape[-1], iteration)].append((left > 1.0).double().mean().item())
            misses = now
            if worst.item() <= 1.0:
                break
        steps[(z.shape[-1], iteration)] += 1
        return solve(self, first, start, a, b, explicit, a_tilde)

    Stepper._fused_newton = counting
    with torch.no_grad():
        model(rows)
    for (n, iterations), count in sorted(steps.items()):
        print(f"layer of {n} neurons: {count} steps took {iterations} Newton iterations")
    for (n, iteration), shares in sorted(unconverged.items()):
        print(f"layer of {n} neurons, after iteration {iteration}: {statistics.mean(shares):.3f} of its neurons "
              f"not converged on average, {max(shares):.3f} at most")


if __name__ == "__main__":
    main()
