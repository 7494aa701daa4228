"""What the solver's local error estimate costs: one training iteration of ``memspice bench``
(784-128-10, batch 64, 30 steps of 200 ns, fused, first-spike loss, forward + backward) with
the estimate (the default) and without (``tolerance=None``), alternated in one run so that both
see the same machine. Prints the best of ``--repeats`` for each and their ratio. Run:

    .venv/bin/python benchmarks/error_estimate_cost.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import torch

from memspice.bench.measure import BenchSettings, _inputs
from memspice.nn import MemristiveSNN
from memspice.nn.readout import Readout
from memspice.solver import SolverOptions
from memspice.solver.accuracy import Tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = BenchSettings()
    rows, _ = _inputs(settings, settings.train_batch, settings.train_window)
    labels = torch.arange(len(rows)) % 10  # the cost does not depend on the labels
    model = MemristiveSNN(settings.network, solver=SolverOptions(fused=True))
    readout = Readout("first-spike", 30.0, fire_weight=0.05)

    def iteration(tolerance: Tolerance | None) -> float:
        model.solver = model.solver.replace(tolerance=tolerance)
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        readout.loss(model(rows).v[-1], labels).backward()
        return time.perf_counter() - start

    variants = {"with the estimate": Tolerance(), "without": None}
    for tolerance in variants.values():  # compile both variants' kernels first
        iteration(tolerance)
    best = {name: iteration(t) for name, t in variants.items()}
    for _ in range(args.repeats - 1):
        for name, tolerance in variants.items():
            best[name] = min(best[name], iteration(tolerance))
    for name, seconds in best.items():
        print(f"{name:<18} {seconds * 1e3:7.1f} ms per iteration (best of {args.repeats})")
    print(f"cost of the estimate: {best['with the estimate'] / best['without']:.3f}x")


if __name__ == "__main__":
    main()
