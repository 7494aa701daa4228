"""The ``memspice`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from memspice.errors import MemspiceError


def _models(args: argparse.Namespace) -> int:
    from memspice.codegen import files

    if args.check:
        bad = files.stale(args.out)
        if bad:
            print(f"models out of date in {args.out}: {', '.join(bad)}", file=sys.stderr)
            print("regenerate them with: memspice models", file=sys.stderr)
            return 1
        print(f"models in {args.out} match their definitions ({len(files.generated())} files)")
        return 0
    for path in files.write(args.out):
        print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from memspice.fileio import atomic_write_text
    from memspice.netlist.examples import mif_step
    from memspice.plots import plot_neuron
    from memspice.spice.results import Waveforms
    from memspice.spice.runner import run_netlist

    out = Path(args.out)
    netlist = mif_step(amplitude=args.amplitude)
    atomic_write_text(out / "mif_step.cir", netlist)
    print(f"simulating the default MIF neuron in ngspice: {args.amplitude * 1e6:g} µA step, 10-110 µs ...")
    waves = Waveforms.from_plot(run_netlist(netlist, timeout=args.timeout, name="mif_step")[-1])
    t, v = waves.time, waves.signals["v(mem)"]
    spikes = waves.spikes(args.threshold, ["mem"])["v(mem)"]
    print(f"{len(spikes)} spikes (upward crossings of {args.threshold:g} V), times in µs:")
    print("  " + " ".join(f"{s * 1e6:.3f}" for s in spikes))
    if len(spikes) > 1:
        isi = (spikes[-1] - spikes[0]) / (len(spikes) - 1)
        print(f"mean inter-spike interval {isi * 1e6:.3f} µs; peak {v.max():.3f} V; undershoot {v.min():.3f} V")
    states = {f"x{k}": waves.signals[f"v(xneuron.x{k})"] for k in (1, 2)}
    png = plot_neuron(t, v, states, spikes, args.threshold, "MIF neuron in ngspice", out / "mif_step.png")
    print(f"netlist: {out / 'mif_step.cir'}\nplot: {png}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import json
    import time

    from memspice.plots import plot_signals
    from memspice.spice.results import Waveforms
    from memspice.spice.runner import run_file

    start = time.perf_counter()
    plots = run_file(args.netlist, timeout=args.timeout, allow_control=args.allow_control)
    wall = time.perf_counter() - start
    transient = [p for p in plots if "time" in p.variables]
    if not transient:
        raise MemspiceError(f"{args.netlist}: no transient analysis in the results (plots: "
                            f"{', '.join(p.plotname for p in plots)}); add a .tran card")
    try:
        waves = Waveforms.from_plot(transient[-1]).select(args.probe)
    except KeyError as exc:
        raise MemspiceError(exc.args[0]) from None
    spikes = waves.spikes(args.threshold)
    if args.out:
        waves.save(args.out)
    if args.plot:
        plot_signals(waves.time, waves.signals, f"{args.netlist.name} (ngspice)", args.plot)
    if args.json:
        print(json.dumps({
            "engine": "ngspice",
            "wall_s": round(wall, 6),
            "n_points": len(waves.time),
            "signals": list(waves.signals),
            "spikes": {k: v.tolist() for k, v in spikes.items()},
        }))
        return 0
    print(f"{args.netlist}: {len(waves.time)} points in {wall:.2f} s")
    for name, times in spikes.items():
        shown = " ".join(f"{t * 1e6:.3f}" for t in times[:20]) + (" ..." if len(times) > 20 else "")
        print(f"  {name}: {len(times)} spikes above {args.threshold:g} V" + (f" at µs: {shown}" if len(times) else ""))
    for what, path in (("waveforms", args.out), ("plot", args.plot)):
        if path:
            print(f"{what}: {path}")
    return 0


def _output_file(*suffixes: str):
    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {' or '.join(suffixes)}, got {text!r}")
        return path
    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from memspice import __version__
    from memspice.codegen.files import DEFAULT_DIR

    parser = argparse.ArgumentParser(
        prog="memspice",
        description="Circuit-level SPICE co-simulation for fully memristive spiking neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"memspice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="write the SPICE (.lib) and Verilog-A (.va) model files",
                       description="Generate models/*.lib and models/*.va from the device definitions.")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR, help="output folder (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and name the files that differ from the definitions")
    p.set_defaults(func=_models)

    p = sub.add_parser("demo", help="simulate the default MIF neuron in ngspice, print spikes, save a plot",
                       description="Run the built-in demo: the MIF neuron under a current step in ngspice.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: %(default)s)")
    p.add_argument("--amplitude", type=_positive, default=2e-6, help="input step in A (default: %(default)g)")
    p.add_argument("--threshold", type=float, default=0.45, help="spike threshold in V (default: %(default)g)")
    p.add_argument("--timeout", type=_positive, default=300.0, help="ngspice timeout in s (default: %(default)g)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("simulate", help="run any ngspice netlist; spikes, waveforms, plot, JSON",
                       description="Simulate NETLIST with ngspice (batch mode) and report spikes of the node voltages.")
    p.add_argument("netlist", type=Path, metavar="NETLIST", help="an ngspice netlist with a .tran analysis")
    p.add_argument("--out", type=_output_file(".npz", ".csv"), help="save the waveforms (.npz or .csv)")
    p.add_argument("--plot", type=_output_file(".png"), help="save a plot of the probed signals (.png)")
    p.add_argument("--probe", nargs="+", metavar="NAME",
                   help="signals to keep, e.g. mem or 'v(mem)' or 'i(vin)' (default: all)")
    p.add_argument("--threshold", type=float, default=0.45, help="spike threshold in V (default: %(default)g)")
    p.add_argument("--timeout", type=_positive, default=600.0, help="ngspice timeout in s (default: %(default)g)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--allow-control", action="store_true",
                   help="trust the netlist's .control blocks (shell commands, writes outside the run folder)")
    p.set_defaults(func=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MemspiceError as exc:
        print(f"memspice: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
