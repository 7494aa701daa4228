"""The ``memspice`` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memspice.defaults import DT, EVAL_BATCH_SIZE, METHOD, SPIKE_THRESHOLD
from memspice.errors import ConfigError, MemspiceError, MemspiceWarning
from memspice.fileio import json_text

if TYPE_CHECKING:
    from memspice.devices import DeviceModel

DEMO_THREADS = 1  # the demo's torch threads: see `memspice demo --help` and docs/speed.md


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


def _step(args: argparse.Namespace) -> int:
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


def _train_config(args: argparse.Namespace):
    """The run's configuration: the dataset's recipe (or, with --resume, the saved run's options)
    with every option given on the command line on top."""
    import json
    from dataclasses import replace

    from memspice.train.config import TUPLE_FIELDS, TrainConfig, recipe

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    for name in TUPLE_FIELDS:
        if name in given:
            given[name] = tuple(given[name])
    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file():
        try:
            values = json.loads(saved.read_text())
        except ValueError as exc:
            raise ConfigError(f"{saved}: not a run's configuration ({exc})") from None
        return replace(TrainConfig.from_dict(values), **given)
    return recipe(given.pop("dataset", "digits"), **given)




def _train(args: argparse.Namespace) -> int:
    from memspice.train.loop import train

    config = _train_config(args)
    _check_device(config.device)
    out = Path(args.out)
    if os.environ.get("RANK", "0") == "0":  # once, not per torchrun process
        print(f"training {config.dataset}: {'-'.join(map(str, config.hidden))} hidden, {config.epochs} epochs of "
              f"batch {config.batch_size}, window {config.window * 1e6:g} µs = {config.n_steps} steps of "
              f"{config.dt * 1e9:g} ns ({config.method}), run folder {out}", file=sys.stderr)
    try:
        results = train(config, out, resume=args.resume, progress=not args.quiet, neuron=args.neuron)
    except KeyboardInterrupt as interrupt:
        from memspice.interrupts import exit_status

        print(f"\ninterrupted: checkpoint saved in {out}; continue with: memspice train --out {out} --resume",
              file=sys.stderr)
        return exit_status(interrupt)
    if results is None:  # a torchrun worker other than the main process
        return 0
    if args.json:
        print(json_text(results))
    else:
        from memspice.solver.monitor import summary_lines

        print(f"test accuracy {100 * results['test_acc']:.2f} % on {results['test_samples']} samples "
              f"({results['train_s']:.0f} s of training, {results['epoch_s']:.0f} s for the last epoch)")
        for line in summary_lines(results):
            print(line.strip())
        print(f"run folder: {out} (checkpoint.pt, metrics.csv, results.json, training.png, membranes.png)")
    return 0


def _check_device(device: str) -> None:
    """``--device``: a torch device memspice runs on (cpu, cuda, cuda:N) that exists here."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise MemspiceError(f"--device {device!r}: memspice runs on cpu or cuda (cuda:N)")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise MemspiceError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise MemspiceError(f"--device {device}: this machine has CUDA devices 0..{torch.cuda.device_count() - 1}")


def _load_test_set(trained, data_dir):
    from memspice.data import load_dataset

    return load_dataset(trained.config.dataset, data_dir or trained.config.data_dir)


def _evaluate(args: argparse.Namespace) -> int:
    from memspice.data import load_dataset
    from memspice.fileio import atomic_write_text, file_sha256
    from memspice.train.assess import assess, assessment_table
    from memspice.train.loop import load_trained

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _check_device(args.device)
    trained = load_trained(args.checkpoint, device=args.device, neuron=args.neuron)
    trained.model.solver = trained.model.solver.replace(fused=not args.no_fused)
    data = load_dataset(args.dataset or trained.config.dataset, args.data_dir or trained.config.data_dir)
    samples = None if args.samples == "all" else args.samples
    report = assess(trained, data, samples, args.ablate, args.batch_size, progress=not args.json, strict=args.strict,
                    allow_cell_writes=args.allow_cell_writes, adaptive=args.adaptive)
    report = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": file_sha256(args.checkpoint), **report}
    if args.save:
        atomic_write_text(args.save, json_text(report, indent=2) + "\n")
    print(json_text(report) if args.json else assessment_table(report))
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from memspice.data import load_dataset
    from memspice.fileio import atomic_write_text, file_sha256
    from memspice.hardware import load_spec
    from memspice.train.loop import load_trained
    from memspice.train.robustness import SAMPLES, robustness, robustness_table

    spec = load_spec(args.hardware)  # a bad description fails before the network and data load
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    trained = load_trained(args.checkpoint, neuron=args.neuron)
    trained.model.solver = trained.model.solver.replace(fused=not args.no_fused)
    data = load_dataset(trained.config.dataset, args.data_dir or trained.config.data_dir)
    samples = {None: min(SAMPLES, len(data.test_x)), "all": None}.get(args.samples, args.samples)
    report = robustness(trained, data, spec, args.chips, samples, args.spice,
                        args.seed, args.batch_size, args.workers, progress=not args.json,
                        allow_cell_writes=args.allow_cell_writes, calibrate=args.calibrate,
                        calibrate_epochs=args.calibrate_epochs, calibrate_layers=args.calibrate_layers)
    report = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": file_sha256(args.checkpoint), **report}
    if args.save:
        atomic_write_text(args.save, json_text(report, indent=2) + "\n")
    print(json_text(report) if args.json else robustness_table(report))
    return 0


def _export(args: argparse.Namespace) -> int:
    from memspice.deploy import export_netlist
    from memspice.fileio import atomic_write_text
    from memspice.train.loop import load_trained

    trained = load_trained(args.checkpoint, neuron=args.neuron)
    data = _load_test_set(trained, args.data_dir)
    if not 0 <= args.sample < len(data.test_x):
        raise MemspiceError(f"--sample {args.sample}: the {data.name} test set has samples 0..{len(data.test_x) - 1}")
    netlist = export_netlist(trained, data.test_x[args.sample], args.sample, int(data.test_y[args.sample]),
                             args.synapse_model)
    atomic_write_text(args.out, netlist)
    sizes = "-".join(map(str, trained.model.sizes))
    print(f"{args.out}: {sizes} network, {args.synapse_model} synapses, test sample {args.sample} "
          f"(label {data.test_y[args.sample]}: {data.classes[data.test_y[args.sample]]}); "
          f"run it with: memspice simulate {args.out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from memspice.deploy import verify
    from memspice.train.loop import load_trained

    trained = load_trained(args.checkpoint, neuron=args.neuron)
    data = _load_test_set(trained, args.data_dir)
    requested = _sample_indices(args, len(data.test_x), data.name)
    indices = requested if args.part is None else requested[args.part[0] - 1::args.part[1]]
    journal = verify_journal(args.save) if args.save else None
    if journal and journal.is_file() and not args.json:
        print(f"resuming from {journal}: samples it holds are not simulated again")
    try:
        report = verify(trained, data.test_x, data.test_y, indices, workers=args.workers, synapse=args.synapse_model,
                        timeout=args.timeout, progress=not args.json, journal=journal, strict=args.strict,
                        requested=requested, part=args.part, allow_cell_writes=args.allow_cell_writes)
    except KeyboardInterrupt:
        if journal:
            print(f"memspice: the samples that finished are in {journal}; the same command resumes from it",
                  file=sys.stderr)
        raise
    report = {"checkpoint": str(args.checkpoint), **report}
    status = _print_verify_report(report, args.save, args.json)
    if journal:
        journal.unlink(missing_ok=True)  # the report holds every sample now
    return status


def _sample_indices(args: argparse.Namespace, available: int, dataset: str):
    """The test samples ``verify`` runs: ``--samples`` from ``--offset`` on, or, with
    ``--sample-seed``, that many drawn at random (without replacement, sorted)."""
    import numpy as np

    if args.sample_seed is not None:
        if args.offset:
            raise MemspiceError("--sample-seed draws the samples from the whole test set; drop --offset")
        if args.samples > available:
            raise MemspiceError(f"--samples {args.samples}: the {dataset} test set has {available} samples")
        return np.sort(np.random.default_rng(args.sample_seed).choice(available, args.samples, replace=False))
    if args.offset + args.samples > available:
        raise MemspiceError(f"--offset {args.offset} --samples {args.samples}: the {dataset} test set has "
                            f"{available} samples")
    return np.arange(args.offset, args.offset + args.samples)


def verify_journal(save: Path) -> Path:
    """Where ``memspice verify --save REPORT.json`` keeps each finished sample until the report
    is written: a rerun of the same command after an interruption resumes from it."""
    return save.with_name(save.name + ".partial")


def _verify_merge(args: argparse.Namespace) -> int:
    import json

    from memspice.deploy import merge
    from memspice.deploy.verify import check_report

    reports = []
    for path in args.reports:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise MemspiceError(f"{path}: not a report saved by `memspice verify --save` ({exc})") from None
        reports.append(check_report(report, str(path)))
    merged = merge(reports, [str(path) for path in args.reports])
    checkpoints = {r.get("checkpoint") for r in reports}
    return _print_verify_report({"checkpoint": checkpoints.pop() if len(checkpoints) == 1 else None, **merged},
                                args.save, args.json)


def _print_verify_report(report: dict, save: Path | None, as_json: bool) -> int:
    """Save a verification report (``--save``) and print its summary, as JSON or as a table."""
    if save:
        from memspice.fileio import atomic_write_text

        atomic_write_text(save, json_text(report, indent=2) + "\n")
    if as_json:
        keys = ("samples", "acc_spice", "acc_torch", "agreement", "count_match", "decided_by_spikes",
                "decided_by_spikes_torch", "near_ties", "elapsed_s", "compute_s", "missing")
        print(json_text({k: report[k] for k in keys}))
    else:
        print(verify_table(report))
    return 0


def verify_table(report: dict) -> str:
    """The text summary of a verification report."""
    from memspice.deploy.verify import index_ranges
    from memspice.solver.monitor import summary_lines

    settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in report["ngspice_settings"].items())
    return "\n".join([
        f"{report['samples']} test samples, {report['synapse']} synapses; ngspice ({settings}) vs torch solver",
        f"  accuracy   ngspice {100 * report['acc_spice']:6.2f} %   torch {100 * report['acc_torch']:6.2f} %",
        f"  agreement  {100 * report['agreement']:6.2f} % of predictions, "
        f"{100 * report['count_match']:.2f} % of output spike counts equal",
        f"  decisions  {100 * report['decided_by_spikes']:.1f} % by spikes in ngspice, "
        f"{100 * report['decided_by_spikes_torch']:.1f} % in torch (the rest by the mean membrane); "
        f"{report['near_ties']} near-ties (a margin within the engines' largest difference)",
        f"  waveforms  first-spike times differ by at most {1e9 * report['first_spike_error_s']:.3g} ns, "
        f"membrane time averages by {1e3 * report['mean_error_v']:.3g} mV",
        f"  time       {report['elapsed_s']:.1f} s elapsed, {report['compute_s']:.1f} s of compute (ngspice "
        f"{report['compute_s'] - report['torch_s']:.1f} s over {report['samples']} samples, torch "
        f"{report['torch_s']:.1f} s)" + (f"; {report['resumed']} samples resumed from an earlier run"
                                          if report.get("resumed") else ""),
        *([f"  MISSING    {len(report['missing'])} requested samples are in no part: "
           f"{index_ranges(report['missing'])}"] if report.get("missing") else []),
        *summary_lines(report),
    ])


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from memspice.deploy import verify
    from memspice.fileio import atomic_write_text
    from memspice.train.config import recipe
    from memspice.train.loop import load_trained, train

    out = Path(args.out)
    config = recipe("digits", epochs=args.epochs, threads=args.threads)
    resume = (out / "checkpoint.pt").is_file()
    print(f"1/2 training the digits network {'-'.join(map(str, (64, *config.hidden, 10)))} through its circuit "
          f"(MEMprop, {config.epochs} epochs, {config.n_steps} steps of {config.dt * 1e9:g} ns per sample, "
          f"{config.threads} torch thread{'s' if config.threads > 1 else ''})"
          + (f"; continuing the run in {out}" if resume else ""))
    finished = _finished_results(out, config.epochs) if resume else None
    results = finished or train(config, out, resume=resume)
    print(f"   torch test accuracy {100 * results['test_acc']:.2f} % on {results['test_samples']} samples"
          + (f" (from {out / 'results.json'})" if finished else ""))
    trained = load_trained(out / "checkpoint.pt")
    data = _load_test_set(trained, None)
    journal = out / "verify-journal.jsonl"  # kept: a rerun reuses every sample of the same network
    print(f"2/2 verifying {args.samples} test samples in ngspice"
          + (f" (samples in {journal} are reused)" if journal.is_file() else "") + " ...")
    report = verify(trained, data.test_x, data.test_y, np.arange(args.samples), workers=args.workers, journal=journal)
    atomic_write_text(out / "verify.json", json_text(report, indent=2) + "\n")
    print(verify_table(report))
    print(f"run folder: {out} (training.png, membranes.png, metrics.csv, checkpoint.pt, verify.json)")
    return 0


def _finished_results(out: Path, epochs: int) -> dict | None:
    """The results of a run in ``out`` that has trained its ``epochs`` already, or None."""
    import json

    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and results.get("epochs") == epochs else None


def _simulate(args: argparse.Namespace) -> int:
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
    spikes = waves.spikes(args.threshold, None if args.probe else waves.node_voltages)  # probes: as asked
    if args.out:
        waves.save(args.out)
    if args.plot:
        plot_signals(waves.time, waves.signals, f"{args.netlist.name} (ngspice)", args.plot)
    if args.json:
        print(json_text({
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


def _bench(args: argparse.Namespace) -> int:
    import torch

    from memspice.bench import BenchSettings, run_bench
    from memspice.bench.measure import SPREAD_WARNING
    from memspice.fileio import atomic_write_text

    _check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"device": args.device, "dtype": args.dtype, "fused": args.fused}
    settings = BenchSettings.quick(**options) if args.quick else BenchSettings(**options)
    def say(what: str) -> None:  # on stderr, with --json too: stdout stays one JSON object
        print(f"bench: {what} ...", file=sys.stderr)
    result = run_bench(settings, say)
    if result["lif_cost_ratio_spread"] > SPREAD_WARNING:
        print(f"warning: the cost ratio varied {result['lif_cost_ratio_spread']:.2f}x between rounds: the machine was "
              f"busy; rerun on a quiet machine for firm figures", file=sys.stderr)
    if args.save:
        atomic_write_text(args.save, json_text(result, indent=2) + "\n")
    if args.json:
        print(json_text(result))
        return 0
    neuron, network, training = result["neuron"], result["network"], result["training"]
    sizes = "-".join(map(str, settings.network))
    rows = [("MIF neuron, ngspice (one process per sample)", neuron["ngspice"]["samples_per_s"], "")]
    rows += [(f"MIF neuron, torch batch {b}", r["samples_per_s"], f"{r['samples_per_s'] / rows[0][1]:.3g}x")
             for b, r in neuron["torch"].items()]
    rows += [(f"{sizes}, ngspice, {network['window_s'] * 1e6:g} µs", network["ngspice"]["samples_per_s"], "")]
    rows += [(f"{sizes}, torch batch {network['torch']['batch']}", network["torch"]["samples_per_s"],
              f"{result['network_ratio']:.3g}x")]
    circuit, lif = training["circuit"], training["lif"]
    rows += [(f"training {sizes} (circuit, batch {circuit['batch']})", circuit["samples_per_s"], ""),
             ("training snnTorch Leaky, same sizes and steps", lif["samples_per_s"],
              f"circuit costs {result['lif_cost_ratio']:.3g}x")]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  samples/s  ratio")
    for name, rate, ratio in rows:
        print(f"{name:{width}}  {rate:9.4g}  {ratio}")
    iterations = "/".join(f"{n:.2f}" for n in circuit.get("newton_iterations_per_step", []))
    print(f"per step: circuit {circuit['seconds_per_step'] * 1e3:.2f} ms ({iterations} Newton iterations per layer), "
          f"LIF {lif['seconds_per_step'] * 1e3:.2f} ms; warm-up (compilation): circuit {circuit['warmup_s']:.1f} s, "
          f"LIF {lif['warmup_s']:.1f} s")
    print(f"peak training memory: {result['peak_memory_bytes'] / 2**20:.0f} MiB; {result['machine']['processor']}, "
          f"{result['machine']['cpu_cores']} cores, torch {result['machine']['torch']} "
          f"({settings.device}, {settings.dtype}, fused={settings.fused})")
    if args.save:
        print(f"saved: {args.save}")
    return 0


def _characterize(args: argparse.Namespace) -> int:
    from memspice.characterize import characterize_mif
    from memspice.devices.mif import PRESETS
    from memspice.plots import plot_characterization

    currents = np.geomspace(args.min_current, args.max_current, args.points) if args.points > 1 else [args.min_current]
    params = PRESETS[args.preset]
    result = characterize_mif(currents, args.reference_current, params=params, spike_threshold=args.threshold,
                              workers=args.workers, timeout=args.timeout, progress=not args.json)
    if args.plot:
        plot_characterization(result, args.plot)
    if args.json:
        print(json_text(result.to_json()))
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
    from memspice.devices import MIF
    from memspice.solver import SolverOptions
    from memspice.validate import report
    from memspice.validate.cases import TorchSettings

    _check_device(args.device)
    model = args.neuron or MIF
    neuron = _neuron_params(args.preset, args.param, model)
    settings = TorchSettings(SolverOptions(args.dt, args.method or METHOD, adaptive=args.adaptive), args.device,
                             args.dtype, args.strict)
    if args.sweep_dt:
        return _validate_sweep(args, settings, neuron, model)
    stimulus = report.load_stimulus(args.stimulus) if args.stimulus else None
    if args.suggest_dt:
        return _validate_suggest(args, settings, stimulus, neuron, model)
    return _validate_cases(args, settings, stimulus, neuron, model)


def _validate_sweep(args: argparse.Namespace, settings, neuron: dict, model: DeviceModel) -> int:
    """``validate --sweep-dt``: mif-step at several dt for each method."""
    from memspice.devices import MIF
    from memspice.solver import METHODS
    from memspice.validate import report
    from memspice.validate.cases import SWEEP_FACTORS

    dts = [args.dt * f for f in SWEEP_FACTORS]
    sweep = report.sweep_dt(dts, [args.method] if args.method else list(METHODS), settings, workers=args.workers,
                            neuron=neuron, model=model)
    if args.plot:
        label = (args.preset if not args.param else "user's") if model is MIF else model.name
        report.plot_sweep(sweep, args.plot, label)
    print(json_text(sweep) if args.json else report.sweep_table(sweep))
    return 0


def _validate_suggest(args: argparse.Namespace, settings, stimulus, neuron: dict, model: DeviceModel) -> int:
    """``validate --suggest-dt``: the largest dt that meets the targets (exit 1 when none does)."""
    from memspice.validate import report
    from memspice.validate.cases import mif_stimuli

    if stimulus is None and args.case not in ("mif-step", "mif-pwl", "mif-fi"):
        raise MemspiceError(f"--suggest-dt runs one neuron: choose --case mif-step, mif-pwl or mif-fi "
                            f"(or --stimulus), not {args.case}")
    stimuli = [stimulus] if stimulus is not None else mif_stimuli(args.case)

    def show(row: dict) -> None:
        if not args.json:
            outcome = "met" if row["met"] else "not met"
            print(f"  dt {row['dt']:.3g} s: targets {outcome}", file=sys.stderr, flush=True)

    result = report.suggest_dt(stimuli, settings, args.workers, neuron, show, model)
    print(json_text(result) if args.json else report.suggestion_table(result))
    return 0 if result["suggested_dt"] is not None else 1


def _validate_cases(args: argparse.Namespace, settings, stimulus, neuron: dict, model: DeviceModel) -> int:
    """``validate --case``: each case in both engines, compared; tables, arrays and plots."""
    from memspice.validate import report
    from memspice.validate.cases import CASES, run_case

    if stimulus is not None:
        off_grid = [t for t in stimulus.times if abs(t / args.dt - round(t / args.dt)) > 1e-6]
        if off_grid:
            print(f"memspice: warning: {len(off_grid)} stimulus breakpoint(s) lie between the solver's grid points "
                  f"(first at {off_grid[0]:g} s, dt = {args.dt:g} s); the solver takes its input as linear "
                  f"between grid points, so near them the two engines see different inputs", file=sys.stderr)
        if args.case not in ("mif-step", "all"):
            raise MemspiceError(f"--stimulus drives one neuron; it replaces mif-step's input, not {args.case}'s")
    cases = ["mif-step"] if stimulus is not None else list(CASES) if args.case == "all" else [args.case]
    results = [run_case(c, settings, stimulus=stimulus, workers=args.workers, neuron=neuron, model=model)
               for c in cases]
    saved, plotted = [], []
    for r in results:  # one file per case: NAME-CASE.EXT when several ran
        if args.save:
            saved.append(report.save_arrays(r, _per_case(args.save, r.case, len(results))))
        if args.plot:
            plotted.append(report.plot_overlay(r, _per_case(args.plot, r.case, len(results))))
    if args.json:
        print(json_text(results[0].to_json() if len(results) == 1 else {"cases": [r.to_json() for r in results]}))
        return 0
    for r in results:
        print(report.summary_table(r))
    for what, paths in (("arrays", saved), ("plots", plotted)):
        if paths:
            print(f"{what}: {', '.join(map(str, paths))}")
    return 0


def _neuron_params(preset: str, params: list[tuple[str, float]] | None, model: DeviceModel) -> dict[str, float]:
    """The parameters of ``--preset`` (the MIF neuron's) with ``--param NAME=VALUE`` overrides,
    checked against the neuron ``model`` (one clear error naming the parameter) before anything
    runs."""
    from memspice.devices.mif import MIF, PRESETS

    if model is not MIF and preset != "default":
        raise MemspiceError(f"--preset {preset} is a MIF parameter set; the neuron here is {model.name} "
                            "(give its parameters with --param NAME=VALUE)")
    neuron = {**PRESETS[preset], **dict(params or [])}
    model.resolve(neuron)
    return neuron


def _neuron_model(spec: str) -> DeviceModel:
    """``--neuron MODULE:NAME``: a one-port device model (:func:`memspice.devices.import_model`)."""
    from memspice.devices import import_model

    try:
        return import_model(spec, ports=1)
    except MemspiceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _param(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` with a finite number."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. th1=0.42), got {text!r}")
    return name.strip(), _finite(value)


def _per_case(path: Path, case: str, cases: int) -> Path:
    """``path`` for one case of ``cases``: itself, or ``stem-case.suffix`` when there are several."""
    return path if cases == 1 else path.with_name(f"{path.stem}-{case}{path.suffix}")


def _output_file(*suffixes: str):
    """An output file with one of ``suffixes`` that can be written (checked now, before any work)."""
    def parse(text: str) -> Path:
        from memspice.fileio import check_writable

        path = Path(text)
        if path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {' or '.join(suffixes)}, got {text!r}")
        try:
            return check_writable(path)
        except MemspiceError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _output_folder(text: str) -> Path:
    """An output folder that exists or can be made, and can be written in (checked now)."""
    from memspice.fileio import check_writable_folder

    try:
        return check_writable_folder(Path(text))
    except MemspiceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _whole_number(text: str, lowest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected a {what} whole number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "positive")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "non-negative")


def _part(text: str) -> tuple[int, int]:
    k, slash, n = text.partition("/")
    if not slash or not (k.isdigit() and n.isdigit()) or not 1 <= int(k) <= int(n):
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def _cluster_spec(text: str, local: bool) -> str:
    """``--cluster`` (``local``) or ``--scheduler`` (an address): the text, checked."""
    from memspice.spice.cluster import check_spec

    if text.startswith("local") != local:
        raise argparse.ArgumentTypeError(f"{text!r}: for a running scheduler use --scheduler {text}" if local
                                         else f"{text!r}: for a local cluster use --cluster {text}")
    try:
        return check_spec(text)
    except MemspiceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _local_cluster(text: str) -> str:
    return _cluster_spec(text, local=True)


def _scheduler(text: str) -> str:
    return _cluster_spec(text, local=False)


def _samples(text: str) -> int | str:
    """``--samples``: a positive whole number or ``all``."""
    return "all" if text == "all" else _positive_int(text)


def _sandbox_option(p: argparse.ArgumentParser) -> None:
    """``--sandbox`` on every command that runs ngspice."""
    from memspice.spice import sandbox

    p.add_argument("--sandbox", choices=sandbox.MODES,
                   help="run ngspice in a bubblewrap sandbox: when it works here (auto), always (require: fail "
                        f"if it cannot) or never (off) (default: ${sandbox.ENV_VAR}, else auto)")


@contextlib.contextmanager
def _ngspice_workers(args: argparse.Namespace):
    """While a command runs: ``args.workers`` becomes the Dask cluster of ``--cluster`` or
    ``--scheduler`` (its workers run the ngspice jobs; a local cluster is shut down after)."""
    spec = getattr(args, "cluster", None) or getattr(args, "scheduler", None)
    if not spec:
        yield
        return
    from memspice.spice.cluster import Cluster

    with Cluster(spec) as cluster:
        args.workers = cluster
        yield


def _where_ngspice_runs(p: argparse.ArgumentParser) -> None:
    """``--workers`` here, or ``--cluster`` / ``--scheduler`` (Dask) instead."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, help="parallel ngspice processes (default: one per core)")
    where.add_argument("--cluster", type=_local_cluster, metavar="local[:N]",
                       help="run ngspice on a Dask LocalCluster of N worker processes (default N: one per core); "
                            "needs memspice[cluster]")
    where.add_argument("--scheduler", type=_scheduler, metavar="ADDRESS",
                       help="run ngspice on the workers of a running Dask scheduler, e.g. tcp://HOST:8786 "
                            "(started by `dask scheduler` and `dask worker`, dask-jobqueue, ...)")


def build_parser() -> argparse.ArgumentParser:
    from memspice import __version__

    parser = argparse.ArgumentParser(
        prog="memspice",
        description="Circuit-level SPICE co-simulation for fully memristive spiking neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"memspice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add_parser in (_add_generated_files_parsers, _add_demo_parser, _add_step_parser, _add_train_parser,
                       _add_evaluate_parser, _add_robustness_parser, _add_export_parser, _add_verify_parser,
                       _add_verify_merge_parser, _add_simulate_parser, _add_characterize_parser,
                       _add_validate_parser, _add_bench_parser):
        add_parser(sub)
    return parser


def _trained_network_args(p: argparse.ArgumentParser) -> None:
    """What export and verify share: the checkpoint, the synapse model and the dataset folder."""
    from memspice.circuit import SYNAPSE_KINDS

    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    _checkpoint_neuron_arg(p)
    p.add_argument("--synapse-model", choices=SYNAPSE_KINDS, default="resistor",
                   help="ideal resistors, or synapse memristors programmed to the conductances "
                        "(default: %(default)s)")
    p.add_argument("--data-dir", help="folder of the dataset's IDX files, if not the one used in training")


def _checkpoint_neuron_arg(p: argparse.ArgumentParser) -> None:
    """``--neuron``, for a checkpoint whose neurons are a model of the user's own."""
    p.add_argument("--neuron", metavar="MODULE:NAME",
                   help="the network's neuron model, when it is one of your own (memspice imports only the modules "
                        "you name: importing runs their code)")


def _add_generated_files_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``models`` and ``netlists`` commands' options."""
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


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """The ``demo`` command's options."""
    p = sub.add_parser("demo", help="the main job: train a digits network, verify it in ngspice, print the table",
                       description="End to end on built-in defaults: train the 64-128-10 fully memristive SNN on "
                                   "scikit-learn's digits through its circuit (a few minutes on 2 cores), verify "
                                   "test samples in ngspice against the torch solver, print the table, save plots. "
                                   "Running it again continues (or reuses) the run in --out.")
    p.add_argument("--out", type=_output_folder, default=Path("runs/demo"), help="run folder (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=2, help="training epochs (default: %(default)s)")
    p.add_argument("--samples", type=_positive_int, default=10,
                   help="test samples verified in ngspice (default: %(default)s)")
    p.add_argument("--workers", type=_positive_int, help="parallel ngspice processes (default: one per core)")
    p.add_argument("--threads", type=_positive_int, default=DEMO_THREADS,
                   help="torch CPU threads for training (default: %(default)s: small batches gain little from more, "
                        "and a busy core stalls every thread that waits for it)")
    _sandbox_option(p)
    p.set_defaults(func=_demo)


def _add_step_parser(sub: argparse._SubParsersAction) -> None:
    """The ``step`` command's options."""
    p = sub.add_parser("step", help="simulate the default MIF neuron under a current step in ngspice",
                       description="The MIF neuron under a current step in ngspice: spike times and a plot.")
    p.add_argument("--out", type=_output_folder, default=Path("runs/step"), help="output folder (default: %(default)s)")
    p.add_argument("--amplitude", type=_positive, default=2e-6, help="input step in A (default: %(default)g)")
    _threshold_option(p)
    p.add_argument("--timeout", type=_positive, default=300.0, help="ngspice timeout in s (default: %(default)g)")
    _sandbox_option(p)
    p.set_defaults(func=_step)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    """The ``train`` command's options."""
    p = sub.add_parser("train", help="train a fully memristive SNN through its circuit (MEMprop, BPTT)",
                       description="Train by backpropagation through time through the torch circuit solver. Options "
                                   "not given come from the dataset's recipe (docs/training.md); --resume continues "
                                   "a run exactly where it stopped. Writes checkpoint.pt (every epoch and on "
                                   "Ctrl-C), metrics.csv, results.json and plots into --out.")
    _train_options(p)
    p.add_argument("--out", type=_output_folder, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=_train)


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command's options."""
    from memspice.data import DATASETS
    from memspice.train.assess import ABLATIONS

    p = sub.add_parser("evaluate", help="a trained network's test accuracy in the torch solver, how it decides, and "
                                        "what its hidden spikes are worth",
                       description="Evaluate a checkpoint on the test set with the torch solver: accuracy, the share "
                                   "of decisions made by spikes (count or first spike) rather than by the membrane "
                                   "tie-break, spikes per neuron; --ablate hidden-spikes evaluates again with every "
                                   "hidden neuron kept from spiking (its switch M1 cannot turn on).")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    _checkpoint_neuron_arg(p)
    p.add_argument("--dataset", choices=DATASETS, help="test set (default: the checkpoint's)")
    p.add_argument("--data-dir", help="folder of the dataset's IDX files, if not the one used in training")
    p.add_argument("--samples", type=_samples, default="all", help="the first N test samples, or all (default: all)")
    p.add_argument("--ablate", choices=ABLATIONS, help="also evaluate with every hidden neuron kept from spiking")
    p.add_argument("--batch-size", type=_positive_int, default=EVAL_BATCH_SIZE,
                   help="samples per solver batch (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--no-fused", action="store_true", help="do not compile the solver's Newton iterations")
    p.add_argument("--strict", action="store_true",
                   help="fail when the solver's local error estimate exceeds its tolerance (default: warn)")
    _allow_cell_writes_option(p)
    p.add_argument("--adaptive", action="store_true",
                   help="error-controlled substeps within each step of the network's dt (radau methods): the same "
                        "network without the training grid's error; the readouts read the grid")
    p.add_argument("--save", type=_output_file(".json"), help="save the report (.json)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_evaluate)


def _add_robustness_parser(sub: argparse._SubParsersAction) -> None:
    """The ``robustness`` command's options."""
    from memspice.hardware import PRESETS as CHIPS
    from memspice.train.calibration import EPOCHS as CALIBRATION_EPOCHS
    from memspice.train.robustness import SAMPLES as ROBUSTNESS_SAMPLES

    p = sub.add_parser("robustness", help="a trained network's accuracy on sampled non-ideal chips, torch and ngspice",
                       description="Evaluate a checkpoint on N chips sampled from a hardware description (conductance "
                                   "levels, programming error, device-to-device spread of cells and neurons, stuck "
                                   "cells, read noise, resistive wires in tiles) in the torch solver, beside the ideal "
                                   "circuit; with --spice K, run the "
                                   "first K test samples on the first chip in ngspice from that chip's netlist and "
                                   "compare with torch on the same chip. With --calibrate N, each trimmed chip first "
                                   "learns its neurons' threshold codes on N training samples with the network "
                                   "running on it (calibration in the loop).")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    _checkpoint_neuron_arg(p)
    p.add_argument("--hardware", required=True, metavar="PRESET|FILE.json",
                   help=f"a preset ({', '.join(CHIPS)}) or a JSON chip description (docs/hardware.md)")
    p.add_argument("--chips", type=_positive_int, default=20, help="chips sampled (default: %(default)s)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="the first chip's seed; chip k has seed + k (default: %(default)s)")
    p.add_argument("--samples", type=_samples,
                   help=f"the first N test samples, or all (default: {ROBUSTNESS_SAMPLES}, or all of a smaller "
                        "test set)")
    p.add_argument("--spice", type=_non_negative_int, default=0, metavar="K",
                   help="also run the first K test samples on the first chip in ngspice (default: %(default)s)")
    p.add_argument("--calibrate", type=_non_negative_int, default=0, metavar="N",
                   help="calibrate each trimmed chip in the loop on the first N training samples (its neurons' "
                        "threshold-DAC codes, fitted with the chip running the network) and report before and "
                        "after (default: %(default)s, no calibration)")
    p.add_argument("--calibrate-epochs", type=_positive_int, default=CALIBRATION_EPOCHS, metavar="E",
                   help="passes over the calibration samples (default: %(default)s)")
    p.add_argument("--calibrate-layers", type=_positive_int, nargs="+", metavar="K",
                   help="calibrate only these layers' codes (from 1; default: every layer). On switch-trimmed "
                        "chips the output layer's alone is several times faster")
    p.add_argument("--data-dir", help="folder of the dataset's IDX files, if not the one used in training")
    p.add_argument("--batch-size", type=_positive_int, default=EVAL_BATCH_SIZE,
                   help="samples per solver batch (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--no-fused", action="store_true", help="do not compile the solver's Newton iterations")
    p.add_argument("--workers", type=_positive_int, help="parallel ngspice processes (default: one per core)")
    _allow_cell_writes_option(p)
    p.add_argument("--save", type=_output_file(".json"), help="save the report (.json)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    _sandbox_option(p)
    p.set_defaults(func=_robustness, runs_ngspice=lambda args: args.spice > 0)


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` command's options."""
    p = sub.add_parser("export", help="write a trained network with one test sample as an ngspice netlist",
                       description="Write the complete ngspice netlist of a trained network driven by test sample "
                                   "K (PWL row voltages of its encoding), saving the output membranes.")
    _trained_network_args(p)
    p.add_argument("--sample", type=int, default=0, help="test sample index (default: %(default)s)")
    p.add_argument("--out", type=_output_file(".cir"), required=True, help="netlist file (.cir)")
    p.set_defaults(func=_export)


def _add_verify_parser(sub: argparse._SubParsersAction) -> None:
    """The ``verify`` command's options."""
    p = sub.add_parser("verify", help="classify test samples in ngspice and compare with the torch solver",
                       description="Run N test samples of a trained network in ngspice (parallel processes here, "
                                   "or on a Dask cluster) and with the torch solver; compare predicted classes and "
                                   "output spike counts. dt and every setting come from the checkpoint.")
    _trained_network_args(p)
    p.add_argument("--samples", type=_positive_int, default=10, help="number of test samples (default: %(default)s)")
    p.add_argument("--offset", type=_non_negative_int, default=0, help="first test sample (default: %(default)s)")
    p.add_argument("--sample-seed", type=_non_negative_int,
                   help="verify --samples test samples drawn at random with this seed instead of the first ones")
    p.add_argument("--part", type=_part, metavar="K/N",
                   help="verify only the K-th of N interleaved shares of these samples (one machine of N); "
                        "`memspice verify-merge` joins the N reports and names any sample no part holds")
    _where_ngspice_runs(p)
    p.add_argument("--timeout", type=_positive, default=3600.0, help="timeout per sample in s (default: %(default)g)")
    p.add_argument("--save", type=_output_file(".json"),
                   help="save the full report with per-sample rows (.json); until it is written, finished samples "
                        "are kept in REPORT.json.partial and the same command run again resumes from there")
    p.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    p.add_argument("--strict", action="store_true",
                   help="fail, before ngspice runs, when the torch solver's local error estimate exceeds its "
                        "tolerance (default: warn)")
    _allow_cell_writes_option(p)
    _sandbox_option(p)
    p.set_defaults(func=_verify)


def _add_verify_merge_parser(sub: argparse._SubParsersAction) -> None:
    """The ``verify-merge`` command's options."""
    p = sub.add_parser("verify-merge", help="combine verify reports of disjoint sample ranges (several machines)",
                       description="Combine the reports of `memspice verify --part K/N --save PART.json` (or "
                                   "--offset) run on several machines into one: figures over all samples, compute "
                                   "time summed. Parts of another checkpoint or with other settings are refused; "
                                   "requested samples that no part holds are listed.")
    p.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    p.add_argument("--save", type=_output_file(".json"), help="save the combined report (.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the summary")
    p.set_defaults(func=_verify_merge)


def _add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``simulate`` command's options."""
    p = sub.add_parser("simulate", help="run any ngspice netlist; spikes, waveforms, plot, JSON",
                       description="Simulate NETLIST with ngspice (batch mode) and report spikes of the node voltages.")
    p.add_argument("netlist", type=Path, metavar="NETLIST", help="an ngspice netlist with a .tran analysis")
    p.add_argument("--out", type=_output_file(".npz", ".csv"), help="save the waveforms (.npz or .csv)")
    p.add_argument("--plot", type=_output_file(".png"), help="save a plot of the probed signals (.png)")
    p.add_argument("--probe", nargs="+", metavar="NAME",
                   help="signals to keep, e.g. mem or 'v(mem)' or 'i(vin)' (default: all; spikes are then reported "
                        "for the top circuit's nodes, not for nodes inside subcircuits such as a neuron's states)")
    _threshold_option(p)
    p.add_argument("--timeout", type=_positive, default=600.0, help="ngspice timeout in s (default: %(default)g)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--allow-control", action="store_true",
                   help="trust the netlist's .control blocks (shell commands, writes outside the run folder)")
    _sandbox_option(p)
    p.set_defaults(func=_simulate)


def _add_characterize_parser(sub: argparse._SubParsersAction) -> None:
    """The ``characterize`` command's options."""
    from memspice.devices.mif import PRESETS

    p = sub.add_parser("characterize", help="f–I curve and spike shape of the MIF neuron, measured in ngspice",
                       description="Measure the default MIF neuron in ngspice: spike counts over a log grid of "
                                   "step currents (f–I curve), and threshold, peak, width, undershoot and "
                                   "refractory time at a reference current. Jobs run in parallel.")
    p.add_argument("device", choices=["mif"], help="the device to characterize")
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="parameter set: the re-timed default or the reference neuron of Kang et al. 2021 "
                        "(default: %(default)s)")
    p.add_argument("--plot", type=_output_file(".png"), help="save the f–I curve and a trace (.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--min-current", type=_positive, default=0.25e-6, help="smallest step in A (default: %(default)g)")
    p.add_argument("--max-current", type=_positive, default=32e-6, help="largest step in A (default: %(default)g)")
    p.add_argument("--points", type=_positive_int, default=15, help="currents in the grid (default: %(default)s)")
    p.add_argument("--reference-current", type=_positive, default=2e-6,
                   help="step in A at which the spike shape is measured (default: %(default)g)")
    _threshold_option(p)
    _where_ngspice_runs(p)
    p.add_argument("--timeout", type=_positive, default=600.0,
                   help="timeout per ngspice run in s (default: %(default)g)")
    _sandbox_option(p)
    p.set_defaults(func=_characterize)


def _add_validate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``validate`` command's options."""
    from memspice.devices.mif import PRESETS
    from memspice.solver import METHODS
    from memspice.validate.cases import CASES

    p = sub.add_parser("validate", help="run a circuit in ngspice and in the torch solver and compare them",
                       description="Cross-validate the torch solver against ngspice (gear, reltol 1e-6): per probe "
                                   "NRMSE, max error, spike counts and spike-time errors, wall times.")
    p.add_argument("--case", choices=[*CASES, "all"], default="mif-step",
                   help="what to simulate (default: %(default)s)")
    p.add_argument("--dt", type=_positive, default=DT, help="torch time step in s (default: %(default)g)")
    p.add_argument("--method", choices=METHODS, help=f"integration method (default: {METHOD})")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="(default: %(default)s)")
    p.add_argument("--stimulus", type=Path, metavar="FILE.csv",
                   help="piecewise-linear input current t_s,i_A into the MIF neuron (replaces mif-step's step)")
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="MIF parameter set of every neuron: the re-timed default or the reference neuron of Kang "
                        "et al. 2021 (default: %(default)s)")
    p.add_argument("--neuron", type=_neuron_model, metavar="MODULE:NAME",
                   help="the neuron device model (a one-port DeviceModel) of every case, e.g. "
                        "memspice.devices.relaxation:RELAXATION_NEURON or my_devices:MY_NEURON (a module in the "
                        "current folder); default: the MIF neuron")
    p.add_argument("--param", type=_param, action="append", metavar="NAME=VALUE",
                   help="override one neuron parameter (SI units; repeatable), e.g. --param th1=0.42")
    p.add_argument("--strict", action="store_true",
                   help="fail, before ngspice runs, when the solver's local error estimate exceeds its tolerance "
                        "(default: warn)")
    p.add_argument("--adaptive", action="store_true",
                   help="error-controlled steps: each step of --dt split into as many equal substeps as keep the "
                        "local error estimate within its tolerance (radau3, radau5); --dt is then the output grid, "
                        "and spikes are read from every substep")
    p.add_argument("--sweep-dt", action="store_true",
                   help="mif-step at dt/8, dt/4, dt/2, dt and 2dt for each method: error table, order of "
                        "convergence and the solver's own error estimate")
    p.add_argument("--suggest-dt", action="store_true",
                   help="the largest dt (from --dt, halved or doubled, then bisected) at which the case's MIF "
                        "neuron meets the targets against ngspice (one ngspice run)")
    p.add_argument("--save", type=_output_file(".npz"),
                   help="save t, v_ref, v_torch and the settings (.npz; with --case all, one per case: NAME-CASE.npz)")
    p.add_argument("--plot", type=_output_file(".png"),
                   help="overlay and difference plot (.png; with --case all, one per case: NAME-CASE.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    _where_ngspice_runs(p)
    _sandbox_option(p)
    p.set_defaults(func=_validate)


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """The ``bench`` command's options."""
    p = sub.add_parser("bench", help="speed of the torch solver against ngspice and against a LIF SNN",
                       description="Samples per second of the torch solver and of ngspice on the same circuits (the "
                                   "MIF neuron; the 784-128-10 network), training throughput and peak memory of "
                                   "784-128-10, and the cost of circuit-level training over a surrogate-gradient LIF "
                                   "SNN of the same size and number of steps.")
    p.add_argument("--quick", action="store_true", help="fewer repeats and alternations (same circuits and windows)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="(default: %(default)s)")
    p.add_argument("--no-fused", dest="fused", action="store_false",
                   help="the reference solver path (eager) instead of the compiled one")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads")
    p.add_argument("--save", type=_output_file(".json"), help="also write the full result (.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    _sandbox_option(p)
    p.set_defaults(func=_bench)



def main(argv: Sequence[str] | None = None) -> int:
    from memspice import interrupts

    # Before torch loads its OpenMP runtime: threads that wait sleep instead of spinning, so one core
    # taken by another process does not stall every parallel region (measured in docs/speed.md:
    # twice as slow training with two spinning threads, 1.1x with sleeping ones; 5 % when quiet).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    warnings.showwarning = _show_warning
    args = build_parser().parse_args(argv)
    interrupts.raise_on_sigterm()
    try:
        # a command that runs ngspice (robustness only with --spice)
        if getattr(args, "sandbox", False) is not False and getattr(args, "runs_ngspice", lambda _: True)(args):
            _choose_sandbox(args.sandbox)
        with _ngspice_workers(args):
            return args.func(args)
    except KeyboardInterrupt as interrupt:
        print(f"memspice: interrupted ({interrupts.signal_name(interrupt)}): stopped every ngspice process it had "
              "started; finished results are kept", file=sys.stderr)
        return interrupts.exit_status(interrupt)
    except MemspiceError as exc:  # a bug elsewhere shows its traceback
        print(f"memspice: error: {exc}", file=sys.stderr)
        return 2


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """memspice's own warnings as one line on stderr, the way its errors are; others as Python shows them."""
    if issubclass(category, MemspiceWarning):
        print(f"memspice: warning: {message}", file=sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def _threshold_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=_finite, default=SPIKE_THRESHOLD,
                   help="spikes are upward crossings of this membrane voltage, V (default: %(default)g)")


def _train_options(p: argparse.ArgumentParser) -> None:
    """One option per field of :class:`~memspice.train.config.TrainConfig`, with its help and the default
    of each dataset's recipe. Options left out are None: the recipe (or, with --resume, the saved
    run) gives them. A bool field is a switch away from its default (--strict, --no-fused)."""
    from memspice.train.config import RECIPES, TrainConfig, recipe

    kinds = {"positive": _positive, "positive_int": _positive_int, "finite": _finite, "non_negative": _non_negative,
             "int": int}  # how a value of each ``kind`` is checked
    recipes = {dataset: recipe(dataset) for dataset in RECIPES}
    for option in fields(TrainConfig):
        meta, name = option.metadata, option.name.replace("_", "-")
        if option.type in (bool, "bool"):
            flag, text = (f"--no-{name}", "do not " + meta["help"]) if option.default else (f"--{name}", meta["help"])
            p.add_argument(flag, dest=option.name, action="store_const", const=not option.default,
                           help=text.replace("%", "%%"))
            continue
        by_recipe: dict[str, list[str]] = {}  # each default and the datasets whose recipe has it
        for dataset, config in recipes.items():
            by_recipe.setdefault(_shown(getattr(config, option.name)), []).append(dataset)
        if any(option.name in values for values in RECIPES.values()) and len(by_recipe) > 1:
            said = ", ".join(f"{value} ({', '.join(datasets)})" for value, datasets in by_recipe.items())
        else:
            said = _shown(option.default)
        text = (meta["help"] + f" (default: {said})").replace("%", "%%")
        extra = {key: meta[key] for key in ("choices", "nargs", "metavar") if key in meta}
        p.add_argument(f"--{name}", type=kinds.get(meta["kind"]), help=text, **extra)


def _shown(value) -> str:
    """A default as the help shows it."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _allow_cell_writes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-cell-writes", action="store_true",
                   help="warn instead of failing when the voltage across a synapse cell reaches its write "
                        "threshold (the torch solver holds conductances fixed; a chip would rewrite them)")


def _choose_sandbox(choice: str | None) -> None:
    """Apply ``--sandbox`` (for this process and the ngspice workers it starts) and say once how
    ngspice will run."""
    from memspice.spice import sandbox

    if choice is not None:
        os.environ[sandbox.ENV_VAR] = choice
    print(f"memspice: {sandbox.describe()}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
