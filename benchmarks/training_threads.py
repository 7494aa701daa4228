"""The bench's training iteration (784-128-10 through the circuit, batch 64, 30 steps of 200 ns,
forward + backward + Adam) against snnTorch's ``Leaky`` network of the same sizes, alternately in
one process, at the thread count and OpenMP wait policy given (run it once per setting: OpenMP
reads its policy at start-up). Prints the median time per iteration of each side, their
smallest, the median of the rounds' ratios and the Newton iterations per step. Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/training_threads.py --threads 1 [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from memspice.bench.measure import BenchSettings, _training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = BenchSettings.quick()
    circuit, steps, iterations = _training("circuit", settings)
    lif, _, _ = _training("lif", settings)
    start = time.perf_counter()
    circuit()
    warmup = time.perf_counter() - start
    lif()
    times: dict[str, list[float]] = {"circuit": [], "lif": []}
    for _ in range(args.rounds):
        for name, fn in (("circuit", circuit), ("lif", lif)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ratios = [c / lif for c, lif in zip(times["circuit"], times["lif"])]
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (ACTIVE)")
    circuit_ms = statistics.median(times["circuit"]) * 1e3
    print(f"threads {args.threads}, OMP_WAIT_POLICY {policy}: circuit {circuit_ms:.1f} ms "
          f"(smallest {min(times['circuit']) * 1e3:.1f}), snnTorch {statistics.median(times['lif']) * 1e3:.1f} ms "
          f"(smallest {min(times['lif']) * 1e3:.1f}), ratio {statistics.median(ratios):.2f} (rounds within "
          f"{max(ratios) / min(ratios):.2f}x); Newton iterations per step "
          + "/".join(f"{n / steps:.2f}" for n in iterations()) + f"; warm-up {warmup:.1f} s")


if __name__ == "__main__":
    main()
