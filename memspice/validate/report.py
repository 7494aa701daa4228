"""Reports of validation runs: text tables, JSON, the saved arrays, overlay plots, the dt sweep."""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from memspice.devices import MIF, DeviceModel
from memspice.errors import AccuracyWarning, ConfigError, SolverError
from memspice.fileio import atomic_write_bytes
from memspice.netlist.stimuli import PWL
from memspice.solver.accuracy import worst
from memspice.spice.pool import Workers
from memspice.validate.cases import STEP, CaseResult, SpikeReading, TorchSettings, mif_references, mif_torch
from memspice.validate.metrics import compare, targets


def load_stimulus(path: str | Path) -> PWL:
    """A piecewise-linear input current from a CSV file with columns ``t_s,i_A`` (a header row
    naming them is allowed); the simulation runs to the last time."""
    path = Path(path)
    try:
        text = path.read_text().lstrip()
        rows = np.loadtxt(io.StringIO(text), delimiter=",", comments="#", ndmin=2,
                          skiprows=1 if text[:1].isalpha() else 0)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the stimulus {path}: {exc}; expected two columns t_s,i_A") from None
    if rows.shape[1] != 2 or len(rows) < 2:
        raise ConfigError(f"the stimulus {path} needs two columns t_s,i_A and at least two rows; got {rows.shape}")
    return PWL(rows[:, 0], rows[:, 1])


def summary_table(result: CaseResult) -> str:
    """One line per probe: spike counts, spike-time error, NRMSE."""
    lines = [f"{result.case}: ngspice {result.wall_ngspice_s:.2f} s, torch {result.wall_torch_s:.2f} s "
             f"(dt {result.torch['dt'] * 1e9:g} ns, {result.torch['method']}, {result.torch['device']}, "
             f"{result.torch['dtype']}"
             + (f"; adaptive: {result.substeps} substeps for {len(result.t) - 1} steps" if result.substeps else "")
             + ")" + (f"; spikes: {result.extra['spikes']}" if "spikes" in result.extra else ""),
             f"  {'probe':<24} {'spikes ngspice/torch':>20} {'spike-time err':>15} {'/ISI':>7} {'NRMSE':>7}"]
    for name, m in result.probes.items():
        err = m["spike_time_mean_abs_error_s"]
        shown = f"{err * 1e9:.1f} ns" if not math.isnan(err) else "-"
        ratio = m["spike_time_error_over_isi"]
        lines.append(f"  {name:<24} {m['spikes_ref']:>9d} / {m['spikes_torch']:<8d} {shown:>15} "
                     f"{(f'{ratio * 100:.2f}%' if not math.isnan(ratio) else '-'):>7} {m['nrmse'] * 100:6.2f}%")
    met = targets(result.probes)
    lines.append(f"  targets (equal spike counts, spike-time error <= 1 % of the ISI, NRMSE <= 5 %): "
                 f"{'met' if met['met'] else 'NOT met'} (worst {met['worst_spike_time_error_over_isi'] * 100:.2f} %, "
                 f"NRMSE {met['worst_nrmse'] * 100:.2f} %)")
    return "\n".join(lines)


def save_arrays(result: CaseResult, path: str | Path) -> Path:
    """``t``, ``v_ref``, ``v_torch`` of the main probe on the common grid, plus the settings."""
    buf = io.BytesIO()
    np.savez(buf, t=result.t, v_ref=result.v_ref, v_torch=result.v_torch,
             settings=json.dumps({"case": result.case, "ngspice": result.ngspice, "torch": result.torch}))
    return atomic_write_bytes(path, buf.getvalue())


def plot_overlay(result: CaseResult, path: str | Path) -> Path:
    from memspice.plots import legend_outside, save_figure, subplots

    fig, (ax, ax_err) = subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=(2, 1))
    us = result.t * 1e6
    ax.plot(us, result.v_ref, lw=1.2, label="ngspice")
    label = f"torch ({result.torch['method']}, dt {result.torch['dt'] * 1e9:g} ns)"
    ax.plot(us, result.v_torch, lw=1, ls="--", label=label)
    ax.set_ylabel("membrane (V)")
    ax.set_title(f"{result.case}: main probe")
    legend_outside(ax)
    ax_err.plot(us, result.v_torch - result.v_ref, lw=1, color="C3")
    ax_err.set_ylabel("torch - ngspice (V)")
    ax_err.set_xlabel("time (µs)")
    return save_figure(fig, path)


def _torch_row(stimuli: list[PWL], references: list, ref_spikes: list, settings: TorchSettings,
               neuron: Mapping[str, float] | None, model: DeviceModel = MIF) -> dict:
    """One torch run of the neuron ``model`` under ``stimuli`` against ngspice's ``references``
    (membranes ``(t, v)``) and their spike times ``ref_spikes``: the
    worst figures over the stimuli (:func:`~memspice.validate.metrics.targets`), whether they
    meet the targets, and the solver's own local error estimate (``estimate_ratio``, in units of
    its tolerance; any warning is this row's, not the user's). A run the solver cannot finish
    is reported with its error."""
    row = {"method": settings.solver.method, "dt": settings.solver.dt}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AccuracyWarning)
            t, v, wall, solution = mif_torch(stimuli, settings, neuron, model=model)
    except SolverError as exc:
        return {**row, "error": str(exc), "met": False}
    reading = SpikeReading.of(model)
    probes = [compare(*reference, t, v_k, spikes=reading.torch(solution, 0, k), ref_spikes=spikes)
              for k, (reference, spikes, v_k) in enumerate(zip(references, ref_spikes, v))]
    found = worst(solution.errors or [])
    met = targets(dict(enumerate(probes)))
    return {**row, "wall_torch_s": wall, **(probes[0] if len(probes) == 1 else {}), "met": met["met"],
            "spikes_ref_total": sum(p["spikes_ref"] for p in probes),
            "spikes_torch_total": sum(p["spikes_torch"] for p in probes),
            "worst_spike_time_error_over_isi": met["worst_spike_time_error_over_isi"],
            "estimate_ratio": found.ratio if found else None,
            "estimate_suggested_dt": found.suggested_dt if found else None, "split_steps": solution.split_steps}


def sweep_dt(dts: list[float], methods: list[str], base: TorchSettings, workers: Workers = None,
             neuron: Mapping[str, float] | None = None, model: DeviceModel = MIF) -> dict:
    """Error against dt for each method on mif-step (one ngspice reference for all), with the
    solver's own error estimate and the empirical order of convergence: between neighbouring
    dts (``local_order``) and the least-squares slope of log spike-time error against log dt
    (``order``), over the runs whose spike counts match."""
    references, spikes, spice, _ = mif_references([STEP], workers, neuron=neuron, model=model)
    rows = [_torch_row([STEP], references, spikes, base.stepping(dt, method), neuron, model)
            for method in methods for dt in dts]
    # Below some error every method meets the floor of the comparison itself (ngspice's own error,
    # the grids); orders are fitted only above 5x the smallest error measured.
    good = [r for r in rows if "error" not in r and r["spikes_ref"] == r["spikes_torch"]
            and r["spike_time_mean_abs_error_s"] > 0]
    floor = min((r["spike_time_mean_abs_error_s"] for r in good), default=0.0)
    orders = {}
    for method in methods:
        mine = [r for r in good if r["method"] == method]
        for previous, r in zip(mine, mine[1:]):
            r["local_order"] = float(np.log(r["spike_time_mean_abs_error_s"] / previous["spike_time_mean_abs_error_s"])
                                     / np.log(r["dt"] / previous["dt"]))
        pts = [(r["dt"], r["spike_time_mean_abs_error_s"]) for r in mine
               if r["spike_time_mean_abs_error_s"] >= 5 * floor]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            orders[method] = float(np.polyfit(x, y, 1)[0])
    return {"case": "mif-step", "ngspice": spice.describe(), "rows": rows, "order": orders,
            "error_floor_s": floor, "neuron_model": model.name, "neuron": dict(neuron or {})}


#: How far :func:`suggest_dt` searches: down to dt / 2**MAX_HALVINGS, up to dt · 2**MAX_DOUBLINGS,
#: then BISECTIONS geometric bisections between the largest dt that met the target and the next.
MAX_HALVINGS, MAX_DOUBLINGS, BISECTIONS = 8, 3, 3


def suggest_dt(stimuli: list[PWL], base: TorchSettings, workers: Workers = None,
               neuron: Mapping[str, float] | None = None, progress: Callable[[dict], None] | None = None,
               model: DeviceModel = MIF) -> dict:
    """The largest step of ``base.solver.method`` at which the torch solver meets the agreement targets
    (:func:`~memspice.validate.metrics.targets`: equal spike counts, spike-time error ≤ 1 % of
    the ISI, NRMSE ≤ 5 %) against ngspice for the neuron ``model`` (parameters ``neuron``) under
    every stimulus:
    ngspice runs once, the torch solver at ``base.solver.dt`` halved until the targets are met (or
    doubled while they are), then bisected. ``progress(row)`` sees each row. Returns the rows
    and ``suggested_dt`` (s; ``None`` when no dt tried met the targets)."""
    references, spikes, spice, _ = mif_references(stimuli, workers, neuron=neuron, model=model)
    rows = []

    def run(dt: float) -> bool:
        rows.append(_torch_row(stimuli, references, spikes, base.stepping(dt), neuron, model))
        if progress:
            progress(rows[-1])
        return rows[-1]["met"]

    good, bad = None, None
    if run(base.solver.dt):
        good = base.solver.dt
        for _ in range(MAX_DOUBLINGS):
            if not run(good * 2):
                bad = good * 2
                break
            good *= 2
    else:
        bad = base.solver.dt
        for _ in range(MAX_HALVINGS):
            if run(bad / 2):
                good = bad / 2
                break
            bad /= 2
    if good is not None and bad is not None:
        for _ in range(BISECTIONS):
            middle = math.sqrt(good * bad)
            if run(middle):
                good = middle
            else:
                bad = middle
    return {"ngspice": spice.describe(), "method": base.solver.method, "neuron_model": model.name,
            "neuron": dict(neuron or {}), "rows": rows,
            "suggested_dt": good}


def suggestion_table(result: dict) -> str:
    """:func:`suggest_dt`'s rows and answer as text."""
    lines = [f"  {'dt (ns)':>9} {'spikes ngspice/torch':>21} {'worst /ISI':>10} {'estimate':>9}  targets"]
    for r in sorted(result["rows"], key=lambda r: -r["dt"]):
        if "error" in r:
            lines.append(f"  {r['dt'] * 1e9:9.3g}  failed: {r['error']}")
            continue
        ratio = r["worst_spike_time_error_over_isi"]
        estimate = r["estimate_ratio"]
        lines.append(f"  {r['dt'] * 1e9:9.3g} {r['spikes_ref_total']:>10d} / {r['spikes_torch_total']:<8d} "
                     f"{(f'{ratio * 100:.2f}%' if not math.isnan(ratio) else '-'):>10} "
                     f"{(f'{estimate:.3g}x' if estimate is not None else '-'):>9}  {'met' if r['met'] else 'NOT met'}")
    dt = result["suggested_dt"]
    lines.append(f"  largest dt that meets the targets ({result['method']}): "
                 + (f"{dt:.3g} s" if dt is not None else "none of those tried"))
    return "\n".join(lines)


def sweep_table(sweep: dict) -> str:
    lines = [f"  {'method':<7} {'dt (ns)':>8} {'spikes':>8} {'spike-time err (ns)':>20} {'/ISI':>7} {'NRMSE':>7} "
             f"{'order':>6} {'estimate':>9} {'torch (s)':>9}"]
    for r in sweep["rows"]:
        if "error" in r:
            lines.append(f"  {r['method']:<7} {r['dt'] * 1e9:8.3g}  failed: {r['error']}")
            continue
        estimate = f"{r['estimate_ratio']:.3g}x" if r["estimate_ratio"] is not None else "-"
        lines.append(f"  {r['method']:<7} {r['dt'] * 1e9:8.3g} {r['spikes_torch']:>3d}/{r['spikes_ref']:<4d} "
                     f"{r['spike_time_mean_abs_error_s'] * 1e9:20.2f} {r['spike_time_error_over_isi'] * 100:6.2f}% "
                     f"{r['nrmse'] * 100:6.2f}% {r.get('local_order', float('nan')):6.2f} {estimate:>9} "
                     f"{r['wall_torch_s']:9.2f}")
    lines.append(f"  order: between a row and the one above it; error floor of the comparison "
                 f"{sweep['error_floor_s'] * 1e9:.2f} ns; estimate: the solver's largest local error estimate "
                 "in units of its tolerance (above 1x it warns)")
    for method, order in sweep["order"].items():
        lines.append(f"  empirical order of {method} (fit over errors above 5x the floor): {order:.2f}")
    return "\n".join(lines)


def plot_sweep(sweep: dict, path: str | Path, neuron: str = "default") -> Path:
    """The measured spike-time error and the solver's own estimate against dt, per method;
    ``neuron`` names the neuron in the titles."""
    from memspice.plots import save_figure, subplots

    fig, (ax, ax_est) = subplots(1, 2, figsize=(10, 4))
    dts = sorted({r["dt"] * 1e9 for r in sweep["rows"]})
    for i, method in enumerate(dict.fromkeys(r["method"] for r in sweep["rows"])):
        rows = [r for r in sweep["rows"] if r["method"] == method and "error" not in r]
        order = sweep["order"].get(method)
        counted = [r for r in rows if r["spikes_ref"] == r["spikes_torch"]]
        missed = [r for r in rows if r["spikes_ref"] != r["spikes_torch"]]
        ax.loglog([r["dt"] * 1e9 for r in counted], [r["spike_time_error_over_isi"] * 100 for r in counted], "o-",
                  color=f"C{i}", label=method + (f" (order {order:.2f})" if order is not None else ""))
        if missed:  # a wrong spike count: the timing error of the spikes paired in order, open markers
            ax.loglog([r["dt"] * 1e9 for r in missed], [r["spike_time_error_over_isi"] * 100 for r in missed], "o",
                      mfc="none", color=f"C{i}", label=f"{method}: spike count wrong")
        estimated = [r for r in rows if r["estimate_ratio"] is not None]
        ax_est.loglog([r["dt"] * 1e9 for r in estimated], [r["estimate_ratio"] for r in estimated], "s-",
                      color=f"C{i}", label=method)
    ax.axhline(1.0, color="gray", ls=":", label="target: 1 % of the ISI")
    ax_est.axhline(1.0, color="C3", ls=":", label="tolerance (warns above)")
    for a, ylabel, title in ((ax, "mean spike-time error (% of ISI)", "measured against ngspice"),
                             (ax_est, "largest local error estimate / tolerance", "the solver's own estimate")):
        a.set_xticks(dts, [f"{d:g}" for d in dts])
        a.minorticks_off()
        a.set_xlabel("dt (ns)")
        a.set_ylabel(ylabel)
        a.set_title(f"mif-step, {neuron} neuron: {title}", fontsize=9)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    return save_figure(fig, path)
