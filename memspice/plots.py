"""Plots people would rather look at than read, as PNG files. The figures are
:class:`matplotlib.figure.Figure` objects, not pyplot's: they render to files with no backend
chosen or switched, so importing memspice leaves a notebook's plots alone."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from memspice.fileio import atomic_write_bytes


def save_figure(fig, path: str | Path) -> Path:
    """Save a figure as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def subplots(rows: int, cols: int, figsize: tuple[float, float], **options):
    """A new figure and its axes, as ``pyplot.subplots`` gives them (without pyplot)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, **options)


def legend_outside(ax) -> None:
    """The legend right of the axes, where it hides no trace (the last spikes were under it)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)


def plot_neuron(
    t: np.ndarray,
    membrane: np.ndarray,
    states: Mapping[str, np.ndarray],
    spikes: np.ndarray,
    threshold: float,
    title: str,
    path: str | Path,
) -> Path:
    """Membrane voltage with spike markers above, internal states below (t in s, shown in µs)."""
    fig, (ax_v, ax_x) = subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=(2, 1))
    us = 1e6
    ax_v.plot(t * us, membrane, lw=1, label="membrane V(mem)")
    ax_v.axhline(threshold, color="gray", ls=":", lw=1, label=f"spike threshold {threshold:g} V")
    ax_v.plot(spikes * us, np.full(len(spikes), threshold), "v", color="C3", ms=5, label=f"{len(spikes)} spikes")
    ax_v.set_ylabel("membrane (V)")
    ax_v.set_title(title)
    legend_outside(ax_v)
    for name, x in states.items():
        ax_x.plot(t * us, x, lw=1, label=name)
    ax_x.set_ylabel("state x")
    ax_x.set_xlabel("time (µs)")
    legend_outside(ax_x)
    return save_figure(fig, path)


def plot_signals(t: np.ndarray, signals: Mapping[str, np.ndarray], title: str, path: str | Path) -> Path:
    """Every signal against time (µs), voltages and currents on separate axes."""
    volts = {k: v for k, v in signals.items() if k.startswith("v(")}
    amps = {k: v for k, v in signals.items() if not k.startswith("v(")}
    groups = [(g, unit) for g, unit in ((volts, "V"), (amps, "A")) if g]
    fig, axes = subplots(len(groups), 1, figsize=(9, 3 + 2 * len(groups)), sharex=True, squeeze=False)
    for ax, (group, unit) in zip(axes[:, 0], groups):
        for name, y in group.items():
            ax.plot(t * 1e6, y, lw=1, label=name)
        ax.set_ylabel({"V": "voltage (V)", "A": "current (A)"}[unit])
        legend_outside(ax)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("time (µs)")
    return save_figure(fig, path)


def plot_characterization(result, path: str | Path) -> Path:
    """f–I curve (log current axis) beside the reference run's membrane trace."""
    fig, (ax_f, ax_v) = subplots(1, 2, figsize=(12, 4))
    ax_f.semilogx(np.asarray(result.currents) * 1e6, np.asarray(result.rates) / 1e3, "o-")
    ax_f.set_xlabel("input current (µA)")
    ax_f.set_ylabel("firing rate (kHz)")
    ax_f.set_title("f–I curve (ngspice)")
    ax_f.grid(True, which="both", alpha=0.3)
    t, v = result.reference_trace
    ax_v.plot(t * 1e6, v, lw=1)
    ax_v.axhline(result.threshold, color="C1", ls=":", lw=1, label=f"threshold {result.threshold:.3f} V")
    ax_v.axhline(result.peak, color="C2", ls=":", lw=1, label=f"peak {result.peak:.3f} V")
    ax_v.axhline(result.undershoot, color="C3", ls=":", lw=1, label=f"undershoot {result.undershoot:.3f} V")
    ax_v.set_xlabel("time (µs)")
    ax_v.set_ylabel("membrane (V)")
    ax_v.set_title(f"{result.reference_current * 1e6:g} µA step: width {result.width * 1e9:.0f} ns, "
                   f"refractory {result.refractory * 1e6:.2f} µs")
    ax_v.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_training(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Loss and accuracy per epoch (training and evaluation) of a training run's history."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-o"), ("eval", "--s")):
        ax_loss.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=split)
        ax_acc.plot(epochs, [100 * row[f"{split}_acc"] for row in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend()
    return save_figure(fig, path)


def plot_output_membranes(t: np.ndarray, v: np.ndarray, labels: Sequence[int], classes: Sequence[str],
                          threshold: float, path: str | Path, population: int = 1) -> Path:
    """Output-neuron membranes ``v`` (V, ``(samples, n_steps + 1, n_out)``) over ``t`` (s), one
    panel per sample; the neurons of the true class (``population`` per class) are drawn bold."""
    fig, axes = subplots(len(v), 1, figsize=(9, 2.2 * len(v)), sharex=True, squeeze=False)
    for ax, trace, label in zip(axes[:, 0], v, labels):
        for j in range(trace.shape[-1]):
            bold = j // population == label
            true = {"label": f"{classes[label]} (true)"} if j == label * population else {}
            style = {"lw": 2.2, "color": "C3", "zorder": 3, **true} if bold else \
                {"lw": 0.8, "alpha": 0.6}
            ax.plot(t * 1e6, trace[:, j], **style)
        ax.axhline(threshold, color="k", ls=":", lw=0.8)
        ax.set_ylabel("membrane (V)")
        legend_outside(ax)
    axes[-1, 0].set_xlabel("time (µs)")
    axes[0, 0].set_title("output neurons' membranes (dotted: spike threshold)")
    return save_figure(fig, path)
