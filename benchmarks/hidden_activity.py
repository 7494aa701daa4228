"""How a trained network's first hidden layer responds to test images: how often each neuron
spikes, and how much its mean membrane varies from image to image. A neuron that spikes on
(nearly) every image sits above threshold, where its mean membrane hardly depends on the
input; one that never spikes works as a linear (sub-threshold) unit. It also gives the share of
each crossbar's cells that sit at a bound of their conductance range. Run:

    .venv/bin/python benchmarks/hidden_activity.py runs/fashion/checkpoint.pt [--samples 256]
"""

from __future__ import annotations

import argparse

import torch

from memspice.data import load_dataset
from memspice.nn.readout import membrane_mean, spike_counts
from memspice.train.loop import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=256, help="first N test images (default: %(default)s)")
    args = parser.parse_args()
    trained = load_trained(args.checkpoint)
    data = load_dataset(trained.config.dataset, trained.config.data_dir)
    n = min(args.samples, len(data.test_x))
    x = torch.as_tensor(data.test_x[:n], dtype=torch.float32)
    with torch.no_grad():
        v = trained.model(trained.encode(x, torch.arange(n))).v[0]  # (n, steps + 1, hidden), V
    fires = (spike_counts(v) > 0).float().mean(0)  # per neuron: fraction of images with a spike
    spread = membrane_mean(v).std(0)  # per neuron: std over images of the mean membrane, V
    quartiles = torch.tensor([0.25, 0.5, 0.75])
    print(f"{args.checkpoint}: first hidden layer, {v.shape[-1]} neurons, {n} test images")
    print(f"  spike on > 95 % of images: {int((fires > 0.95).sum())} neurons; on < 5 %: {int((fires < 0.05).sum())}")
    print("  fraction of images with a spike, quartiles over neurons: "
          + ", ".join(f"{q:.2f}" for q in torch.quantile(fires, quartiles).tolist()))
    print("  std over images of the mean membrane (V), quartiles over neurons: "
          + ", ".join(f"{q:.3f}" for q in torch.quantile(spread, quartiles).tolist()))
    for k, crossbar in enumerate(trained.model.crossbars):
        with torch.no_grad():
            fractions = torch.cat([((g - crossbar.g_min) / (crossbar.g_max - crossbar.g_min)).flatten()
                                   for g in (crossbar.g_pos, crossbar.g_neg)])
        low, high = (100 * (fractions <= 1e-3).float().mean()), (100 * (fractions >= 1 - 1e-3).float().mean())
        print(f"  crossbar {k + 1} ({crossbar.n_in}x{crossbar.n_out}x2): {low:.1f} % of cells at g_min, "
              f"{high:.1f} % at g_max")


if __name__ == "__main__":
    main()
