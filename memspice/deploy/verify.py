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
    model.to(torch.float64)
    try:
        with torch.no_grad():
            pixels = torch.as_tensor(x[indices], dtype=torch.float64, device=device)
            solution = model(trained.encode(pixels, torch.as_tensor(indices)))
    finally:
        model.to(original)
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
    n = len(indices)
    return {
        "samples": n,
        "acc_spice": float(np.mean(pred_spice == labels)),
        "acc_torch": float(np.mean(pred_torch == labels)),
        "agreement": float(np.mean(pred_spice == pred_torch)),
        "count_match": float(np.mean(spice_counts == torch_counts)),
        # the share of ngspice predictions that need no tie-break: one neuron has the most spikes
        "decided_by_count": float(np.mean(np.diff(np.sort(spice_counts, axis=1)[:, -2:], axis=1) > 0)),
        "wall_s": spice_s + torch_s,
        "spice_s": spice_s,
        "torch_s": torch_s,
        "synapse": synapse,
        "ngspice_settings": {**VERIFY_SETTINGS, **(settings or {})},
        "per_sample": [
            {"index": int(k), "label": int(lab), "pred_spice": int(ps), "pred_torch": int(pt),
             "counts_spice": sc.tolist(), "counts_torch": tc.tolist()}
            for k, lab, ps, pt, sc, tc in zip(indices, labels, pred_spice, pred_torch, spice_counts, torch_counts)],
    }
