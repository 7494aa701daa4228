"""``memspice robustness``: how a trained network fares on real, imperfect chips.

The network runs on ``chips`` chips sampled from one :class:`~memspice.hardware.HardwareSpec`
(seeds ``seed``, ``seed + 1``, ...) in the torch solver, beside the ideal circuit on the same
test samples; with ``spice = K``, the first K test samples also run on the first chip in ngspice,
from that chip's netlist, and are compared with torch on the same chip (:func:`memspice.deploy.verify`).
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from memspice.data import Dataset
from memspice.deploy.verify import verify
from memspice.errors import MemspiceError
from memspice.hardware import HardwareSpec
from memspice.solver.monitor import SolutionMonitor, summary_lines
from memspice.spice.pool import Workers
from memspice.train.assess import count_test_samples
from memspice.train.loop import Trained, evaluate

#: Test samples each chip is evaluated on unless told (``memspice robustness --samples``).
SAMPLES = 1000
#: The figures of the ngspice comparison a robustness report keeps.
SPICE_KEYS = ("samples", "acc_spice", "acc_torch", "agreement", "count_match", "decided_by_spikes",
              "first_spike_error_s", "mean_error_v", "compute_s")


def robustness(trained: Trained, data: Dataset, spec: HardwareSpec, chips: int = 20, samples: int | None = SAMPLES,
               spice: int = 0, seed: int = 0, batch_size: int = 256, workers: Workers = None,
               progress: bool = True, allow_cell_writes: bool = False, timeout: float = 3600.0) -> dict:
    """Accuracy of ``trained`` on its first ``samples`` test samples (all if None) on the ideal
    circuit and on ``chips`` chips of ``spec``; ``spice`` test samples of the first chip in
    ngspice against torch. Returns ``ideal_accuracy``, ``accuracy_mean``, ``accuracy_std``,
    ``accuracy_worst``, ``accuracy_best``, ``per_chip`` (seed, accuracy, share decided by spikes,
    cell margin), ``cell_voltages``/``cell_margin`` over every chip, and ``spice`` (the
    verification's figures, or None). A write threshold crossed on any chip raises unless
    ``allow_cell_writes`` (:mod:`memspice.solver.cells`)."""
    model = trained.model
    sizes = model.sizes
    n = count_test_samples(trained, data, samples)
    if not 0 <= spice <= len(data.test_x):
        raise MemspiceError(f"--spice {spice}: the {data.name} test set has {len(data.test_x)} samples")
    if chips < 1:
        raise MemspiceError(f"--chips {chips}: at least one chip")
    model.check_chip(spec.sample(sizes, seed))  # before the ideal circuit's evaluation, not after
    started = time.perf_counter()
    x, y = data.test_x[:n], data.test_y[:n]
    dtype = next(model.parameters()).dtype
    context = f"robustness on {spec.name} chips (dt = {model.dt:g} s, {model.method})"
    monitor = SolutionMonitor(allow_cell_writes=allow_cell_writes, context=context)

    def accuracy(chip) -> dict:
        return evaluate(model, trained.readout, trained.encoder, x, y, trained.config.n_steps, batch_size, dtype,
                        monitor=monitor, chip=chip)

    ideal = accuracy(None)
    per_chip = []
    for k in tqdm(range(chips), desc=f"{spec.name} chips", unit="chip", disable=not progress):
        result = accuracy(spec.sample(sizes, seed + k))
        per_chip.append({"chip_seed": seed + k, "accuracy": result["acc"],
                         "decided_by_spikes": result["decided_by_spikes"], "cell_margin": result["cell_margin"]})
    accuracies = np.array([c["accuracy"] for c in per_chip])
    report = {"dataset": data.name, "sizes": list(sizes), "hardware": spec.to_dict(), "chips": chips,
              "first_seed": seed, "samples": n, "ideal_accuracy": ideal["acc"],
              "accuracy_mean": float(accuracies.mean()), "accuracy_std": float(accuracies.std()),
              "accuracy_worst": float(accuracies.min()), "accuracy_best": float(accuracies.max()),
              "per_chip": per_chip, **monitor.to_json(), "spice": None}
    if spice:
        verified = verify(trained, data.test_x, data.test_y, np.arange(spice), workers=workers, timeout=timeout,
                          progress=progress, allow_cell_writes=allow_cell_writes, chip=spec.sample(sizes, seed))
        report["spice"] = {key: verified[key] for key in SPICE_KEYS} | {"chip_seed": seed}
    report["wall_s"] = time.perf_counter() - started
    return report


def robustness_table(report: dict) -> str:
    """The text summary of :func:`robustness`'s report."""
    name = report["hardware"]["name"]
    effects = ", ".join(f"{name} {value:g}" for name, value in report["hardware"].items()
                        if name != "name" and value not in (None, 0, 0.0)) or "none"
    first, count = report["first_seed"], report["chips"]
    chips = (f"1 '{name}' chip (seed {first}" if count == 1 else
             f"{count} '{name}' chips (seeds {first}..{first + count - 1}")
    lines = [f"{report['samples']} {report['dataset']} test samples, {'-'.join(map(str, report['sizes']))} network, "
             f"on {chips}; {effects}), torch solver, {report['wall_s']:.0f} s",
             f"  ideal      accuracy {100 * report['ideal_accuracy']:6.2f} % (the circuit as trained)",
             f"  chips      accuracy {100 * report['accuracy_mean']:6.2f} % mean, "
             f"{100 * report['accuracy_std']:.2f} std, {100 * report['accuracy_worst']:.2f} % worst, "
             f"{100 * report['accuracy_best']:.2f} % best: "
             f"{100 * (report['ideal_accuracy'] - report['accuracy_mean']):.2f} points below the ideal circuit"]
    lines += summary_lines(report)
    if report["spice"]:
        s = report["spice"]
        lines.append(f"  ngspice    chip seed {s['chip_seed']}, first {s['samples']} test samples from its netlist: "
                     f"accuracy {100 * s['acc_spice']:.2f} % (torch {100 * s['acc_torch']:.2f} %), agreement "
                     f"{100 * s['agreement']:.2f} %, {100 * s['count_match']:.2f} % of output spike counts equal, "
                     f"first spikes within {1e9 * s['first_spike_error_s']:.3g} ns")
    return "\n".join(lines)
