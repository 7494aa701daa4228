"""Reports of validation runs: text tables, JSON, the saved arrays, overlay plots, the dt sweep."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from memspice.errors import SolverError
from memspice.fileio import atomic_write_bytes
from memspice.netlist.stimuli import PWL
from memspice.validate.cases import STEP, CaseResult, TorchSettings, mif_references, mif_torch
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
        raise ValueError(f"cannot read the stimulus {path}: {exc}; expected two columns t_s,i_A") from None
    if rows.shape[1] != 2 or len(rows) < 2:
        raise ValueError(f"the stimulus {path} needs two columns t_s,i_A and at least two rows; got {rows.shape}")
    return PWL(rows[:, 0], rows[:, 1])


def summary_table(result: CaseResult) -> str:
    """One line per probe: spike counts, spike-time error, NRMSE."""
    lines = [f"{result.case}: ngspice {result.wall_ngspice_s:.2f} s, torch {result.wall_torch_s:.2f} s "
             f"(dt {result.torch['dt'] * 1e9:g} ns, {result.torch['method']}, {result.torch['device']}, "
             f"{result.torch['dtype']})",
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
    from memspice.plots import legend_outside, plt, save_figure

    fig, (ax, ax_err) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=(2, 1))
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


def sweep_dt(dts: list[float], methods: list[str], base: TorchSettings, workers: int | None = None) -> dict:
    """Error against dt for each method on mif-step (one ngspice reference for all), with the
    empirical order of convergence: between neighbouring dts (``local_order``) and the
    least-squares slope of log spike-time error against log dt (``order``), over the runs whose
    spike counts match. A run the solver cannot finish is reported with its error instead."""
    (reference,), spice, _ = mif_references([STEP], workers)
    rows = []
    for method in methods:
        for dt in dts:
            settings = TorchSettings(dt=dt, method=method, device=base.device, dtype=base.dtype)
            try:
                t, v, wall = mif_torch([STEP], settings)
            except SolverError as exc:
                rows.append({"method": method, "dt": dt, "error": str(exc)})
                continue
            rows.append({"method": method, "dt": dt, "wall_torch_s": wall, **compare(*reference, t, v[0])})
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
            "error_floor_s": floor}


def sweep_table(sweep: dict) -> str:
    lines = [f"  {'method':<7} {'dt (ns)':>8} {'spikes':>8} {'spike-time err (ns)':>20} {'/ISI':>7} {'NRMSE':>7} "
             f"{'order':>6} {'torch (s)':>9}"]
    for r in sweep["rows"]:
        if "error" in r:
            lines.append(f"  {r['method']:<7} {r['dt'] * 1e9:8.3g}  failed: {r['error']}")
            continue
        lines.append(f"  {r['method']:<7} {r['dt'] * 1e9:8.3g} {r['spikes_torch']:>3d}/{r['spikes_ref']:<4d} "
                     f"{r['spike_time_mean_abs_error_s'] * 1e9:20.2f} {r['spike_time_error_over_isi'] * 100:6.2f}% "
                     f"{r['nrmse'] * 100:6.2f}% {r.get('local_order', float('nan')):6.2f} {r['wall_torch_s']:9.2f}")
    lines.append(f"  order: between a row and the one above it; error floor of the comparison "
                 f"{sweep['error_floor_s'] * 1e9:.2f} ns")
    for method, order in sweep["order"].items():
        lines.append(f"  empirical order of {method} (fit over errors above 5x the floor): {order:.2f}")
    return "\n".join(lines)


def plot_sweep(sweep: dict, path: str | Path) -> Path:
    from memspice.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in sweep["rows"]):
        rows = [r for r in sweep["rows"] if r["method"] == method and "error" not in r]
        order = sweep["order"].get(method)
        ax.loglog([r["dt"] * 1e9 for r in rows], [r["spike_time_error_over_isi"] * 100 for r in rows], "o-",
                  label=method + (f" (order {order:.2f})" if order is not None else ""))
    ax.axhline(1.0, color="gray", ls=":", label="target: 1 % of the ISI")
    dts = sorted({r["dt"] * 1e9 for r in sweep["rows"]})
    ax.set_xticks(dts, [f"{d:g}" for d in dts])
    ax.minorticks_off()
    ax.set_xlabel("dt (ns)")
    ax.set_ylabel("mean spike-time error (% of ISI)")
    ax.set_title("mif-step: torch solver against ngspice")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
