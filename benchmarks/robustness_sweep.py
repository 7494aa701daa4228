"""Accuracy against the strength of each chip non-ideality, one effect at a time, for one or more
trained networks side by side (e.g. the ideal-trained and the hardware-aware one): each point is
the mean over ``--chips`` chips (seeds 0, 1, ...) of the accuracy on the first ``--samples`` test
samples in the torch solver; a dashed line is each network on the ideal circuit. Writes a JSON table and a
plot (one panel per effect). Run:

    .venv/bin/python benchmarks/robustness_sweep.py CKPT [CKPT ...] --labels ideal hardware-aware \\
        --out docs/img/robustness.png [--samples 256] [--chips 3] [--threads 1]
    .venv/bin/python benchmarks/robustness_sweep.py --replot docs/robustness.json --out docs/robustness.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from memspice.data import load_dataset
from memspice.fileio import atomic_write_text
from memspice.hardware import HardwareSpec
from memspice.hardware.presets import TRIM_BITS
from memspice.plots import save_figure, subplots
from memspice.solver.monitor import SolutionMonitor
from memspice.train.loop import evaluate, load_trained

#: Each effect: its axis label, the strengths swept and the spec of one strength.
EFFECTS = {
    "conductance levels (bits)": ((5, 4, 3, 2), lambda bits: HardwareSpec(levels=2**bits)),
    "programming error σ (of range)": ((0.02, 0.05, 0.1), lambda s: HardwareSpec(program_noise=s)),
    "cell range spread σ": ((0.05, 0.1, 0.2), lambda s: HardwareSpec(range_spread=s)),
    "stuck cells (fraction)": ((0.01, 0.02, 0.05), lambda f: HardwareSpec(stuck_off=f / 2, stuck_on=f / 2)),
    "wire segment resistance (Ω), tiles of 128": ((10, 100, 1000),
                                                  lambda r: HardwareSpec(wire_resistance=r, tile_size=128)),
    "neuron gon, Cm spread σ": ((0.02, 0.05, 0.1, 0.2), lambda s: HardwareSpec(neuron_spread=s)),
    f"neuron gon, Cm spread σ, {TRIM_BITS}-bit membrane trims": (
        (0.02, 0.05, 0.1, 0.2), lambda s: HardwareSpec(neuron_spread=s, trim_bits=TRIM_BITS)),
    "switching-voltage spread σ": ((0.01, 0.02, 0.03, 0.1), lambda s: HardwareSpec(threshold_spread=s)),
    f"switching-voltage spread σ, {TRIM_BITS}-bit membrane trims": (
        (0.01, 0.02, 0.03, 0.1), lambda s: HardwareSpec(threshold_spread=s, trim_bits=TRIM_BITS)),
    f"neuron gon, Cm spread σ, {TRIM_BITS}-bit switch trims": (
        (0.02, 0.05, 0.1, 0.2), lambda s: HardwareSpec(neuron_spread=s, trim_bits=TRIM_BITS, trim_scheme="switch")),
    f"switching-voltage spread σ, {TRIM_BITS}-bit switch trims": (
        (0.01, 0.02, 0.03, 0.1),
        lambda s: HardwareSpec(threshold_spread=s, trim_bits=TRIM_BITS, trim_scheme="switch")),
}
#: Panels per row of the plot.
COLUMNS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--labels", nargs="+", help="one label per checkpoint (default: their folders)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--chips", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="plot the table of an earlier run (its .json) instead of measuring")
    parser.add_argument("--out", type=Path, default=Path("runs/robustness_sweep.png"))
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        plot(saved["accuracy"], saved["labels"], saved["samples"], saved["chips"], args.out)
        return
    if not args.checkpoints:
        parser.error("give the checkpoints to measure, or --replot JSON")
    labels = args.labels or [path.parent.name for path in args.checkpoints]
    if len(labels) != len(args.checkpoints):
        parser.error("give one label per checkpoint")
    torch.set_num_threads(args.threads)
    table = {label: measure(path, label, args.samples, args.chips) for label, path in zip(labels, args.checkpoints)}
    plot(table, labels, args.samples, args.chips, args.out)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(
        {"samples": args.samples, "chips": args.chips, "checkpoints": [str(p) for p in args.checkpoints],
         "labels": labels, "strengths": {e: list(s) for e, (s, _) in EFFECTS.items()}, "accuracy": table},
        indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


def measure(path: Path, label: str, samples: int, chips: int) -> dict:
    """The network at ``path`` on the ideal circuit and at each strength of each effect (mean over
    ``chips`` chips), on its first ``samples`` test samples, printed as it goes."""
    trained = load_trained(path)
    trained.model.solver = trained.model.solver.replace(fused=True)
    data = load_dataset(trained.config.dataset, trained.config.data_dir)
    x, y = data.test_x[:samples], data.test_y[:samples]

    def accuracy(chip) -> float:
        return evaluate(trained.model, trained.readout, trained.encoder, x, y, trained.config.n_steps, 256,
                        torch.float32, monitor=SolutionMonitor(allow_cell_writes=True), chip=chip)["acc"]

    row = {"ideal": accuracy(None)}
    print(f"{label:<16} {'ideal circuit':<42} {100 * row['ideal']:6.2f} %", flush=True)
    for effect, (strengths, spec_of) in EFFECTS.items():
        row[effect] = []
        for strength in strengths:
            spec = spec_of(strength)
            row[effect].append(float(np.mean([accuracy(spec.sample(trained.model.sizes, seed))
                                              for seed in range(chips)])))
            print(f"{label:<16} {effect:<42} {strength:>6g}  {100 * row[effect][-1]:6.2f} %", flush=True)
    return row


def plot(table: dict, labels: list[str], samples: int, chips: int, out: Path) -> None:
    """One panel per effect: each network's accuracy against its strength, dashed on the ideal circuit."""
    rows = -(-len(EFFECTS) // COLUMNS)
    fig, axes = subplots(rows, COLUMNS, (4.2 * COLUMNS, 3.5 * rows), sharey=True)
    for ax in axes.flat[len(EFFECTS):]:
        ax.set_visible(False)
    for ax, (effect, (strengths, _)) in zip(axes.flat, EFFECTS.items()):
        for k, label in enumerate(labels):
            color = f"C{k}"
            ax.plot(strengths, [100 * a for a in table[label][effect]], "o-", color=color, label=label)
            ax.axhline(100 * table[label]["ideal"], color=color, linestyle="--", linewidth=1)
        if effect.startswith("wire"):
            ax.set_xscale("log")
        if effect.startswith("conductance levels"):
            ax.invert_xaxis()
        ax.set_xlabel(effect)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    axes.flat[0].legend(title="dashed: ideal circuit")
    fig.suptitle(f"accuracy on chips with one non-ideality ({samples} test samples, mean of {chips} chips)")
    fig.tight_layout()
    save_figure(fig, out)


if __name__ == "__main__":
    main()
