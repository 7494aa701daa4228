"""Which tolerance adaptive steps need: validate's 2 µA step (mif-step) into the KANG2021 and the
default MIF neuron, ngspice once per neuron, then the torch solver with adaptive substeps on 200 and
100 ns output grids for several tolerances; prints spike counts, the mean spike-time error over the
interspike interval, NRMSE and the substeps taken (the grid has 600 and 1200 steps). The tolerance
that meets the targets on both neurons and grids is ``memspice.solver.accuracy.ADAPTIVE_TOLERANCE``.
Run:

    .venv/bin/python benchmarks/adaptive_tolerance.py [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from memspice.devices import MIF
from memspice.devices.mif import KANG2021
from memspice.solver import SolverOptions, simulate_neurons
from memspice.solver.accuracy import ADAPTIVE_TOLERANCE, Tolerance
from memspice.validate.cases import STEP, SpikeReading, grid, mif_references
from memspice.validate.metrics import compare

TOLERANCES = (Tolerance(), Tolerance(0.01, 0.03), ADAPTIVE_TOLERANCE, Tolerance(0.001, 0.003))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'neuron':<9} {'grid':>7} {'tolerance (v V, x)':>19} {'spikes':>8} {'err/ISI':>8} {'NRMSE':>7} "
          f"{'substeps':>8}")
    for name, neuron in (("kang2021", KANG2021), ("default", {})):
        (reference,), (ref_spikes,), _, _ = mif_references([STEP], 1, 600.0, neuron)
        for dt in (200e-9, 100e-9):
            t = grid(STEP.times[-1], dt)
            current = torch.as_tensor(STEP.sample(t), dtype=torch.float64).reshape(1, -1, 1)
            for tolerance in TOLERANCES:
                solution = simulate_neurons(current, SolverOptions(dt, adaptive=tolerance), neuron, record_states=False)
                m = compare(*reference, t, solution.v[0][0, :, 0].numpy(),
                            spikes=SpikeReading.of(MIF).torch(solution, 0, 0), ref_spikes=ref_spikes)
                print(f"{name:<9} {dt * 1e9:5.0f} ns {tolerance.v:>9g} {tolerance.x:>9g} "
                      f"{m['spikes_ref']:>3d}/{m['spikes_torch']:<4d} {100 * m['spike_time_error_over_isi']:7.2f}% "
                      f"{100 * m['nrmse']:6.2f}% {solution.substeps:>8d}", flush=True)


if __name__ == "__main__":
    main()
