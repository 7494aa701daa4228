"""What pulse extenders (``--pulse-gain``, :class:`memspice.circuit.PulseExtender`) pass on in a
trained Fashion-MNIST network, and when its decisions fall.

For a checkpoint's weights (the shipped rectified network by default) and each pair of buffer
gain and extender gain in ``--settings`` (no retraining), on the first ``--samples`` test images in
torch: the accuracy and spikes per output neuron, the extreme voltages across layer 2's cells
(the synapses' write thresholds are ±2 V), and, per number of hidden spikes in the window, the
extenders' and the membranes' mean over the window. Then, for each ``--timing`` checkpoint as it
was trained: when the hidden neurons fire first and when the first output spike (the readout's
decision) comes, 10th, 50th and 90th percentiles. Run:

    .venv/bin/python benchmarks/pulse_extenders.py [--checkpoint CKPT] [--timing CKPT ...] [--samples 256]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from memspice.data import load_dataset
from memspice.nn import spike_counts
from memspice.nn.readout import first_spike_steps
from memspice.train.config import TrainConfig
from memspice.train.loop import build, load_trained

SETTINGS = ("2:none", "2:60", "1:none", "1:60", "0.5:80")


def _setting(text: str) -> tuple[float, float | None]:
    gain, pulse = text.split(":")
    return float(gain), None if pulse == "none" else float(pulse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="pretrained/fashion-mnist-rectified/checkpoint.pt")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="GAIN:PULSE",
                        help="buffer gain and extender gain (none: no extenders)")
    parser.add_argument("--timing", nargs="*", default=[], metavar="CKPT",
                        help="checkpoints whose decision times to measure (the --checkpoint's too)")
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = load_trained(args.checkpoint)
    config = trained.config
    data = load_dataset(config.dataset, config.data_dir)
    n_steps = round(config.window / config.dt)
    x = torch.as_tensor(data.test_x[: args.samples], dtype=torch.float32)
    y = data.test_y[: args.samples]
    index = torch.arange(args.samples)

    print(f"{args.checkpoint}, first {args.samples} test images, the same weights under other buffers")
    print("| buffer gain | extender gain | accuracy | output spikes per neuron | layer 2 cells (V) | "
          "window means by hidden spikes (0, 1, 2, 3...): extender / membrane (V) |\n|---|---|---|---|---|---|")
    for gain, pulse in map(_setting, args.settings):
        settings = TrainConfig.from_dict({**config.to_dict(), "buffer_gain": gain, "pulse_gain": pulse})
        model, readout, encoder = build(settings, trained.model.sizes[0], trained.model.sizes[-1])
        model.load_state_dict(trained.model.state_dict())
        with torch.no_grad():
            solution = model(encoder(x, n_steps, index))
        classes, _ = readout.decide(solution.v[-1])
        hidden = spike_counts(solution.v[0])
        cells = solution.cells[1]
        means = []
        for count in range(int(hidden.max()) + 1):
            chosen = hidden == count
            q = f"{solution.pulses[0].mean(1)[chosen].mean():.3f}" if pulse else "-"
            means.append(f"{q} / {solution.v[0].mean(1)[chosen].mean():.3f}")
        print(f"| {gain:g} | {pulse if pulse else 'none'} | {100 * (classes.numpy() == y).mean():.1f} % | "
              f"{spike_counts(solution.v[-1]).mean():.2f} | {cells.lowest:+.2f} to {cells.highest:+.2f} | "
              f"{', '.join(means)} |", flush=True)

    print("\n| network | hidden neurons that fire | their first spike (µs) | first output spike (µs) |")
    print("|---|---|---|---|")
    for path in [args.checkpoint, *args.timing]:
        net = load_trained(path)
        with torch.no_grad():
            solution = net.model(net.encoder(x, n_steps, index))
        hidden, output = (first_spike_steps(v).numpy() * net.config.dt for v in solution.v)
        decision = output.min(1)
        print(f"| {path} | {100 * np.isfinite(hidden).mean():.1f} % | "
              f"{', '.join(f'{t * 1e6:.1f}' for t in np.percentile(hidden[np.isfinite(hidden)], [10, 50, 90]))} | "
              f"{', '.join(f'{t * 1e6:.1f}' for t in np.percentile(decision[np.isfinite(decision)], [10, 50, 90]))} |",
              flush=True)


if __name__ == "__main__":
    main()
