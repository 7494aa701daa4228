"""How many neurons still need Newton's iterations: the bench's training forward (784-128-10,
batch 64, 30 steps of 200 ns, float32, the fused path), each step's Newton iterations per layer,
and after each iteration the share of the layer's neurons whose remaining error (the stopping
rule's, :func:`memspice.solver.fused.remaining_error`) is still above the tolerance. The layer's
worst neuron decides when the whole layer stops; the shares say what an iteration on the
unconverged neurons alone would cost. Then, per layer, the worst neuron's first update in units of the
tolerance and the contraction of its last iteration (the largest ``misses / last`` over the neurons
still above the tolerance before it): RADAU5 stops a step after its first iteration when that update
times the previous step's ``θ/(1 - θ)`` is within the tolerance. Run:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/newton_convergence.py
"""

from __future__ import annotations

import collections
import statistics

import torch

from memspice.bench.measure import BenchSettings, _inputs
from memspice.nn import MemristiveSNN
from memspice.solver import fused


def main() -> None:
    torch.set_num_threads(1)
    settings = BenchSettings()
    rows, _ = _inputs(settings, settings.train_batch, settings.train_window)
    model = MemristiveSNN(settings.network, solver=settings.solver)
    steps = collections.Counter()  # (layer size, iterations) -> steps
    unconverged = collections.defaultdict(list)  # (layer size, iteration) -> shares
    iteration = collections.Counter()  # layer size -> the iteration of the step under way
    first_update = collections.defaultdict(list)  # layer size -> each step's worst first update / tolerance
    contraction = collections.defaultdict(list)  # layer size -> each step's worst last contraction

    def watch(build, first: bool):
        def watched(*args):
            kernel = build(*args)

            def call(tensors, *inputs):
                """The solver's own iteration: a step's first (the predicted kernel, or with
                ``last``, the previous update's size, all 0) or a later one."""
                new, misses, worst = kernel(tensors, *inputs)
                n, last = inputs[0].shape[-1], None if first else inputs[-1]
                iteration[n] = 1 if first or not last.any() else iteration[n] + 1
                # (every update counted as undamped: near convergence, where the shares matter, none is damped)
                left = misses if last is None else fused.remaining_error(misses, last, torch.ones_like(misses))
                unconverged[(n, iteration[n])].append((left > 1.0).double().mean().item())
                if first:
                    first_update[n].append(misses.max().item())
                if worst.item() <= 1.0:
                    steps[(n, iteration[n])] += 1
                    if last is not None and (last > 1.0).any():
                        contraction[n].append((misses / last)[last > 1.0].max().item())
                return new, misses, worst

            return call

        return watched

    fused.newton_kernel = watch(fused.newton_kernel, first=False)
    fused.predicted_newton_kernel = watch(fused.predicted_newton_kernel, first=True)
    with torch.no_grad():
        model(rows)
    for (n, iterations), count in sorted(steps.items()):
        print(f"layer of {n} neurons: {count} steps took {iterations} Newton iterations")
    for (n, number), shares in sorted(unconverged.items()):
        print(f"layer of {n} neurons, after iteration {number}: {statistics.mean(shares):.3f} of its neurons "
              f"not converged on average, {max(shares):.3f} at most")
    for n, updates in sorted(first_update.items()):
        thetas = contraction[n]
        print(f"layer of {n} neurons: the first update of the worst neuron {statistics.median(updates):.3g} x the "
              f"tolerance (median over {len(updates)} steps, smallest {min(updates):.3g}); the last iteration's "
              f"contraction {statistics.median(thetas):.3g} (median, largest {max(thetas):.3g})")


if __name__ == "__main__":
    main()
