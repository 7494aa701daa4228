"""How a trained network's first hidden layer responds to test images: how often each neuron
spikes, and how much its mean membrane varies from image to image. A neuron that spikes on
(nearly) every image sits above threshold, where its mean membrane hardly depends on the
input; one that never spikes works as a linear (sub-threshold) unit. It also gives the share of
each crossbar's cells that sit at a bound of their conductance range, and the largest voltage
across any of its cells (exported with memristor synapses, a cell above the write threshold
would be reprogrammed by the reading). Run:

    .venv/bin/python benchmarks/hidden_activity.py runs/fashion/checkpoint.pt [--samples 256]
"""

from __future__ import annotations

import argparse

import torch

from memspice.data import load_dataset
from memspice.devices import SYNAPSE
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
        rows = trained.encode(x, torch.arange(n))  # (n, steps + 1, inputs), V
        membranes = trained.model(rows).v  # per layer (n, steps + 1, neurons), V
    v = membranes[0]
    fires = (spike_counts(v) > 0).float().mean(0)  # per neuron: fraction of images with a spike
    spread = membrane_mean(v).std(0)  # per neuron: std over images of the mean membrane, V
    quartiles = torch.tensor([0.25, 0.5, 0.75])
    print(f"{args.checkpoint}: first hidden layer, {v.shape[-1]} neurons, {n} test images")
    print(f"  spike on > 95 % of images: {int((fires > 0.95).sum())} neurons; on < 5 %: {int((fires < 0.05).sum())}")
    print("  fraction of images with a spike, quartiles over neurons: "
          + ", ".join(f"{q:.2f}" for q in torch.quantile(fires, quartiles).tolist()))
    print("  std over images of the mean membrane (V), quartiles over neurons: "
          + ", ".join(f"{q:.3f}" for q in torch.quantile(spread, quartiles).tolist()))
    write_threshold = min(SYNAPSE.parameter("vset").default, -SYNAPSE.parameter("vreset").default)
    layer_rows = [rows] + [trained.model.buffer_gain * m for m in membranes[:-1]]
    for k, crossbar in enumerate(trained.model.crossbars):
        # G+ cells see u - V and G- cells -u - V, so the largest is max|u| + max|V| at one instant
        peak = (layer_rows[k].abs().amax(-1) + membranes[k].abs().amax(-1)).max()
        with torch.no_grad():
            fractions = torch.cat([((g - crossbar.g_min) / (crossbar.g_max - crossbar.g_min)).flatten()
                                   for g in (crossbar.g_pos, crossbar.g_neg)])
        low, high = (100 * (fractions <= 1e-3).float().mean()), (100 * (fractions >= 1 - 1e-3).float().mean())
        print(f"  crossbar {k + 1} ({crossbar.n_in}x{crossbar.n_out}x2): {low:.1f} % of cells at g_min, "
              f"{high:.1f} % at g_max; largest voltage across a cell {peak:.2f} V (write threshold "
              f"{write_threshold:g} V)")


if __name__ == "__main__":
    main()
