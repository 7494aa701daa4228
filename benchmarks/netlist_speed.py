"""Time to write the ngspice netlist of a 784-128-10 network: memspice's text writer against
PySpice's Circuit objects (the crossbar cells only, which dominate). Run:

    .venv/bin/python benchmarks/netlist_speed.py [--skip-pyspice]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from memspice.circuit import Crossbar, Network, NeuronLayer
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import network_netlist
from memspice.netlist.stimuli import DC

SIZES = (784, 128, 10)


def memspice_seconds(synapse: str) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    layers = [(Crossbar(rng.uniform(1e-6, 1e-4, (a, b)), rng.uniform(1e-6, 1e-4, (a, b))), NeuronLayer(b))
              for a, b in zip(SIZES, SIZES[1:])]
    text = network_netlist(Network(layers, synapse=synapse), [DC(float(u)) for u in rng.uniform(0, 1, SIZES[0])],
                           TranSettings(t_end=20e-6))
    return time.perf_counter() - start, text.count("\n")


def pyspice_seconds() -> float:
    from PySpice.Spice.Netlist import Circuit

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    circuit = Circuit("crossbars only")
    for k, (a, b) in enumerate(zip(SIZES, SIZES[1:]), start=1):
        for sign in ("p", "n"):
            ohms = 1 / rng.uniform(1e-6, 1e-4, (a, b))
            for i in range(a):
                for j in range(b):
                    circuit.R(f"l{k}{sign}{i}_{j}", f"r{k}{sign}{i}", f"l{k}_m{j}", float(ohms[i, j]))
    str(circuit)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-pyspice", action="store_true", help="time memspice only")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for synapse in ("resistor", "memristor"):
        seconds, lines = memspice_seconds(synapse)
        print(f"memspice, {synapse} synapses: {seconds:.2f} s for {lines} lines (784-128-10, complete netlist)")
    if not args.skip_pyspice:
        print(f"PySpice Circuit, crossbar resistors only: {pyspice_seconds():.2f} s")


if __name__ == "__main__":
    main()
