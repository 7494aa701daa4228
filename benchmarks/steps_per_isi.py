"""Spike times at about 20 steps per inter-spike interval (issue 25): validate's 2 µA step into the
default MIF neuron (ISI 4.98 µs), ngspice once, then the torch solver with ``radau5`` and ``radau7``
on grids from 200 to 300 ns (25 to 16.6 steps per ISI), spikes read as validate reads them (M1's
state x1 crossing 0.5). Per run: the spike counts, the mean spike-time error over the ISI with
the spikes read from the solver's dense output (each step's collocation polynomial) and read by
straight lines between grid samples, and the drift, the
slope of the signed error over the spike number (ns per spike): a steady drift is a wrong period,
e.g. the discrete oscillator locking to a whole number of steps. Run:

    .venv/bin/python benchmarks/steps_per_isi.py [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from memspice.devices import MIF
from memspice.signals import spike_times
from memspice.solver import SolverOptions, simulate_neurons
from memspice.validate.cases import STEP, SpikeReading, grid, mif_references

METHODS = ("radau5", "radau7")
STEPS = (200e-9, 225e-9, 240e-9, 250e-9, 260e-9, 275e-9, 300e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, (ref_spikes,), _, _ = mif_references([STEP], workers=1)
    reading = SpikeReading.of(MIF)
    isi = float(np.diff(ref_spikes).mean())
    print(f"ngspice: {len(ref_spikes)} spikes, ISI {isi * 1e6:.3f} us")
    print(f"{'method':<7} {'dt (ns)':>7} {'steps/ISI':>9} {'spikes':>7} {'err/ISI dense':>13} {'linear':>7} "
          f"{'drift (ns/spike)':>16}")
    for method in METHODS:
        for dt in STEPS:
            t = grid(STEP.times[-1], dt)
            current = torch.as_tensor(STEP.sample(t), dtype=torch.float64).reshape(1, -1, 1)
            with torch.no_grad():
                solution = simulate_neurons(current, SolverOptions(dt, method), dense_output=True)
            dense = reading.torch(solution, 0, 0)
            linear = spike_times(t, solution.x[0][0, :, 0, reading.component - 1].numpy(), reading.level)
            paired = min(len(dense), len(ref_spikes))
            signed = dense[:paired] - ref_spikes[:paired]
            errors = [np.abs(s[:paired] - ref_spikes[:paired]).mean() / isi for s in (dense, linear)]
            drift = np.polyfit(np.arange(paired), signed, 1)[0]
            print(f"{method:<7} {dt * 1e9:7.0f} {isi / dt:9.1f} {len(ref_spikes):>3d}/{len(dense):<3d} "
                  f"{100 * errors[0]:12.2f}% {100 * errors[1]:6.2f}% {drift * 1e9:16.1f}", flush=True)


if __name__ == "__main__":
    main()
