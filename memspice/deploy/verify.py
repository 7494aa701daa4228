"""Run test samples of a trained network in ngspice and compare with the torch solver.

Both engines' waveforms are read the same way: spikes are upward crossings of the readout's
threshold (ngspice's on its own time points, the solver's on its grid), the tie-break is the
trapezoidal time average of the membrane, and the prediction is
:func:`memspice.nn.readout.predict`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from memspice.deploy.export import VERIFY_SETTINGS, export_netlist
from memspice.netlist.circuits import membrane_node
from memspice.nn.readout import predict
from memspice.signals import spike_times
from memspice.spice.pool import raise_first_error, run_many
from memspice.spice.results import Waveforms


def _read(t: np.ndarray, v: np.ndarray, threshold: float, t_end: float) -> tuple[int, float]:
    """Spike count and time-averaged membrane (V) of one trace over ``[0, t_end]``."""
    keep = t <= t_end * (1 + 1e-9)
    t, v = t[keep], v[keep]
    mean = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)) / (t[-1] - t[0]))
    return len(spike_times(t, v, threshold)), mean


def verify(trained, x: np.ndarray, y: np.ndarray, indices: np.ndarray, workers: int | None = None,
           synapse: str = "resistor", timeout: float = 3600.0, progress: bool = True,
           settings: dict | None = None) -> dict:
    """Classify the samples ``x[k]`` (labels ``y[k]``) for ``k`` in ``indices`` in ngspice (one
    process per sample, ``workers`` at a time) and with the torch solver (float64, one batch);
    returns the summary and per-sample rows."""
    config, model = trained.config, trained.model
    threshold = trained.readout.threshold
    t_end = config.n_steps * config.dt
    indices = np.asarray(indices, dtype=int)

    start = time.perf_counter()
    jobs = [(f"sample{k}", export_netlist(trained, x[k], int(k), int(y[k]), synapse, settings)) for k in indices]
    results = run_many(jobs, workers=workers, timeout=timeout, progress=progress)
    raise_first_error(results)
    spice_s = time.perf_counter() - start

    layers = len(model.sizes) - 1
    names = [f"v({membrane_node(layers, j)})" for j in range(model.sizes[-1])]
    spice_counts, spice_means = [], []
    for result in results:
        waves = Waveforms.from_plot(result.plots[-1])
        read = [_read(waves.time, waves.signals[n], threshold, t_end) for n in names]
        spice_counts.append([c for c, _ in read])
        spice_means.append([m for _, m in read])

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
    torch_s = time.perf_counter() - start
    t = solution.t.cpu().numpy()
    v_out = solution.v[-1].cpu().numpy()
    torch_read = [[_read(t, v_out[b, :, j], threshold, t_end) for j in range(v_out.shape[-1])]
                  for b in range(len(indices))]
    torch_counts = np.array([[c for c, _ in row] for row in torch_read])
    torch_means = np.array([[m for _, m in row] for row in torch_read])
    spice_counts, spice_means = np.array(spice_counts), np.array(spice_means)

    pred_spice = predict(spice_counts, spice_means)
    pred_torch = predict(torch_counts, torch_means)
    labels = np.asarray(y[indices])
    rows = [{"index": int(k), "label": int(lab), "pred_spice": int(ps), "pred_torch": int(pt),
             "counts_spice": sc.tolist(), "counts_torch": tc.tolist()}
            for k, lab, ps, pt, sc, tc in zip(indices, labels, pred_spice, pred_torch, spice_counts, torch_counts)]
    return {**summarize(rows), "wall_s": spice_s + torch_s, "spice_s": spice_s, "torch_s": torch_s,
            "synapse": synapse, "ngspice_settings": {**VERIFY_SETTINGS, **(settings or {})}, "per_sample": rows}


def summarize(rows: list[dict]) -> dict:
    """The figures of a report from its per-sample rows: ``samples``, ``acc_spice``,
    ``acc_torch``, ``agreement``, ``count_match`` and ``decided_by_count`` (the share of ngspice
    predictions that need no tie-break: one neuron has the most spikes)."""
    if not rows:
        raise ValueError("a verification report needs at least one sample")
    keys = ("label", "pred_spice", "pred_torch", "counts_spice", "counts_torch")
    labels, pred_spice, pred_torch, counts_spice, counts_torch = (np.array([r[k] for r in rows]) for k in keys)
    top_two = np.sort(counts_spice, axis=1)[:, -2:]
    return {"samples": len(rows), "acc_spice": float(np.mean(pred_spice == labels)),
            "acc_torch": float(np.mean(pred_torch == labels)), "agreement": float(np.mean(pred_spice == pred_torch)),
            "count_match": float(np.mean(counts_spice == counts_torch)),
            "decided_by_count": float(np.mean(top_two[:, 1] > top_two[:, 0]))}


def merge(reports: list[dict]) -> dict:
    """One report from reports of disjoint sample ranges of the same checkpoint (``memspice
    verify --offset K --save`` run on several machines): figures recomputed over all samples,
    times summed (the compute spent, not the elapsed time)."""
    if not reports:
        raise ValueError("nothing to merge")
    for key in ("synapse", "ngspice_settings"):
        if any(r[key] != reports[0][key] for r in reports):
            raise ValueError(f"the reports differ in {key}: they are not parts of one verification")
    rows = sorted((row for r in reports for row in r["per_sample"]), key=lambda row: row["index"])
    indices = [row["index"] for row in rows]
    if len(set(indices)) != len(indices):
        raise ValueError("the reports overlap: a test sample appears twice")
    times = {k: sum(r[k] for r in reports) for k in ("wall_s", "spice_s", "torch_s")}
    return {**summarize(rows), **times, "synapse": reports[0]["synapse"],
            "ngspice_settings": reports[0]["ngspice_settings"], "parts": len(reports), "per_sample": rows}
