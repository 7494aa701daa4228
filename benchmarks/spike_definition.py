"""What a spike is: the membrane crossing 0.45 V upwards (today's reading, in both engines) against a
device-level definition, the depolarizing switch M1's state x1 crossing one half (M1 turning on,
the regenerative event a spike is), read the same way from ngspice's and the torch solver's
waveforms. Two sets of neurons (issue 25):

* 20 MIF parameter sets, every parameter scaled by a factor uniform in [0.75, 1.25] (seed 0; sets
  whose hold is not below their threshold are redrawn), under validate's 2 µA step, torch at 200 ns;
* the KANG2021 neuron under validate's f–I steps (0.5-16 µA), torch at 25 ns.

Prints, per neuron, the spike counts of both engines by each definition and the largest spike-time
difference over the interspike interval where the counts agree, and the torch solver's own largest local
error estimate in units of its tolerance (above 1 it warns that the grid is too coarse). Run:

    .venv/bin/python benchmarks/spike_definition.py [--threads 1] [--workers 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from memspice.defaults import SPIKE_THRESHOLD
from memspice.devices.mif import KANG2021, PARAMETERS
from memspice.netlist.builder import TranSettings
from memspice.netlist.examples import current_clamp
from memspice.signals import spike_times
from memspice.solver import SolverOptions, simulate_neurons
from memspice.solver.accuracy import worst
from memspice.spice.pool import raise_first_error, run_many
from memspice.spice.results import Waveforms
from memspice.validate.cases import FI_CURRENTS, STEP, grid, mif_stimuli

SWITCH_LEVEL = 0.5  #: M1's state at which it counts as switched on


def random_sets(count: int = 20, seed: int = 0, spread: float = 0.25) -> list[dict[str, float]]:
    """``count`` MIF parameter sets, each default scaled by a factor uniform in ``1 ± spread``."""
    rng = np.random.default_rng(seed)
    defaults = {p.name: p.default for p in PARAMETERS}
    sets = []
    while len(sets) < count:
        params = {k: v * rng.uniform(1 - spread, 1 + spread) for k, v in defaults.items()}
        if params["hold1"] < params["th1"] and params["hold2"] < params["th2"]:
            sets.append(params)
    return sets


def readings(t: np.ndarray, v: np.ndarray, x1: np.ndarray) -> dict[str, np.ndarray]:
    """Spike times (s) by each definition."""
    return {"membrane": spike_times(t, v, SPIKE_THRESHOLD), "switch": spike_times(t, x1, SWITCH_LEVEL)}


def compared(ref: np.ndarray, torch_times: np.ndarray) -> str:
    """``counts`` and, where they agree (and there are three or more), the largest difference over the ISI."""
    text = f"{len(ref):3d}/{len(torch_times):<3d}"
    if len(ref) == len(torch_times) and len(ref) > 2:
        return text + f" {100 * np.abs(ref - torch_times).max() / np.median(np.diff(ref)):6.2f}%"
    return text + " " * 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [(f"random {k:2d}", params, STEP, 200e-9) for k, params in enumerate(random_sets())]
    cases += [(f"kang {c * 1e6:4.3g} uA", KANG2021, stimulus, 25e-9)
              for c, stimulus in zip(FI_CURRENTS, mif_stimuli("mif-fi"))]
    jobs = [(f"neuron{k}", current_clamp(stimulus, stimulus.times[-1], params,
                                         settings=TranSettings(t_end=stimulus.times[-1])))
            for k, (_, params, stimulus, _) in enumerate(cases)]
    results = run_many(jobs, workers=args.workers, timeout=600, progress=False)
    raise_first_error(results)
    membrane, switch = f"v > {SPIKE_THRESHOLD:g} V", f"x1 > {SWITCH_LEVEL:g}"
    print(f"{'neuron':<14} {membrane + ': ngspice/torch, worst/ISI':>36}   {switch + ': ngspice/torch, worst/ISI':>36}"
          f"   {'estimate':>8}")
    for (name, params, stimulus, dt), result in zip(cases, results):
        ref = Waveforms.from_plot(result.value[-1])
        t = grid(stimulus.times[-1], dt)
        current = torch.as_tensor(stimulus.sample(t), dtype=torch.float64).reshape(1, -1, 1)
        with torch.no_grad():
            solution = simulate_neurons(current, SolverOptions(dt), params)
        spice = readings(ref.time, ref.signals["v(mem)"], ref.signals["v(xneuron.x1)"])
        ours = readings(t, solution.v[0][0, :, 0].numpy(), solution.x[0][0, :, 0, 0].numpy())
        print(f"{name:<14} {compared(spice['membrane'], ours['membrane']):>36}   "
              f"{compared(spice['switch'], ours['switch']):>36}   {worst(solution.errors).ratio:7.3g}x")


if __name__ == "__main__":
    main()
