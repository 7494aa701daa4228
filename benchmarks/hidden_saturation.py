"""Why the spike-decided Fashion-MNIST networks stop near 85 %: a perceptron of the same size whose
hidden units saturate as the MIF neuron's mean membrane does, trained with Adam as the recipes
train the circuit.

A MIF neuron passes on a mean membrane that is linear in its column's drive up to the first spike
and then hardly rises (``benchmarks/mif_transfer.py --window 8e-6``: 0.20 V at one spike, 0.28 V
at four in an 8 µs window on a 16 µS column, where the rate stops rising). The perceptron here
is 784-128-10 (``--hidden``) without biases (a crossbar has none), its hidden units
``clamp(h, 0, level)``: the same family of functions for every ``level`` (the weights can
scale), so what differs between the rows is only where training meets the saturation. Each row
trains from the same seed, 6 epochs, batch 64, and prints training and test accuracy and the
share of hidden units saturated on the training set. A row adds a slowly rising channel above the
saturation (``count_channel``: what a spike count adds). The last rows continue the saturated
network for 3 more epochs with both layers at one rate, or with the hidden layer 10x slower
(``memspice train --layer-lr``). ``--ensemble N`` adds what N independent saturated networks
(seeds 0..N-1) score together, their log-probabilities averaged: what a chip of N independent tiles
whose output populations pool their readings could gain. Run:

    .venv/bin/python benchmarks/hidden_saturation.py [--dataset fashion-mnist] [--epochs 6] [--ensemble N]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from torch import nn

from memspice.data import DATASETS, load_dataset

SATURATION = 0.4  # a level on the scale of nn.Linear's initial pre-activations, as the MIF's is on its drive's


class Perceptron(nn.Module):
    """``n_in``-``hidden``-``n_out`` without biases, hidden units ``clamp(h, 0, level)`` (no
    ``level``: a ReLU); ``count_channel``: plus ``level·ln(1 + relu(h - level)/level)``, a channel
    that goes on rising, slowly, above the saturation, as a spike count does with the drive
    (the pulse extenders' share of a hidden neuron's rows, docs/results.md)."""

    def __init__(self, n_in: int, hidden: int, n_out: int, level: float | None, count_channel: bool = False) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(n_in, hidden, bias=False), nn.Linear(hidden, n_out, bias=False)
        self.level, self.count_channel = level, count_channel

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, hidden pre-activations)``."""
        h = self.hidden(x)
        out = h.clamp(0, self.level) if self.level else F.relu(h)
        if self.count_channel:
            out = out + self.level * torch.log1p(F.relu(h - self.level) / self.level)
        return self.out(out), h


def fit(model: Perceptron, data, epochs: int, lr_hidden: float, lr_out: float) -> None:
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    optimizer = torch.optim.Adam([{"params": model.hidden.parameters(), "lr": lr_hidden},
                                  {"params": model.out.parameters(), "lr": lr_out}])
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[batch])[0], y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def report(name: str, model: Perceptron, data) -> None:
    def accuracy(x, y) -> tuple[float, torch.Tensor]:
        logits, h = model(torch.as_tensor(x))
        return 100 * (logits.argmax(1) == torch.as_tensor(y)).float().mean().item(), h

    train, h = accuracy(data.train_x, data.train_y)
    test, _ = accuracy(data.test_x, data.test_y)
    saturated = 100 * (h > model.level).float().mean().item() if model.level else 0.0
    print(f"| {name} | {train:.2f} % | {test:.2f} % | {saturated:.1f} % |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--ensemble", type=int, default=0, metavar="N",
                        help="also train N saturated networks from seeds 0..N-1 and score them together")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data_dir)
    sizes = (data.n_features, args.hidden, len(data.classes))

    def fresh(level: float | None, out_scale: float = 1.0, count_channel: bool = False, seed: int = 0) -> Perceptron:
        torch.manual_seed(seed)
        model = Perceptron(*sizes, level, count_channel)
        with torch.no_grad():
            model.out.weight.mul_(out_scale)
        return model

    print(f"{args.dataset}, {'-'.join(map(str, sizes))} without biases, {args.epochs} epochs of Adam, batch 64")
    print("| hidden units, rates (hidden, output) | training | test | hidden units saturated |\n|---|---|---|---|")
    rows = [("ReLU, 1e-3 both", None, 1.0, 1e-3, 1e-3),
            (f"clamp at {SATURATION:g}, 1e-3 both", SATURATION, 1.0, 1e-3, 1e-3),
            (f"clamp at {10 * SATURATION:g}, 1e-3 both", 10 * SATURATION, 1.0, 1e-3, 1e-3),
            (f"clamp at {SATURATION:g}, hidden 1e-4, output 1e-3", SATURATION, 1.0, 1e-4, 1e-3),
            (f"clamp at {SATURATION:g}, hidden 1e-4, output 1e-2 from 10x its initial weights", SATURATION, 10.0,
             1e-4, 1e-2)]
    for name, level, out_scale, lr_hidden, lr_out in rows:
        model = fresh(level, out_scale)
        fit(model, data, args.epochs, lr_hidden, lr_out)
        report(name, model, data)
        if level == SATURATION and lr_hidden == lr_out:
            saturated = copy.deepcopy(model)
    model = fresh(SATURATION, count_channel=True)
    fit(model, data, args.epochs, 1e-3, 1e-3)
    report(f"clamp at {SATURATION:g} plus {SATURATION:g}·ln(1 + relu(h - {SATURATION:g})/{SATURATION:g}), 1e-3 both",
           model, data)
    for name, lr_hidden in (("1e-3 both", 1e-3), ("hidden 1e-4, output 1e-3", 1e-4)):
        model = copy.deepcopy(saturated)
        torch.manual_seed(1)
        fit(model, data, 3, lr_hidden, 1e-3)
        report(f"clamp at {SATURATION:g} network above, 3 more epochs at {name}", model, data)
    if args.ensemble:
        print(f"\n| saturated network (clamp at {SATURATION:g}, 1e-3 both) | test alone | test with the ones above |")
        print("|---|---|---|")
        x, y = torch.as_tensor(data.test_x), torch.as_tensor(data.test_y)
        log_probs = []
        for seed in range(args.ensemble):
            if seed == 0:
                member = saturated  # the row above
            else:
                member = fresh(SATURATION, seed=seed)
                fit(member, data, args.epochs, 1e-3, 1e-3)
            with torch.no_grad():
                log_probs.append(member(x)[0].log_softmax(1))
            alone = 100 * (log_probs[-1].argmax(1) == y).float().mean().item()
            together = 100 * (torch.stack(log_probs).mean(0).argmax(1) == y).float().mean().item()
            print(f"| seed {seed} | {alone:.2f} % | {together:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
