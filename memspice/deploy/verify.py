"""Run test samples of a trained network in ngspice and compare with the torch solver.

Both engines' waveforms are read the same way: spikes are upward crossings of the readout's
threshold (ngspice's on its own time points, the solver's on its grid), first-spike times are
interpolated between the two points around the crossing, the last-resort tie-break is the
trapezoidal time average of the membrane, and the prediction is
:func:`memspice.nn.readout.decide` in the readout's decision order.

A long verification can keep a journal: each sample's ngspice reading is appended to it as the
sample finishes, and a rerun takes the samples it already holds instead of simulating them again
(a sample is taken only if its netlist is the same, byte for byte: same checkpoint, sample,
synapse model and ngspice settings).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from memspice.deploy.export import VERIFY_SETTINGS, export_netlist
from memspice.errors import MemspiceError
from memspice.fileio import atomic_write_text
from memspice.netlist.circuits import membrane_node
from memspice.nn.readout import DECIDERS, decide
from memspice.signals import spike_times
from memspice.solver.accuracy import check_accuracy
from memspice.spice.pool import JobResult, raise_first_error, run_many
from memspice.spice.results import Waveforms


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


class JournalError(MemspiceError):
    """A verify journal holds a line that is not a finished sample's reading."""


def _reading_is_valid(entry: object, outputs: int) -> bool:
    """Whether a journal line holds one sample's reading of ``outputs`` output neurons."""
    if not isinstance(entry, dict):
        return False
    counts, means, firsts = entry.get("counts"), entry.get("means"), entry.get("firsts")

    def number(m: object) -> bool:
        return isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m)

    return (isinstance(entry.get("index"), int) and entry["index"] >= 0
            and isinstance(entry.get("netlist_sha256"), str)
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


def verify(trained, x: np.ndarray, y: np.ndarray, indices: np.ndarray, workers: int | None = None,
           synapse: str = "resistor", timeout: float = 3600.0, progress: bool = True,
           settings: dict | None = None, journal: str | os.PathLike | None = None, strict: bool = False) -> dict:
    """Classify the samples ``x[k]`` (labels ``y[k]``) for ``k`` in ``indices`` in ngspice (one
    process per sample, ``workers`` at a time) and with the torch solver (float64, one batch);
    returns the summary and per-sample rows. With ``journal`` (a file), finished samples are
    appended to it and the samples it already holds are not simulated again; ``resumed`` in the
    report counts them, and ``spice_s`` is this call's ngspice time only. ``local_error``: the
    torch solver's largest local error estimate per layer (it warns when one exceeds its
    tolerance; ``strict``: raises, before ngspice runs)."""
    config, model = trained.config, trained.model
    threshold = trained.readout.threshold
    t_end = config.n_steps * config.dt
    indices = np.asarray(indices, dtype=int)
    layers = len(model.sizes) - 1
    names = [f"v({membrane_node(layers, j)})" for j in range(model.sizes[-1])]

    # the torch solver first: a grid too coarse for the dynamics fails (strict) before ngspice runs
    start = time.perf_counter()
    device = next(model.parameters()).device
    original = next(model.parameters()).dtype
    fused, model.fused = model.fused, False  # one float64 batch: compiling would cost more than it saves
    model.to(torch.float64)
    try:
        with torch.no_grad():
            pixels = torch.as_tensor(x[indices], dtype=torch.float64, device=device)
            solution = model(trained.encode(pixels, torch.as_tensor(indices)))
    finally:
        model.to(original)
        model.fused = fused
    check_accuracy(solution.errors or [], strict, f"verify (torch, dt = {model.dt:g} s, {model.method})")
    torch_s = time.perf_counter() - start

    start = time.perf_counter()
    journal = Path(journal) if journal is not None else None
    saved = _read_journal(journal, model.sizes[-1]) if journal else {}
    if journal:
        journal.parent.mkdir(parents=True, exist_ok=True)
    readings: dict[int, dict] = {}
    jobs, digests = [], {}
    for k in indices:
        netlist = export_netlist(trained, x[k], int(k), int(y[k]), synapse, settings)
        digest = hashlib.sha256(netlist.encode()).hexdigest()
        if saved.get(int(k), {}).get("netlist_sha256") == digest:
            readings[int(k)] = saved[int(k)]
        else:
            jobs.append((f"sample{k}", netlist))
            digests[f"sample{k}"] = (int(k), digest)
    resumed = len(readings)

    def finished(result: JobResult) -> None:
        if not result.ok:
            return
        k, digest = digests[result.name]
        waves = Waveforms.from_plot(result.plots[-1])
        read = [_read(waves.time, waves.signals[n], threshold, t_end) for n in names]
        readings[k] = {"index": k, "netlist_sha256": digest, **_readings(read)}
        if journal:
            with open(journal, "a") as fh:  # one line per sample, on disk before the next is read
                fh.write(json.dumps(readings[k]) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    raise_first_error(run_many(jobs, workers=workers, timeout=timeout, progress=progress, on_result=finished))
    spice_s = time.perf_counter() - start

    t = solution.t.cpu().numpy()
    v_out = solution.v[-1].cpu().numpy()
    torch_readings = [_readings([_read(t, v_out[b, :, j], threshold, t_end) for j in range(v_out.shape[-1])])
                      for b in range(len(indices))]
    rows = []
    for k, seen in zip(indices, torch_readings):
        row = {"index": int(k), "label": int(y[k])}
        for engine, reading in (("spice", readings[int(k)]), ("torch", seen)):
            row.update({f"{name}_{engine}": reading[name] for name in ("counts", "firsts", "means")})
        rows.append(row)
    order = list(trained.readout.decision_order)
    rows = judge(rows, order)
    return {**summarize(rows), "wall_s": spice_s + torch_s, "spice_s": spice_s,
            "torch_s": torch_s, "resumed": resumed, "local_error": [e.to_json() for e in solution.errors or []],
            "synapse": synapse, "decision_order": order,
            "ngspice_settings": {**VERIFY_SETTINGS, **(settings or {})}, "per_sample": rows}


def _largest_time_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest ``|a - b|`` of first-spike times where both engines spike (0 if nowhere)."""
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[both] - b[both]).max(initial=0.0))


def judge(rows: list[dict], order: Sequence[str]) -> list[dict]:
    """``rows`` (one per sample: ``label`` and each engine's ``counts``, ``firsts`` (s, None if
    silent) and ``means`` (V) per output neuron) with each engine's prediction in the decision
    ``order`` (:func:`~memspice.nn.readout.decide`; ``pred_spice``,
    ``pred_torch``), what decided it (``decided_spice``, ``decided_torch``: a name from
    :data:`~memspice.nn.readout.DECIDERS`) and ``near_tie``: the ngspice decision's margin (the
    gap between the best two candidates in the reading that decided) is no larger than the
    largest ngspice/torch difference of that reading over all rows, so that the two engines
    could decide differently."""
    if not rows:
        raise ValueError("a verification report needs at least one sample")
    readings = {engine: _engine_readings(rows, engine) for engine in ("spice", "torch")}
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
_REPORT_KEYS = {"synapse": str, "ngspice_settings": dict, "per_sample": list, "wall_s": (int, float),
                "spice_s": (int, float), "torch_s": (int, float)}


def check_report(report: object, where: str) -> dict:
    """``report`` if it has the shape of a ``memspice verify --save`` report; otherwise a
    MemspiceError that names ``where`` and the first thing missing."""
    if not isinstance(report, dict):
        raise MemspiceError(f"{where}: not a report saved by `memspice verify --save` (not a JSON object)")
    for key, kind in _REPORT_KEYS.items():
        if not isinstance(report.get(key), kind):
            raise MemspiceError(f"{where}: not a report saved by `memspice verify --save` ({key!r} missing or "
                                "of the wrong type)")
    for k, row in enumerate(report["per_sample"]):
        if not isinstance(row, dict) or any(key not in row for key in _ROW_KEYS):
            raise MemspiceError(f"{where}: per_sample[{k}] lacks one of {', '.join(_ROW_KEYS)}")
        if not all(isinstance(row[key], int) for key in _ROW_KEYS[:2]) or \
                not all(isinstance(row[key], list) for key in _ROW_KEYS[2:]):
            raise MemspiceError(f"{where}: per_sample[{k}] holds values of the wrong type")
    order = report.get("decision_order", ["count"])
    if not isinstance(order, list) or not order or not set(order) <= {"count", "first-spike"}:
        raise MemspiceError(f"{where}: 'decision_order' must list 'count' and/or 'first-spike'")
    widths = {len(row[key]) for row in report["per_sample"] for key in _ROW_KEYS[2:]}
    if len(widths) > 1:
        raise MemspiceError(f"{where}: per_sample rows disagree on the number of output neurons")
    return report


def merge(reports: list[dict]) -> dict:
    """One report from reports of disjoint sample ranges of the same checkpoint (``memspice
    verify --offset K --save`` run on several machines): figures recomputed over all samples,
    times summed (the compute spent, not the elapsed time)."""
    if not reports:
        raise ValueError("nothing to merge")
    for key in ("synapse", "ngspice_settings", "decision_order"):
        if any(r.get(key) != reports[0].get(key) for r in reports):
            raise ValueError(f"the reports differ in {key}: they are not parts of one verification")
    rows = sorted((row for r in reports for row in r["per_sample"]), key=lambda row: row["index"])
    indices = [row["index"] for row in rows]
    if len(set(indices)) != len(indices):
        raise ValueError("the reports overlap: a test sample appears twice")
    times = {k: sum(r[k] for r in reports) for k in ("wall_s", "spice_s", "torch_s")}
    resumed = sum(r.get("resumed", 0) for r in reports)
    order = reports[0].get("decision_order", ["count"])  # reports saved before it was kept: count, then membrane
    rows = judge(rows, order)
    worst = {}  # per layer, the largest local error estimate of any part
    for error in (e for r in reports for e in r.get("local_error", [])):
        if error["layer"] not in worst or error["ratio"] > worst[error["layer"]]["ratio"]:
            worst[error["layer"]] = error
    return {**summarize(rows), **times, "resumed": resumed, "synapse": reports[0]["synapse"], "decision_order": order,
            "ngspice_settings": reports[0]["ngspice_settings"], "parts": len(reports),
            "local_error": [worst[k] for k in sorted(worst)], "per_sample": rows}
