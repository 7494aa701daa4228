"""Where one training iteration of ``memspice bench`` goes: 784-128-10 through the circuit,
batch 64, 30 steps of 200 ns (the bench's training settings), forward + backward + Adam step.
Prints the warm-up time (compilation included), the steady-state time of the forward and the
backward pass, the Newton iterations per step and layer, and torch.profiler's table of the
operators with the most self CPU time over one iteration. Run:

    .venv/bin/python benchmarks/training_profile.py [--threads 2] [--no-fused] [--no-estimate] [--rows 20]
        [--network 784 10]

``--network`` profiles other sizes at the same settings: a 784-10 network is the bench's second layer's
bookkeeping (10 neurons, nearly no arithmetic) with the input layer's products.
"""

from __future__ import annotations

import argparse
import time

import torch

from memspice.bench.measure import BenchSettings, _inputs
from memspice.nn import MemristiveSNN
from memspice.nn.readout import Readout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-fused", dest="fused", action="store_false")
    parser.add_argument("--no-estimate", dest="estimate", action="store_false",
                        help="without the solver's local error estimate (tolerance None)")
    parser.add_argument("--rows", type=int, default=20, help="operators in the profile table")
    parser.add_argument("--network", type=int, nargs="+", default=list(BenchSettings.network),
                        help="layer sizes, inputs first (default: the bench's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = BenchSettings(network=tuple(args.network))
    rows, _ = _inputs(settings, settings.train_batch, settings.train_window)
    labels = torch.arange(settings.train_batch) % settings.network[-1]
    solver = settings.solver.replace(fused=args.fused, **({} if args.estimate else {"tolerance": None}))
    model = MemristiveSNN(settings.network, solver=solver)
    readout = Readout("membrane-mean", 100.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def iteration() -> tuple[float, float, list[int]]:
        start = time.perf_counter()
        solution = model(rows)
        loss = readout.loss(solution.v[-1], labels)
        middle = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # (newton_iterations: absent before the solver reported them; the script runs on older commits too)
        return middle - start, time.perf_counter() - middle, getattr(solution, "newton_iterations", None) or []

    forward, backward, _ = iteration()
    print(f"warm-up: {forward + backward:.1f} s")
    runs = [iteration() for _ in range(3)]
    forward, backward, iterations = min(runs, key=lambda run: run[0] + run[1])
    steps = rows.shape[1] - 1
    print(f"forward {forward:.3f} s, backward + Adam {backward:.3f} s (best of 3); Newton iterations per step: "
          + ("/".join(f"{n / steps:.2f}" for n in iterations) or "not reported"))
    with torch.profiler.profile() as profile:
        iteration()
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
