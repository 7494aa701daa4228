"""CUDA check of the torch solver: the same neuron on CPU and GPU (float64) must agree, and the
time per step at batch 1 and 4096 on each. Run where a GPU exists:

    python benchmarks/solver_cuda_check.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from memspice.defaults import DT, METHOD
from memspice.netlist.stimuli import PWL
from memspice.solver import SolverOptions, simulate_neurons


def run(device: str, batch: int, steps: int, method: str = METHOD) -> tuple[torch.Tensor, float]:
    t = np.arange(steps + 1) * DT
    current = torch.tensor(PWL([0, 1e-6, 2e-6], [0, 0, 3e-6]).sample(t)).reshape(1, -1, 1)
    current = current.expand(batch, -1, 1).contiguous().to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        v = simulate_neurons(current, SolverOptions(DT, method)).v[0]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return v.cpu(), time.perf_counter() - start


def main() -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}; devices: {devices}; "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    cpu, _ = run("cpu", 1, 500)
    if "cuda" in devices:
        gpu, _ = run("cuda", 1, 500)
        print(f"max |v_cuda - v_cpu| over 500 steps: {float((gpu - cpu).abs().max()):.3g} V")
    for device in devices:
        for batch in (1, 4096):
            _, seconds = run(device, batch, 300)
            print(f"{device:5s} batch {batch:5d}: {seconds / 300 * 1e3:.2f} ms per {METHOD} step "
                  f"({batch * 300 / seconds:.3g} neuron-steps/s)")


if __name__ == "__main__":
    main()
