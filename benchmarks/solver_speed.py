"""The solver's linear algebra side by side on 784-128-10 (untrained, seed 0, random pixels in
[0.2, 1] V): time per step of the forward pass (no autograd) and of training (forward +
backward) with the dense factorization of every Newton system, the arrow elimination, and the
arrow elimination with fused (compiled) Newton iterations. Run:

    .venv/bin/python benchmarks/solver_speed.py [--batch 256] [--steps 10] [--threads N]

(``benchmarks/training_profile.py`` shows where a fused training iteration spends its time.)
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from memspice.nn import MemristiveSNN
from memspice.solver import SolverOptions, integrators

SIZES = (784, 128, 10)


def per_step(model: MemristiveSNN, rows: torch.Tensor, train: bool) -> float:
    """Seconds per time step of one pass (after a warm-up pass, which compiles)."""
    def run():
        if train:
            model.zero_grad(set_to_none=True)
            model(rows).v[-1].mean().backward()
        else:
            with torch.no_grad():
                model(rows)

    run()
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / (rows.shape[1] - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows = 0.2 + 0.8 * torch.rand(args.batch, 1, SIZES[0], generator=generator).expand(-1, args.steps + 1, -1)
    rows = rows.clone()
    rows[:, 0] = 0.0
    results = {}
    detect = integrators._states_uncoupled
    for name, arrow, fused in (("dense", False, False), ("arrow", True, False), ("arrow+fused", True, True)):
        # the dense factorization is what the solver uses for devices whose states couple
        integrators._states_uncoupled = detect if arrow else (lambda model: False)
        try:
            model = MemristiveSNN(SIZES, solver=SolverOptions(fused=fused))
            results[name] = {"forward_s_per_step": per_step(model, rows, False),
                             "train_s_per_step": per_step(model, rows, True)}
        finally:
            integrators._states_uncoupled = detect
        print(f"{name:12s} forward {1e3 * results[name]['forward_s_per_step']:7.1f} ms/step   "
              f"forward+backward {1e3 * results[name]['train_s_per_step']:7.1f} ms/step", flush=True)
    print(json.dumps({"sizes": SIZES, "batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "results": results}))


if __name__ == "__main__":
    main()
