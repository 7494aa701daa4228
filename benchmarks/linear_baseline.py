"""What a dataset asks of a network beyond a linear classifier: a softmax regression on the raw
pixels (no circuit), trained like the recipes (Adam, batch 64, the same epochs), and for scale
a 128-unit ReLU perceptron. Prints the training and test accuracy of both. Run:

    .venv/bin/python benchmarks/linear_baseline.py [--dataset fashion-mnist] [--epochs 6]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from memspice.data import DATASETS, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's step (default: %(default)g)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_dataset(args.dataset, args.data_dir)
    x, y = torch.as_tensor(data.train_x), torch.as_tensor(data.train_y)
    x_test, y_test = torch.as_tensor(data.test_x), torch.as_tensor(data.test_y)
    n_in, n_out = data.n_features, len(data.classes)
    models = {"softmax regression": nn.Linear(n_in, n_out),
              "ReLU perceptron 128": nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Linear(128, n_out))}
    for name, model in models.items():
        optimizer = torch.optim.Adam(model.parameters(), args.lr)
        for _ in range(args.epochs):
            for batch in torch.randperm(len(x)).split(args.batch_size):
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            train_acc = (model(x).argmax(1) == y).float().mean().item()
            test_acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"{args.dataset}, {name}, {args.epochs} epochs: training accuracy {100 * train_acc:.2f} %, "
              f"test accuracy {100 * test_acc:.2f} %")


if __name__ == "__main__":
    main()
