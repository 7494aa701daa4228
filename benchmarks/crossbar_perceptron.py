"""Why high-gain buffers with a rail lift the spike-decided Fashion-MNIST network: the circuit at its
steady state, a perceptron whose layers are loaded crossbar columns.

A column ties to its membrane, so below threshold the membrane settles where the column's current
vanishes: ``V = Σ(G⁺ - G⁻)·u / (Σ(G⁺ + G⁻) + gL)``, a conductance-weighted mean of the rows (weights
bounded by the conductance range, their sum by the column's). This perceptron is made of exactly
that: memspice's own crossbars (:class:`~memspice.nn.MemristiveCrossbar`, the recipe's conductance
ranges and initial fractions, sigmoid parameters, Adam at 0.1 with cosine decay to 5 %, batch 64),
pixels as rows of 0–1.35 V, hidden membranes through the row buffers (``gain·relu(V)``, saturating
at ``rail``), and logits ``scale`` per volt of the output membranes. No time, no spikes: what the
circuit's weights can compute when the hidden neurons stay below threshold.

Each row prints training and test accuracy and the 99th percentile of the hidden membranes on the
test set: trained so, they stay far below the MIF threshold (0.40 V), so with gain 2 the output
membranes stay far below it too and the output layer cannot fire; the network that must spike
pushes its hidden neurons to threshold, where their mean membranes saturate
(``benchmarks/hidden_saturation.py``). A gain of 8 lifts the small membranes to the next layer's
threshold instead, and a rail of 1.35 V keeps a spike's rows within the cells' write thresholds.
The readout's scale is the other half: a soft one underfits. Run:

    .venv/bin/python benchmarks/crossbar_perceptron.py [--epochs 10]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from memspice.data import load_dataset
from memspice.devices import MIF
from memspice.nn import MemristiveCrossbar
from memspice.nn.crossbar import conductance_range

V_HIGH = 1.35  # the Fashion-MNIST recipes' white pixel (V)
G_LEAK = MIF.resolve({})["gl"]
#: The initial fractions of the conductance range that training/fashion_mnist_railed.sh starts from
#: (--init-pos, --init-neg; --deep-init-pos, --deep-init-neg).
INITS = ((0.2, 0.8), (0.1, 0.7)), ((0.3, 0.9), (0.0, 0.4))


def membranes(crossbar: MemristiveCrossbar, rows: torch.Tensor) -> torch.Tensor:
    """The steady-state membranes (V, ``(batch, n_out)``) of rows ``u`` (V, ``(batch, n_in)``)."""
    g_pos, g_neg = crossbar.g_pos, crossbar.g_neg
    return rows @ (g_pos - g_neg) / ((g_pos + g_neg).sum(0) + G_LEAK)


def run(data, gain: float, rail: float | None, scale: float, epochs: int) -> tuple[float, float, float]:
    """Train one perceptron; ``(training accuracy, test accuracy, 99th percentile of the hidden
    membranes on the test set in V)``."""
    generator = torch.Generator().manual_seed(0)
    layers = [MemristiveCrossbar(n_in, n_out, *conductance_range(n_in), init_pos=pos, init_neg=neg,
                                 generator=generator)
              for (n_in, n_out), (pos, neg) in zip(((784, 128), (128, len(data.classes))), INITS)]
    params = [p for layer in layers for p in layer.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.1)
    x, y = torch.as_tensor(data.train_x) * V_HIGH, torch.as_tensor(data.train_y)
    batches = (len(x) + 63) // 64
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * batches, eta_min=0.005)

    def forward(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = membranes(layers[0], u)
        rows = gain * F.relu(hidden)
        if rail is not None:
            rows = rows.clamp(max=rail)
        return scale * membranes(layers[1], rows), hidden

    torch.manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(forward(x[batch])[0], y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        train = (forward(x)[0].argmax(1) == y).float().mean().item()
        logits, hidden = forward(torch.as_tensor(data.test_x) * V_HIGH)
        test = (logits.argmax(1) == torch.as_tensor(data.test_y)).float().mean().item()
    return 100 * train, 100 * test, hidden.quantile(0.99).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", args.data_dir)
    print(f"fashion-mnist, 784-128-10 of loaded crossbar columns at steady state, {args.epochs} epochs")
    print("| buffers | readout scale (per V) | training | test | hidden membranes, 99th percentile |")
    print("|---|---|---|---|---|")
    for gain, rail, scale in ((2.0, None, 30.0), (2.0, None, 300.0), (8.0, 1.35, 30.0), (8.0, 1.35, 300.0)):
        train, test, high = run(data, gain, rail, scale, args.epochs)
        buffers = f"ReLU, gain {gain:g}" + ("" if rail is None else f", rail {rail:g} V")
        print(f"| {buffers} | {scale:g} | {train:.2f} % | {test:.2f} % | {high:.3f} V |", flush=True)


if __name__ == "__main__":
    main()
