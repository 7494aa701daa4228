"""What a more accurate method costs in training: the bench's training iteration (784-128-10, batch
64, a 6 µs window, fused, first-spike loss, forward + backward) with ``radau5`` at 200 ns (30
steps, the default) and ``radau7`` at 250 and 300 ns (24 and 20 steps), alternated in one run so
that all see the same machine. Prints the best of ``--repeats`` per variant, its Newton
iterations per step and its cost relative to the default. Run:

    .venv/bin/python benchmarks/method_cost.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from memspice.bench.measure import BenchSettings, _inputs
from memspice.nn import MemristiveSNN
from memspice.nn.readout import Readout
from memspice.solver import SolverOptions

VARIANTS = (("radau5", 200e-9), ("radau7", 250e-9), ("radau7", 300e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = BenchSettings()
    readout = Readout("first-spike", 30.0, fire_weight=0.05)
    runs = {}
    for method, dt in VARIANTS:
        rows, _ = _inputs(replace(settings, dt=dt), settings.train_batch, settings.train_window)
        torch.manual_seed(0)
        runs[(method, dt)] = (MemristiveSNN(settings.network, solver=SolverOptions(dt, method)), rows)
    labels = torch.arange(settings.train_batch) % 10  # the cost does not depend on the labels

    def iteration(key: tuple[str, float]) -> tuple[float, float]:
        model, rows = runs[key]
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        solution = model(rows)
        readout.loss(solution.v[-1], labels).backward()
        return time.perf_counter() - start, sum(solution.newton_iterations) / len(solution.newton_iterations)

    iterations = {key: iteration(key)[1] for key in runs}  # compiles each variant's kernels first
    best = {key: float("inf") for key in runs}
    for _ in range(args.repeats):
        for key in runs:
            best[key] = min(best[key], iteration(key)[0])
    base = best[VARIANTS[0]]
    print(f"{'method':<7} {'dt (ns)':>7} {'steps':>5} {'ms/iteration':>12} {'Newton/step':>11} {'cost':>6}")
    for (method, dt), seconds in best.items():
        steps = runs[(method, dt)][1].shape[1] - 1
        print(f"{method:<7} {dt * 1e9:7.0f} {steps:5d} {seconds * 1e3:12.1f} {iterations[(method, dt)] / steps:11.2f} "
              f"{seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
