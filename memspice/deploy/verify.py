"""Run test samples of a trained network in ngspice and compare with the torch solver.

Both engines' waveforms are read the same way: spikes are upward crossings of the readout's
threshold (ngspice's on its own time points, the solver's on its grid), first-spike times are
interpolated between the two points around the crossing, the last-resort tie-break is the
trapezoidal time average of the membrane, and the prediction is
:func:`memspice.nn.readout.decide` in the readout's decision order.

A long verification can keep a journal: each sample's ngspice reading is appended to it as the
sample finishes, and a rerun takes the samples it already holds instead of simulating them again
(a sample is taken only if it was read from the same netlist: same network and weights, synapse
model, ngspice settings and readout; :class:`SampleRun` ``.key``).

The ngspice jobs run in parallel processes here or on a Dask cluster
(:mod:`memspice.spice.cluster`); each builds its own sample's netlist where it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from memspice.circuit import PULSE_TAU
from memspice.deploy.export import VERIFY_SETTINGS, export_netlist
from memspice.errors import ConfigError, JournalError, MemspiceError
from memspice.fileio import atomic_write_text
from memspice.hardware import Chip
from memspice.netlist.circuits import membrane_node
from memspice.nn.readout import DECIDERS, decide, pool_readings
from memspice.signals import spike_times
from memspice.solver.cells import CellMonitor, CellVoltage
from memspice.solver.monitor import SolutionMonitor
from memspice.spice.pool import JobResult, Workers, raise_first_error, run_tasks
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist


def _read(t: np.ndarray, v: np.ndarray, threshold: float, t_end: float) -> tuple[int, float | None, float]:
    """Spike count, first-spike time (s; None if none) and time-averaged membrane (V) of one
    trace over ``[0, t_end]``."""
    keep = t <= t_end * (1 + 1e-9)
    t, v = t[keep], v[keep]
    mean = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)) / (t[-1] - t[0]))
    spikes = spike_times(t, v, threshold)
    return len(spikes), float(spikes[0]) if len(spikes) else None, mean


def _readings(read: list[tuple[int, float | None, float]]) -> dict:
    """One sample's readings of its output neurons (what a journal line and a report row keep)."""
    return {"counts": [c for c, _, _ in read], "firsts": [f for _, f, _ in read], "means": [m for _, _, m in read]}


def _engine_readings(rows: list[dict], engine: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One engine's spike counts, first-spike times (s, ``inf`` for a silent neuron: None in JSON,
    and in reports saved before they were kept) and mean membranes (V), ``(samples, n)``."""
    counts = np.array([r[f"counts_{engine}"] for r in rows], dtype=float)
    firsts = np.array([[np.inf if f is None else f for f in r.get(f"firsts_{engine}", [None] * counts.shape[1])]
                       for r in rows], dtype=float)
    return counts, firsts, np.array([r[f"means_{engine}"] for r in rows], dtype=float)


#: The training options that shape what a network computes from a test sample (input encoding,
#: window, readout); the others (learning rate, epochs, threads, ...) shaped only its training.
_DEFINING_OPTIONS = ("dataset", "encoder", "v_low", "v_high", "seed", "dt", "window", "readout", "readout_scale",
                     "readout_width")


#: Module arguments added since the first reports were written, left out of a network's digest at
#: these values so that the networks those reports name keep their digests.
_LATER_ARGUMENTS = {"neuron_model": "mif", "buffer_knee": None, "pulse_gain": None, "pulse_tau": PULSE_TAU,
                    "buffer_rail": None}
#: The same for the defining training options added since.
_LATER_OPTIONS = {"population": 1}


def network_sha256(state: dict) -> str:
    """A digest of a network (:meth:`~memspice.train.loop.Trained.state`): the options that shape
    what it computes from a sample, its module arguments and every weight, in a fixed order; equal
    for equal networks, wherever they were saved and however they were trained."""
    digest = hashlib.sha256()
    defining = {k: state["config"].get(k) for k in _DEFINING_OPTIONS}
    defining |= {k: v for k, v in state["config"].items() if _LATER_OPTIONS.get(k, v) != v}
    arguments = {k: v for k, v in state["model_config"].items() if _LATER_ARGUMENTS.get(k, ...) != v}
    digest.update(json.dumps([defining, arguments], sort_keys=True).encode())
    for name in sorted(state["model"]):
        tensor = state["model"][name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class SampleRun:
    """What simulating any test sample of one trained network in ngspice needs besides the
    sample: the network, the synapse model, ngspice settings and the timeout per sample (s).

    ``key`` names the netlists these make (network, synapse model, settings, readout): a journal
    line with another key is not this run's. Picklable: a Dask worker receives the network's
    state once and rebuilds the network there (:attr:`trained`), so that each sample's netlist
    (9 MB for 784-128-10) is made where it is simulated."""

    def __init__(self, trained, synapse: str, settings: dict | None, timeout: float, chip: Chip | None = None):
        trained.check_settings()
        self.synapse, self.settings, self.timeout = synapse, {**VERIFY_SETTINGS, **(settings or {})}, timeout
        self.state = trained.state()
        self.network_sha256 = network_sha256(self.state)
        self.hardware = chip.describe() if chip is not None else None
        identity = [self.network_sha256, synapse, self.settings, trained.readout.threshold]
        if chip is not None:
            identity.append(self.hardware)
        self.key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        self._trained, self._chip = trained, chip

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_trained": None, "_chip": None}

    @property
    def chip(self) -> Chip | None:
        """The chip the samples run on (rebuilt from its description on first use in a worker process)."""
        if self._chip is None and self.hardware is not None:
            self._chip = Chip.from_description(self.hardware)
        return self._chip

    @property
    def trained(self):
        """The network (rebuilt from its state on first use in a worker process)."""
        if self._trained is None:
            from memspice.train.loop import trained_from_state

            self._trained = trained_from_state(self.state, "the network sent to this worker")
        return self._trained


def spice_reading(run: SampleRun, index: int, pixels: np.ndarray, label: int,
                  cancel: threading.Event | None = None) -> dict:
    """Simulate test sample ``index`` (``pixels``, ``label``) in ngspice and read its output
    neurons: the netlist is made here, simulated and dropped, so memory stays flat whatever the
    number of samples. A job of :func:`memspice.spice.pool.run_tasks` (threads or Dask workers)."""
    trained = run.trained
    layers = len(trained.model.sizes) - 1
    netlist = export_netlist(trained, pixels, index, label, run.synapse, run.settings, chip=run.chip)
    plots = run_netlist(netlist, timeout=run.timeout, name=f"sample{index}", cancel=cancel)
    waves = Waveforms.from_plot(plots[-1])
    read = [_read(waves.time, waves.signals[f"v({membrane_node(layers, j)})"], trained.readout.threshold,
                  trained.t_end)
            for j in range(trained.model.sizes[-1])]
    return {"index": int(index), "run": run.key, **_readings(read)}


def _reading_is_valid(entry: object, outputs: int) -> bool:
    """Whether a journal line holds one sample's reading of ``outputs`` output neurons."""
    if not isinstance(entry, dict):
        return False
    counts, means, firsts = entry.get("counts"), entry.get("means"), entry.get("firsts")

    def number(m: object) -> bool:
        return isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m)

    return (isinstance(entry.get("index"), int) and entry["index"] >= 0
            and isinstance(entry.get("run"), str) and number(entry.get("spice_s"))
            and isinstance(counts, list) and len(counts) == outputs
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
            and isinstance(means, list) and len(means) == outputs and all(number(m) for m in means)
            and isinstance(firsts, list) and len(firsts) == outputs
            and all(f is None or number(f) for f in firsts))


def _read_journal(path: Path, outputs: int) -> dict[int, dict]:
    """The readings a journal holds, by sample index. Its last line may be cut short by a crash
    (dropped from the file, so that the next line starts clean); any other line that is not a
    reading of ``outputs`` neurons is a JournalError."""
    readings = {}
    if not path.is_file():
        return readings
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            if number == len(lines):  # the line being written when the run stopped
                atomic_write_text(path, "".join(f"{kept}\n" for kept in lines[:-1]))
                continue
            entry = None
        if not _reading_is_valid(entry, outputs):
            raise JournalError(f"{path}, line {number}: not a finished sample of this network's verification; "
                               f"delete {path} to verify every sample again")
        readings[entry["index"]] = entry
    return readings


def _torch_readings(trained, x: np.ndarray, indices: np.ndarray, monitor: SolutionMonitor,
                    chip: Chip | None = None) -> list[dict]:
    """The torch solver's readings of the samples ``x[indices]`` (float64, one batch), its solution
    shown to ``monitor``: a grid too coarse for the dynamics (strictly) or cells beyond their write
    thresholds fail here, before ngspice runs."""
    model = trained.model
    device = next(model.parameters()).device
    original = next(model.parameters()).dtype
    solver = model.solver
    # one float64 batch: compiling would cost more than it saves, but pulse extenders need the fused run
    model.solver = solver.replace(fused=model.buffer.pulse is not None)
    model.to(torch.float64)
    try:
        with torch.no_grad():
            pixels = torch.as_tensor(x[indices], dtype=torch.float64, device=device)
            samples = torch.as_tensor(indices)
            solution = model(trained.encode(pixels, samples), chip=chip, samples=samples)
    finally:
        model.to(original)
        model.solver = solver
    monitor.observe(solution)
    t = solution.t.cpu().numpy()
    v_out = solution.v[-1].cpu().numpy()
    threshold = trained.readout.threshold
    return [_readings([_read(t, v_out[b, :, j], threshold, trained.t_end) for j in range(v_out.shape[-1])])
            for b in range(len(indices))]


def verify(trained, x: np.ndarray, y: np.ndarray, indices: np.ndarray, workers: Workers = None,
           synapse: str = "resistor", timeout: float = 3600.0, progress: bool = True,
           settings: dict | None = None, journal: str | os.PathLike | None = None, strict: bool = False,
           requested: Sequence[int] | None = None, part: tuple[int, int] | None = None,
           allow_cell_writes: bool = False, chip: Chip | None = None) -> dict:
    """Classify the samples ``x[k]`` (labels ``y[k]``) for ``k`` in ``indices`` in ngspice and
    with the torch solver (float64, one batch); returns the summary and per-sample rows.

    ngspice runs ``workers`` processes at a time here, or on the Dask workers of ``workers`` when
    it is a :class:`memspice.spice.cluster.Cluster`; each sample's netlist is made by the job
    that simulates it. dt, the window and every circuit setting come from the network itself (a
    training configuration that disagrees is refused). With ``journal`` (a file), finished
    samples are appended to it and the samples it already holds are not simulated again
    (``resumed`` counts them). ``requested``: every index of the verification this call is a
    ``part`` ``(K, N)`` of (default: ``indices``), kept in the report so that a merge can say
    which are missing. Times: ``elapsed_s`` (this call), ``compute_s`` (torch plus every
    sample's ngspice run, resumed ones included). ``local_error``: the torch solver's largest
    local error estimate per layer (it warns when one exceeds its tolerance; ``strict``: raises,
    before ngspice runs); ``cell_voltages``, ``cell_margin``: the extreme voltages across the torch
    solution's synapse cells (a write threshold crossed raises before ngspice runs, unless
    ``allow_cell_writes``; :mod:`memspice.solver.cells`). ``chip``: both engines run the network
    as that chip holds it (:mod:`memspice.hardware`; ``hardware`` in the report)."""
    started = time.perf_counter()
    indices = np.asarray(indices, dtype=int)
    run = SampleRun(trained, synapse, settings, timeout, chip)
    model = trained.model

    start = time.perf_counter()
    monitor = SolutionMonitor(strict, allow_cell_writes, f"verify (torch, dt = {model.dt:g} s, {model.method})")
    torch_readings = _torch_readings(trained, x, indices, monitor, chip)
    torch_s = time.perf_counter() - start

    journal = Path(journal) if journal is not None else None
    saved = _read_journal(journal, model.sizes[-1]) if journal else {}
    if journal:
        journal.parent.mkdir(parents=True, exist_ok=True)
    readings = {int(k): saved[int(k)] for k in indices if saved.get(int(k), {}).get("run") == run.key}
    resumed = len(readings)
    jobs = [(f"sample{k}", (int(k), np.asarray(x[k]), int(y[k]))) for k in indices if int(k) not in readings]

    def finished(result: JobResult) -> None:
        if not result.ok:
            return
        reading = {**result.value, "spice_s": result.wall_s}
        readings[reading["index"]] = reading
        if journal:
            with open(journal, "a") as fh:  # one line per sample, on disk before the next is read
                fh.write(json.dumps(reading) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    raise_first_error(run_tasks(spice_reading, jobs, workers, progress, finished, shared=run, desc="ngspice samples"))

    rows = []
    for k, seen in zip(indices, torch_readings):
        row = {"index": int(k), "label": int(y[k]), "spice_s": readings[int(k)]["spice_s"]}
        for engine, reading in (("spice", readings[int(k)]), ("torch", seen)):
            row.update({f"{name}_{engine}": reading[name] for name in ("counts", "firsts", "means")})
        rows.append(row)
    order = list(trained.readout.decision_order)
    rows = judge(rows, order, trained.readout.population, trained.t_end)
    return {**summarize(rows), "checkpoint_sha256": trained.sha256, "network_sha256": run.network_sha256,
            "requested": sorted(int(k) for k in (indices if requested is None else requested)),
            "part": list(part) if part else None, "missing": [],
            "elapsed_s": time.perf_counter() - started, "compute_s": torch_s + sum(r["spice_s"] for r in rows),
            "torch_s": torch_s, "resumed": resumed, **monitor.to_json(),
            **_settings(trained, run), "per_sample": rows}


def _settings(trained, run: SampleRun) -> dict:
    """The settings two parts of one verification share (a merge refuses parts that differ)."""
    return {"synapse": run.synapse, "hardware": run.hardware, "decision_order": list(trained.readout.decision_order),
            "population": trained.readout.population,
            "ngspice_settings": run.settings, "dt": trained.model.dt, "n_steps": trained.config.n_steps,
            "method": trained.model.method, "threshold": trained.readout.threshold}


def _largest_time_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest ``|a - b|`` of first-spike times where both engines spike (0 if nowhere)."""
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[both] - b[both]).max(initial=0.0))


def judge(rows: list[dict], order: Sequence[str], population: int = 1, window: float = math.inf) -> list[dict]:
    """``rows`` (one per sample: ``label`` and each engine's ``counts``, ``firsts`` (s, None if
    silent) and ``means`` (V) per output neuron) with each engine's prediction in the decision
    ``order`` (:func:`~memspice.nn.readout.decide`; ``pred_spice``,
    ``pred_torch``), what decided it (``decided_spice``, ``decided_torch``: a name from
    :data:`~memspice.nn.readout.DECIDERS`) and ``near_tie``: the ngspice decision's margin (the
    gap between the best two candidates in the reading that decided) is no larger than the
    largest ngspice/torch difference of that reading over all rows, so that the two engines
    could decide differently. ``population``: output neurons per class, ``window`` (s) the end of
    the window (a silent neuron's first-spike time in its class's mean;
    :func:`~memspice.nn.readout.pool_readings`): the decisions and margins are the classes'."""
    if not rows:
        raise ConfigError("a verification report needs at least one sample")
    readings = {engine: pool_readings(*_engine_readings(rows, engine), population, window)
                for engine in ("spice", "torch")}
    decisions = {engine: decide(*readings[engine], order) for engine in readings}
    largest = {"count": np.abs(readings["spice"][0] - readings["torch"][0]).max(),
               "first-spike": _largest_time_difference(readings["spice"][1], readings["torch"][1]),
               "membrane": np.abs(readings["spice"][2] - readings["torch"][2]).max()}
    (pred_spice, by_spice, margin), (pred_torch, by_torch, _) = decisions["spice"], decisions["torch"]
    return [{**row, "pred_spice": int(pred_spice[k]), "pred_torch": int(pred_torch[k]),
             "decided_spice": DECIDERS[by_spice[k]], "decided_torch": DECIDERS[by_torch[k]],
             "near_tie": bool(margin[k] <= largest[DECIDERS[by_spice[k]]])} for k, row in enumerate(rows)]


def summarize(rows: list[dict]) -> dict:
    """The figures of a report from its per-sample rows, judged (:func:`judge`): ``samples``,
    ``acc_spice``, ``acc_torch``, ``agreement``, ``count_match``, ``decided_by_spikes`` (the
    share of ngspice predictions made by a spike reading, count or first spike, without the
    membrane tie-break), ``decided_by_spikes_torch``, ``near_ties`` (samples whose ngspice
    decision is within the engines' largest difference of going the other way), ``mean_error_v``
    (the largest difference between ngspice's and torch's time-averaged output membranes, V) and
    ``first_spike_error_s`` (the same for first-spike times where both engines spike, s)."""
    labels, pred_spice, pred_torch = (np.array([r[k] for r in rows]) for k in ("label", "pred_spice", "pred_torch"))
    (counts_spice, firsts_spice, means_spice), (counts_torch, firsts_torch, means_torch) = (
        _engine_readings(rows, engine) for engine in ("spice", "torch"))
    return {"samples": len(rows), "acc_spice": float(np.mean(pred_spice == labels)),
            "acc_torch": float(np.mean(pred_torch == labels)), "agreement": float(np.mean(pred_spice == pred_torch)),
            "count_match": float(np.mean(counts_spice == counts_torch)),
            "decided_by_spikes": float(np.mean([r["decided_spice"] != "membrane" for r in rows])),
            "decided_by_spikes_torch": float(np.mean([r["decided_torch"] != "membrane" for r in rows])),
            "near_ties": int(sum(r["near_tie"] for r in rows)),
            "mean_error_v": float(np.abs(means_spice - means_torch).max()),
            "first_spike_error_s": _largest_time_difference(firsts_spice, firsts_torch)}


_ROW_KEYS = ("index", "label", "counts_spice", "counts_torch", "means_spice", "means_torch")
_REPORT_KEYS = {"synapse": str, "ngspice_settings": dict, "per_sample": list, "elapsed_s": (int, float),
                "compute_s": (int, float), "torch_s": (int, float), "network_sha256": str, "requested": list,
                "dt": float, "n_steps": int, "method": str}
#: What every part of one verification shares: a merge refuses parts that differ in any.
_SHARED = ("network_sha256", "checkpoint_sha256", "synapse", "hardware", "ngspice_settings", "decision_order",
           "population", "dt", "n_steps", "method", "threshold")


def check_report(report: object, where: str) -> dict:
    """``report`` if it has the shape of a ``memspice verify --save`` report; otherwise a
    MemspiceError that names ``where`` and the first thing missing."""
    if not isinstance(report, dict):
        raise MemspiceError(f"{where}: not a report saved by `memspice verify --save` (not a JSON object)")
    for key, kind in _REPORT_KEYS.items():
        if not isinstance(report.get(key), kind):
            raise MemspiceError(f"{where}: not a report saved by `memspice verify --save` of this version ({key!r} "
                                "missing or of the wrong type); verify that part again")
    for k, row in enumerate(report["per_sample"]):
        if not isinstance(row, dict) or any(key not in row for key in _ROW_KEYS):
            raise MemspiceError(f"{where}: per_sample[{k}] lacks one of {', '.join(_ROW_KEYS)}")
        if not all(isinstance(row[key], int) for key in _ROW_KEYS[:2]) or \
                not all(isinstance(row[key], list) for key in _ROW_KEYS[2:]):
            raise MemspiceError(f"{where}: per_sample[{k}] holds values of the wrong type")
    if not all(isinstance(k, int) and k >= 0 for k in report["requested"]):
        raise MemspiceError(f"{where}: 'requested' must list sample indices")
    order = report.get("decision_order")
    if not isinstance(order, list) or not order or not set(order) <= {"count", "first-spike"}:
        raise MemspiceError(f"{where}: 'decision_order' must list 'count' and/or 'first-spike'")
    widths = {len(row[key]) for row in report["per_sample"] for key in _ROW_KEYS[2:]}
    if len(widths) > 1:
        raise MemspiceError(f"{where}: per_sample rows disagree on the number of output neurons")
    return report


def merge(reports: list[dict], names: Sequence[str] | None = None) -> dict:
    """One report from reports of disjoint samples of one verification (``memspice verify
    --part K/N --save`` or ``--offset``, run on several machines): figures recomputed over all
    samples. Parts of another network or with other settings are refused (naming both values);
    ``missing`` lists the requested samples no part holds. Times: ``compute_s`` summed,
    ``elapsed_s`` the longest part's (parts run side by side)."""
    if not reports:
        raise ConfigError("nothing to merge")
    names = list(names) if names is not None else [f"part {k + 1}" for k in range(len(reports))]
    for key in _SHARED:
        for name, report in zip(names[1:], reports[1:]):
            if report.get(key) != reports[0].get(key):
                raise MemspiceError(f"{names[0]} and {name} differ in {key} ({reports[0].get(key)!r} vs "
                                    f"{report.get(key)!r}): they are not parts of one verification")
    rows = sorted((row for r in reports for row in r["per_sample"]), key=lambda row: row["index"])
    indices = [row["index"] for row in rows]
    if len(set(indices)) != len(indices):
        twice = sorted({k for k in indices if indices.count(k) > 1})
        raise MemspiceError(f"the reports overlap: test samples {index_ranges(twice)} appear in more than one")
    requested = sorted({k for r in reports for k in r["requested"]})
    missing = sorted(set(requested) - set(indices))
    rows = judge(rows, reports[0]["decision_order"], reports[0].get("population", 1),  # older reports: 1
                 reports[0]["dt"] * reports[0]["n_steps"])
    worst = {}  # per layer, the largest local error estimate of any part
    for error in (e for r in reports for e in r.get("local_error", [])):
        if error["layer"] not in worst or error["ratio"] > worst[error["layer"]]["ratio"]:
            worst[error["layer"]] = error
    cells = CellMonitor()  # per layer, the extreme cell voltages of all parts
    cells.record([CellVoltage(**c) for r in reports for c in r.get("cell_voltages", [])])
    return {**summarize(rows), **{key: reports[0].get(key) for key in _SHARED}, "requested": requested,
            "part": None, "missing": missing, "elapsed_s": max(r["elapsed_s"] for r in reports),
            "compute_s": sum(r["compute_s"] for r in reports), "torch_s": sum(r["torch_s"] for r in reports),
            "resumed": sum(r.get("resumed", 0) for r in reports), "parts": len(reports),
            "error_ratio": max((e["ratio"] for e in worst.values()), default=None),
            "local_error": [worst[k] for k in sorted(worst)], "cell_voltages": cells.to_json(),
            "cell_margin": cells.margin, "per_sample": rows}


def index_ranges(indices: Sequence[int]) -> str:
    """Sorted indices as ranges: ``0-3, 7, 9-10``."""
    out, start = [], None
    for k, index in enumerate(indices):
        start = index if start is None else start
        if k + 1 == len(indices) or indices[k + 1] != index + 1:
            out.append(f"{start}" if start == index else f"{start}-{index}")
            start = None
    return ", ".join(out)
