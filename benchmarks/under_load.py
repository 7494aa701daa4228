"""Training speed when another process keeps one core busy: torch threads and OpenMP's wait
policy, side by side in one run. Each row trains the digits network (`memspice train`, 1 epoch on
the first 256 samples, the fused solver) in a fresh process, quiet or next to a busy loop; the
compiled kernels are built once first, so that every row times the same work. Run:

    .venv/bin/python benchmarks/under_load.py

It showed why `make demo` crawled on a loaded machine: with two torch threads on two cores, the
thread that waits for the one sharing its core with the busy loop spins (OpenMP's default), and
every parallel region waits for a time slice. `memspice` now sets OMP_WAIT_POLICY=PASSIVE unless
it is set, and the demo trains with one thread.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROWS = [  # (threads, OMP_WAIT_POLICY, busy core)
    (1, "PASSIVE", False), (2, "PASSIVE", False), (2, "ACTIVE", False),
    (1, "PASSIVE", True), (2, "PASSIVE", True), (2, "ACTIVE", True),
]


def train_seconds(threads: int, policy: str, busy: bool) -> float:
    """Seconds of training (the run's ``train_s``) for one row."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(
                [sys.executable, "-m", "memspice", "train", "--dataset", "digits", "--epochs", "1", "--train-samples",
                 "256", "--eval-samples", "32", "--threads", str(threads), "--out", f"{out}/run", "--quiet", "--json"],
                env={**os.environ, "OMP_WAIT_POLICY": policy}, capture_output=True, text=True, check=True)
            return json.loads(done.stdout)["train_s"]
    finally:
        if hog:
            hog.kill()
            hog.wait()


def main() -> None:
    print("compiling the solver's kernels for 1 and 2 threads (not timed) ...", file=sys.stderr)
    for threads in (1, 2):
        train_seconds(threads, "PASSIVE", False)
    print(f"{'threads':>7}  {'OMP_WAIT_POLICY':>15}  {'busy core':>9}  train_s")
    quiet = None
    for threads, policy, busy in ROWS:
        start = time.perf_counter()
        seconds = train_seconds(threads, policy, busy)
        quiet = quiet or seconds
        print(f"{threads:>7}  {policy:>15}  {'yes' if busy else 'no':>9}  {seconds:7.1f}  ({seconds / quiet:.2f}x the "
              f"first row; {time.perf_counter() - start:.0f} s with start-up)", flush=True)
    print(f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
