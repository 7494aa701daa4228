"""ngspice time per verified test sample: today's netlist (crossbar cards column by column, KLU
asked for) against the earlier form (row by row, Sparse 1.3), in one run, with their waveforms
compared.

All decks are the same circuit: the netlist of ``memspice export`` for one test sample; that
netlist without ``.options klu``; and that with its crossbar cards sorted back into row order.
ngspice's Sparse 1.3 builds its linked lists and picks its pivot order from the element order, and
a layer of 784x128x2 cells puts ~1 600 entries in every membrane's row, so the order decides how
long the set-up, the ordering and every Newton iteration take (``--acct`` prints ngspice's own
split); ngspice 42 and later factor with KLU when asked (ngspice 39 ignores the option, so its
last two decks are the same). Each deck runs in its own ngspice process, two at a time (one core
each), ``--repeats`` times; prints the best time of each, the speed-up and the largest difference
of the saved output membranes (V) and time points (s) from the first deck. The ngspice on PATH
runs (put another first on PATH to measure it; with ``MEMSPICE_SANDBOX=off`` if it lives outside
the folders the sandbox shows). Run:

    .venv/bin/python benchmarks/ngspice_per_sample.py [--checkpoint pretrained/fashion-mnist-intermediate/checkpoint.pt]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from memspice.data import load_dataset
from memspice.deploy import export_netlist
from memspice.netlist.circuits import in_row_order
from memspice.spice.runner import run_netlist
from memspice.train.loop import load_trained


def simulate(netlist: str, name: str) -> tuple[float, dict]:
    start = time.perf_counter()
    plot = run_netlist(netlist, timeout=3600, name=name)[-1]
    return time.perf_counter() - start, plot.variables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="pretrained/fashion-mnist-intermediate/checkpoint.pt")
    parser.add_argument("--sample", type=int, default=0, help="test sample index (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--acct", action="store_true", help="also print ngspice's own split (.options acct)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trained = load_trained(args.checkpoint)
    data = load_dataset(trained.config.dataset, trained.config.data_dir)
    start = time.perf_counter()
    today = export_netlist(trained, data.test_x[args.sample], args.sample, int(data.test_y[args.sample]))
    export_s = time.perf_counter() - start
    if "\n.options klu " not in today:
        raise SystemExit("the exported deck does not ask for KLU: nothing to compare")
    sparse = today.replace("\n.options klu ", "\n.options ", 1)
    decks = {"rows, Sparse (before)": in_row_order(sparse), "columns, Sparse": sparse, "columns, KLU (today)": today}
    best, waves = {}, {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # one core each
        for _ in range(args.repeats):
            futures = {form: pool.submit(simulate, deck, f"order{k}") for k, (form, deck) in enumerate(decks.items())}
            for form, future in futures.items():
                seconds, waves[form] = future.result()
                best[form] = min(best.get(form, np.inf), seconds)
    before = waves["rows, Sparse (before)"]

    def difference(w: dict) -> dict:
        if len(w["time"]) != len(before["time"]):
            return {"time_s": None, "voltage_v": None}
        return {"time_s": float(np.abs(w["time"] - before["time"]).max()),
                "voltage_v": float(max(np.abs(w[k] - before[k]).max() for k in before if k != "time"))}

    result = {
        "network": "-".join(map(str, trained.model.sizes)), "sample": args.sample,
        "window_s": trained.t_end, "export_s": export_s, "seconds": best,
        "speedup": best["rows, Sparse (before)"] / best["columns, KLU (today)"],
        "time_points": {form: len(w["time"]) for form, w in waves.items()},
        "difference_from_before": {form: difference(w) for form, w in waves.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['network']} network, test sample {args.sample}, {result['window_s'] * 1e6:g} µs window; "
          f"netlist written in {export_s:.2f} s")
    for form, seconds in best.items():
        d = result["difference_from_before"][form]
        print(f"  {form:<22} {seconds:7.1f} s in ngspice ({result['time_points'][form]} time points; largest "
              f"difference from the first: {d['voltage_v']} V, time points {d['time_s']} s)")
    print(f"  speed-up {result['speedup']:.2f}x")
    if args.acct:
        print("ngspice's own split (.options acct), one run each, one after the other:")
        for form, deck in decks.items():
            print(f"  {form}: {acct(deck)}")


def acct(deck: str) -> str:
    """ngspice's accounting of one run of ``deck``: set-up and ordering, load, factor, solve (s)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from memspice.spice.runner import ngspice_executable

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deck.cir"
        path.write_text(deck.replace("\n.options ", "\n.options acct ", 1))
        done = subprocess.run([ngspice_executable(), "-n", "-b", "-r", "deck.raw", str(path)], capture_output=True,
                              text=True, cwd=tmp, timeout=3600)  # with a raw file: batch mode then prints the acct
        out = done.stdout + done.stderr
    wanted = ("Total analysis time", "Matrix reorder time", "Matrix load time", "Matrix factor time",
              "Matrix solve time", "Transient iterations", "Circuit total non-zeroes")
    found = {m.group(1): m.group(2) for m in re.finditer(r"^(.+?) = ([0-9.e+-]+)", out, re.MULTILINE)}
    return ", ".join(f"{name.lower()} {found[name]}" for name in wanted if name in found)


if __name__ == "__main__":
    main()
