"""The ``memspice`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memspice.errors import MemspiceError


def _generated_files(module, what: str):
    """The handler of `memspice models` / `memspice netlists`: write the files, or --check them."""

    def handler(args: argparse.Namespace) -> int:
        if args.check:
            bad = module.stale(args.out)
            if bad:
                print(f"{what} out of date in {args.out}: {', '.join(bad)}", file=sys.stderr)
                print(f"regenerate them with: memspice {what}", file=sys.stderr)
                return 1
            print(f"{what} in {args.out} match their definitions ({len(module.generated())} files)")
            return 0
        for path in module.write(args.out):
            print(path)
        return 0

    return handler


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


def _characterize(args: argparse.Namespace) -> int:
    import json

    from memspice.characterize import characterize_mif
    from memspice.devices.mif import KANG2021
    from memspice.plots import plot_characterization

    currents = np.geomspace(args.min_current, args.max_current, args.points) if args.points > 1 else [args.min_current]
    params = {"default": {}, "kang2021": KANG2021}[args.preset]
    result = characterize_mif(currents, args.reference_current, params=params, spike_threshold=args.threshold,
                              workers=args.workers, timeout=args.timeout, progress=not args.json)
    if args.plot:
        plot_characterization(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"MIF neuron ({args.preset} parameters) in ngspice ({len(currents)} step currents, {result.wall_s:.1f} s):")
    print("  input (µA)  spikes in 100 µs  rate (kHz)")
    for c, n, r in zip(result.currents, result.spike_counts, result.rates):
        print(f"  {c * 1e6:10.3g}  {n:16d}  {r / 1e3:10.1f}")
    rheobase = f"{result.rheobase * 1e6:.3g} µA" if result.rheobase else "none in the grid"
    print(f"rheobase (smallest grid current that fires): {rheobase}")
    print(f"at {result.reference_current * 1e6:g} µA: ISI {result.isi * 1e6:.3f} µs, "
          f"threshold {result.threshold:.3f} V, "
          f"peak {result.peak:.3f} V, width {result.width * 1e9:.1f} ns, undershoot {result.undershoot:.3f} V, "
          f"refractory {result.refractory * 1e6:.3f} µs")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    import json

    import torch

    from memspice.solver import METHODS
    from memspice.validate import report
    from memspice.validate.cases import CASES, DEFAULT_METHOD, SWEEP_FACTORS, TorchSettings, run_case

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MemspiceError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    method = args.method or DEFAULT_METHOD
    settings = TorchSettings(dt=args.dt, method=method, device=args.device, dtype=args.dtype)
    if args.sweep_dt:
        dts = [args.dt * f for f in SWEEP_FACTORS]
        sweep = report.sweep_dt(dts, [args.method] if args.method else list(METHODS), settings, workers=args.workers)
        if args.plot:
            report.plot_sweep(sweep, args.plot)
        print(json.dumps(sweep) if args.json else report.sweep_table(sweep))
        return 0
    stimulus = report.load_stimulus(args.stimulus) if args.stimulus else None
    if stimulus is not None:
        off_grid = [t for t in stimulus.times if abs(t / args.dt - round(t / args.dt)) > 1e-6]
        if off_grid:
            print(f"memspice: warning: {len(off_grid)} stimulus breakpoint(s) lie between the solver's grid points "
                  f"(first at {off_grid[0]:g} s, dt = {args.dt:g} s); the solver takes its input as linear "
                  f"between grid points, so near them the two engines see different inputs", file=sys.stderr)
    cases = list(CASES) if args.case == "all" else [args.case]
    if stimulus is not None and args.case not in ("mif-step", "all"):
        raise MemspiceError(f"--stimulus drives the MIF neuron; it replaces mif-step's input, not {args.case}'s")
    if stimulus is not None:
        cases = ["mif-step"]
    results = [run_case(c, settings, stimulus=stimulus, workers=args.workers) for c in cases]
    if args.save:
        report.save_arrays(results[0], args.save)
    if args.plot:
        report.plot_overlay(results[0], args.plot)
    if args.json:
        print(json.dumps(results[0].to_json() if len(results) == 1 else {"cases": [r.to_json() for r in results]}))
        return 0
    for r in results:
        print(report.summary_table(r))
    for what, path in (("arrays", args.save), ("plot", args.plot)):
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from memspice import __version__

    parser = argparse.ArgumentParser(
        prog="memspice",
        description="Circuit-level SPICE co-simulation for fully memristive spiking neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"memspice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from memspice.codegen import files as model_files
    from memspice.netlist import examples

    for what, module, description in (
        ("models", model_files, "Generate models/*.lib and models/*.va from the device definitions."),
        ("netlists", examples, "Generate the example netlists netlists/*.cir (they include ../models/*.lib)."),
    ):
        p = sub.add_parser(what, help=description.split(" from ")[0].split(" (")[0].lower().rstrip("."),
                           description=description)
        p.add_argument("--out", type=Path, default=module.DEFAULT_DIR, help="output folder (default: %(default)s)")
        p.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and name the files that differ from the definitions")
        p.set_defaults(func=_generated_files(module, what))

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

    p = sub.add_parser("characterize", help="f–I curve and spike shape of the MIF neuron, measured in ngspice",
                       description="Measure the default MIF neuron in ngspice: spike counts over a log grid of "
                                   "step currents (f–I curve), and threshold, peak, width, undershoot and "
                                   "refractory time at a reference current. Jobs run in parallel.")
    p.add_argument("device", choices=["mif"], help="the device to characterize")
    p.add_argument("--preset", choices=["default", "kang2021"], default="default",
                   help="parameter set: the re-timed default or design.md's reference neuron (default: %(default)s)")
    p.add_argument("--plot", type=_output_file(".png"), help="save the f–I curve and a trace (.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--min-current", type=_positive, default=0.25e-6, help="smallest step in A (default: %(default)g)")
    p.add_argument("--max-current", type=_positive, default=32e-6, help="largest step in A (default: %(default)g)")
    p.add_argument("--points", type=_positive_int, default=15, help="currents in the grid (default: %(default)s)")
    p.add_argument("--reference-current", type=_positive, default=2e-6,
                   help="step in A at which the spike shape is measured (default: %(default)g)")
    p.add_argument("--threshold", type=float, default=0.45, help="spike detection level in V (default: %(default)g)")
    p.add_argument("--workers", type=_positive_int, help="parallel ngspice processes (default: one per core)")
    p.add_argument("--timeout", type=_positive, default=600.0,
                   help="timeout per ngspice run in s (default: %(default)g)")
    p.set_defaults(func=_characterize)

    from memspice.solver import METHODS
    from memspice.validate.cases import CASES, DEFAULT_DT, DEFAULT_METHOD

    p = sub.add_parser("validate", help="run a circuit in ngspice and in the torch solver and compare them",
                       description="Cross-validate the torch solver against ngspice (gear, reltol 1e-6): per probe "
                                   "NRMSE, max error, spike counts and spike-time errors, wall times.")
    p.add_argument("--case", choices=[*CASES, "all"], default="mif-step",
                   help="what to simulate (default: %(default)s)")
    p.add_argument("--dt", type=_positive, default=DEFAULT_DT, help="torch time step in s (default: %(default)g)")
    p.add_argument("--method", choices=METHODS, help=f"integration method (default: {DEFAULT_METHOD})")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="(default: %(default)s)")
    p.add_argument("--stimulus", type=Path, metavar="FILE.csv",
                   help="piecewise-linear input current t_s,i_A into the MIF neuron (replaces mif-step's step)")
    p.add_argument("--sweep-dt", action="store_true",
                   help="mif-step at dt/8, dt/4, dt/2, dt and 2dt for each method: error table and order of "
                        "convergence")
    p.add_argument("--save", type=_output_file(".npz"), help="save t, v_ref, v_torch and the settings (.npz)")
    p.add_argument("--plot", type=_output_file(".png"), help="overlay and difference plot (.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--workers", type=_positive_int, help="parallel ngspice processes (default: one per core)")
    p.set_defaults(func=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (MemspiceError, ValueError) as exc:
        print(f"memspice: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
