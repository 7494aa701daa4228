"""``memspice robustness``: how a trained network fares on real, imperfect chips.

The network runs on ``chips`` chips sampled from one :class:`~memspice.hardware.HardwareSpec`
(seeds ``seed``, ``seed + 1``, ...) in the torch solver, beside the ideal circuit on the same
test samples; with ``spice = K``, the first K test samples also run on the first chip in ngspice,
from that chip's netlist, and are compared with torch on the same chip (:func:`memspice.deploy.verify`).
With ``calibrate = N``, each chip's threshold DACs are first calibrated in the loop on the first N
training samples (:mod:`memspice.train.calibration`; chips without threshold trims are refused),
and it is measured before and after; the ngspice comparison runs on the calibrated chip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from memspice.data import Dataset
from memspice.defaults import EVAL_BATCH_SIZE
from memspice.deploy.verify import verify
from memspice.errors import MemspiceError
from memspice.hardware import HardwareSpec
from memspice.solver.monitor import SolutionMonitor, summary_lines
from memspice.spice.pool import Workers
from memspice.train.assess import count_test_samples, network_name
from memspice.train.calibration import EPOCHS as CALIBRATION_EPOCHS
from memspice.train.calibration import calibrate as calibrate_chip
from memspice.train.calibration import calibrated_layers
from memspice.train.loop import Trained, evaluate

#: Test samples each chip is evaluated on unless told (``memspice robustness --samples``).
SAMPLES = 1000
#: The figures of the ngspice comparison a robustness report keeps.
SPICE_KEYS = ("samples", "acc_spice", "acc_torch", "agreement", "count_match", "decided_by_spikes",
              "first_spike_error_s", "mean_error_v", "compute_s")


def robustness(trained: Trained, data: Dataset, spec: HardwareSpec, chips: int = 20, samples: int | None = SAMPLES,
               spice: int = 0, seed: int = 0, batch_size: int = EVAL_BATCH_SIZE, workers: Workers = None,
               progress: bool = True, allow_cell_writes: bool = False, timeout: float = 3600.0,
               calibrate: int = 0, calibrate_epochs: int = CALIBRATION_EPOCHS,
               calibrate_layers: Sequence[int] | None = None) -> dict:
    """Accuracy of ``trained`` on its first ``samples`` test samples (all if None) on the ideal
    circuit and on ``chips`` chips of ``spec``; ``spice`` test samples of the first chip in
    ngspice against torch. ``calibrate``: training samples each chip is calibrated on in the loop
    (``calibrate_epochs`` passes, the codes of ``calibrate_layers``, from 1, None: all; 0: none).
    Returns ``ideal_accuracy``, ``accuracy_mean``,
    ``accuracy_std``, ``accuracy_worst``, ``accuracy_best``, ``per_chip`` (seed, accuracy, share
    decided by spikes, cell margin; calibrated: also the accuracy before, the fit's figures and the
    codes), ``uncalibrated`` (the same summary before calibration, or None), ``calibration`` (its
    settings, or None), ``cell_voltages``/``cell_margin`` over every chip, and ``spice`` (the
    verification's figures, or None). A write threshold crossed on any chip raises unless
    ``allow_cell_writes`` (:mod:`memspice.solver.cells`)."""
    model = trained.model
    sizes = model.sizes
    n = count_test_samples(trained, data, samples)
    if not 0 <= spice <= len(data.test_x):
        raise MemspiceError(f"--spice {spice}: the {data.name} test set has {len(data.test_x)} samples")
    if chips < 1:
        raise MemspiceError(f"--chips {chips}: at least one chip")
    if not 0 <= calibrate <= len(data.train_x):
        raise MemspiceError(f"--calibrate {calibrate}: the {data.name} training set has {len(data.train_x)} samples")
    if isinstance(calibrate_epochs, bool) or not isinstance(calibrate_epochs, int) or calibrate_epochs < 1:
        raise MemspiceError(f"--calibrate-epochs {calibrate_epochs!r}: at least one pass")
    first = spec.sample(sizes, seed)
    model.check_chip(first)  # before the ideal circuit's evaluation, not after
    layers = calibrated_layers(calibrate_layers, len(sizes) - 1)
    if calibrate and not first.trims_thresholds:
        raise MemspiceError(f"--calibrate {calibrate}: the '{spec.name}' chips have no threshold trims to calibrate "
                            "(they need trim_bits and a threshold_spread)")
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
        chip = first if k == 0 else spec.sample(sizes, seed + k)
        result = accuracy(chip)
        row = {"chip_seed": seed + k}
        if calibrate:
            fitted = calibrate_chip(trained, chip, data.train_x[:calibrate], data.train_y[:calibrate],
                                    calibrate_epochs, monitor=monitor, progress=progress, layers=layers)
            row |= {"accuracy_uncalibrated": result["acc"], "calibration": fitted,
                    "codes": chip.describe().get("calibration")}
            result = accuracy(chip)
        per_chip.append(row | {"accuracy": result["acc"], "decided_by_spikes": result["decided_by_spikes"],
                               "cell_margin": result["cell_margin"]})
    report = {"dataset": data.name, "sizes": list(sizes), "population": trained.readout.population,
              "hardware": spec.to_dict(), "chips": chips,
              "first_seed": seed, "samples": n, "ideal_accuracy": ideal["acc"],
              **_summary([c["accuracy"] for c in per_chip]), "per_chip": per_chip,
              "uncalibrated": _summary([c["accuracy_uncalibrated"] for c in per_chip]) if calibrate else None,
              "calibration": ({"samples": calibrate, "epochs": calibrate_epochs, "layers": layers}
                              if calibrate else None),
              **monitor.to_json(), "spice": None}
    if spice:
        verified = verify(trained, data.test_x, data.test_y, np.arange(spice), workers=workers, timeout=timeout,
                          progress=progress, allow_cell_writes=allow_cell_writes, chip=first)
        report["spice"] = {key: verified[key] for key in SPICE_KEYS} | {"chip_seed": seed}
    report["wall_s"] = time.perf_counter() - started
    return report


def _summary(accuracies: list[float]) -> dict:
    """Mean, std, worst and best of per-chip accuracies."""
    a = np.asarray(accuracies)
    return {"accuracy_mean": float(a.mean()), "accuracy_std": float(a.std()), "accuracy_worst": float(a.min()),
            "accuracy_best": float(a.max())}


def robustness_table(report: dict) -> str:
    """The text summary of :func:`robustness`'s report."""
    name = report["hardware"]["name"]
    defaults = HardwareSpec().to_dict()
    effects = ", ".join(name if value is True else f"{name} {value:g}" if isinstance(value, (int, float))
                        else f"{name} {value}" for name, value in report["hardware"].items()
                        if name != "name" and value != defaults.get(name)) or "none"
    first, count = report["first_seed"], report["chips"]
    chips = (f"1 '{name}' chip (seed {first}" if count == 1 else
             f"{count} '{name}' chips (seeds {first}..{first + count - 1}")
    lines = [f"{report['samples']} {report['dataset']} test samples, {network_name(report)}, on {chips}; "
             f"{effects}), torch solver, {report['wall_s']:.0f} s",
             f"  ideal      accuracy {100 * report['ideal_accuracy']:6.2f} % (the circuit as trained)",
             f"  {'calibrated' if report.get('calibration') else 'chips':<10} accuracy "
             f"{100 * report['accuracy_mean']:6.2f} % mean, "
             f"{100 * report['accuracy_std']:.2f} std, {100 * report['accuracy_worst']:.2f} % worst, "
             f"{100 * report['accuracy_best']:.2f} % best: "
             f"{100 * (report['ideal_accuracy'] - report['accuracy_mean']):.2f} points below the ideal circuit"]
    if report.get("calibration"):
        u, c = report["uncalibrated"], report["calibration"]
        lines.append(f"  as trimmed accuracy {100 * u['accuracy_mean']:6.2f} % mean, {100 * u['accuracy_std']:.2f} "
                     f"std, {100 * u['accuracy_worst']:.2f} % worst: before each chip was calibrated in the loop on "
                     f"{c['samples']} training samples ({c['epochs']} passes; codes of layers "
                     f"{', '.join(map(str, c.get('layers') or range(1, len(report['sizes']))))})")
    lines += summary_lines(report)
    if report["spice"]:
        s = report["spice"]
        lines.append(f"  ngspice    chip seed {s['chip_seed']}, first {s['samples']} test samples from its netlist: "
                     f"accuracy {100 * s['acc_spice']:.2f} % (torch {100 * s['acc_torch']:.2f} %), agreement "
                     f"{100 * s['agreement']:.2f} %, {100 * s['count_match']:.2f} % of output spike counts equal, "
                     f"first spikes within {1e9 * s['first_spike_error_s']:.3g} ns")
    return "\n".join(lines)
