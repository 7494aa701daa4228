"""The MIF neuron's nonlinearity as a trained network sees it: one neuron on a crossbar column
whose Thevenin voltage is ``vs`` (a differential pair ``G⁺ = G(1 + vs)/2``, ``G⁻ = G(1 - vs)/2``
driven by a 1 V row, so the column's total conductance is ``G``), integrated from rest over a
window by the torch solver; prints the window's mean membrane (what a buffer passes on, on
average, and what the membrane-mean readout sees) and the spike count against ``vs``.

Below the threshold the mean membrane is linear in ``vs`` (a sub-threshold network is a linear
classifier); a neuron that spikes in the window gives a mean that hardly depends on ``vs``. Run:

    .venv/bin/python benchmarks/mif_transfer.py [--window 6e-6] [--dt 200e-9]
"""

from __future__ import annotations

import argparse

import torch

from memspice.nn.readout import membrane_mean, spike_counts
from memspice.solver.transient import simulate_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=6e-6, help="s (default: %(default)s, the Fashion recipe's)")
    parser.add_argument("--dt", type=float, default=200e-9, help="s (default: %(default)s)")
    parser.add_argument("--conductances", type=float, nargs="+", default=[4e-6, 8e-6, 12e-6],
                        help="column totals G in S (default: %(default)s)")
    args = parser.parse_args()
    steps = int(round(args.window / args.dt))
    vs = torch.linspace(-0.4, 1.0, 29, dtype=torch.float64)
    rows = torch.ones(1, steps + 1, 1, dtype=torch.float64)  # one 1 V row
    print(f"window {args.window:g} s, dt {args.dt:g} s; per column total G: mean membrane (V) / spikes")
    print("vs (V) " + "".join(f"{f'G = {g * 1e6:g} µS':>18}" for g in args.conductances))
    table = []
    for g in args.conductances:
        column = []
        for v in vs.tolist():
            weights = [(torch.tensor([[g * (1 + v) / 2]], dtype=torch.float64),
                        torch.tensor([[g * (1 - v) / 2]], dtype=torch.float64))]
            membrane = simulate_network(weights, rows, args.dt).v[0]
            column.append((membrane_mean(membrane).item(), int(spike_counts(membrane).item())))
        table.append(column)
    for i, v in enumerate(vs.tolist()):
        print(f"{v:6.2f} " + "".join(f"{table[k][i][0]:>12.3f} / {table[k][i][1]:d}" for k in range(len(table))))


if __name__ == "__main__":
    main()
