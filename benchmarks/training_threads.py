"""The bench's training iteration (784-128-10 through the circuit, batch 64, 30 steps of 200 ns,
forward + backward + Adam) against snnTorch's ``Leaky`` network of the same sizes, alternately in
one process (``memspice bench``'s own measurement, more rounds), at the thread count and OpenMP
wait policy given (run it once per setting: OpenMP reads its policy at start-up). Prints the
median time per iteration of each side, the median of the rounds' ratios and their spread, the
Newton iterations per step and the warm-up. Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/training_threads.py --threads 1 [--rounds 15]
"""

from __future__ import annotations

import argparse
import os

from memspice.bench.measure import BenchSettings, measure_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    result = measure_training("both", "time", BenchSettings.quick(train_iterations=args.rounds), args.threads)
    circuit, lif = result["circuit"], result["lif"]
    policy = os.environ.get("OMP_WAIT_POLICY", "unset (ACTIVE)")
    print(f"threads {args.threads}, OMP_WAIT_POLICY {policy}: circuit {circuit['seconds_per_batch'] * 1e3:.1f} ms, "
          f"snnTorch {lif['seconds_per_batch'] * 1e3:.1f} ms, ratio {result['cost_ratio']:.2f} (rounds within "
          f"{result['cost_ratio_spread']:.2f}x); Newton iterations per step "
          + "/".join(f"{n:.2f}" for n in circuit["newton_iterations_per_step"])
          + f"; warm-up {circuit['warmup_s']:.1f} s")


if __name__ == "__main__":
    main()
