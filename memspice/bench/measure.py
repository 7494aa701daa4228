"""``memspice bench``: the torch solver against ngspice and against a conventional SNN, measured
side by side in one run.

* ``neuron``: the default MIF neuron under a 2 µA step (10 µs) in ngspice (one process per
  sample, as ``memspice verify`` runs them, with the verification settings) and in torch at
  batch 1 and 4096.
* ``network``: 784-128-10 (untrained, seed 0) on Fashion-MNIST test images (seeded random
  pixels where the dataset is not installed), one sample in ngspice against a batch of 256 in
  torch, over the Fashion recipe's window (``--quick``: a third of it).
* ``training``: forward + backward + Adam step of the network with the Fashion recipe's step,
  window and batch; and snnTorch's ``Leaky`` network of the same sizes, trained with its
  default surrogate gradient over the same number of steps (:mod:`memspice.bench.lif`). Both
  are timed in one fresh process, alternately (circuit, LIF, circuit, LIF, ...), so that a
  machine that gets busier slows both alike; peak memory is measured in a fresh process each
  (:func:`measure_training`).

Throughputs are samples per second, medians of the repeats, with their spread (largest over
smallest); every torch figure is taken after a warm-up call, whose time (compilation of the
fused solver included) is reported apart as ``warmup_s``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from memspice.defaults import DT
from memspice.deploy.export import VERIFY_SETTINGS, input_waveforms
from memspice.errors import MemspiceError
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import membrane_node, network_netlist
from memspice.netlist.examples import current_clamp
from memspice.netlist.stimuli import PWL
from memspice.solver import SolverOptions
from memspice.spice.pool import raise_first_error, run_many
from memspice.spice.runner import ngspice_executable

NEURON_STEP = 2e-6  #: A
NEURON_WINDOW = 10e-6  #: s
#: A spread (largest over smallest time of the repeats) above this gets a warning: the machine
#: was busy, and the ratios are less certain.
SPREAD_WARNING = 1.5


@dataclass(frozen=True)
class BenchSettings:
    """What ``memspice bench`` measures, and how: torch ``device`` and ``dtype``, ``fused``
    Newton iterations, ``repeats`` per timing; the ``network``'s sizes, batches and windows (s)
    of each part."""

    network: tuple[int, ...] = (784, 128, 10)
    device: str = "cpu"
    dtype: str = "float32"
    fused: bool = True
    repeats: int = 3
    dt: float = DT
    neuron_batches: tuple[int, ...] = (1, 4096)
    network_batch: int = 256
    network_window: float = 6e-6
    train_batch: int = 64
    train_window: float = 6e-6
    train_iterations: int = 7

    @classmethod
    def quick(cls, **overrides) -> BenchSettings:
        """A shorter run: fewer repeats and alternations, the same circuits and windows (ngspice's
        cost per sample is mostly set-up, so a shorter window would change the ratios)."""
        return replace(cls(repeats=2, train_iterations=3), **overrides)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    @property
    def solver(self) -> SolverOptions:
        """The circuit's solver options: the default method on ``dt``, ``fused`` as set."""
        return SolverOptions(dt=self.dt, fused=self.fused)


def run_bench(settings: BenchSettings, progress: Callable[[str], None] = lambda _: None) -> dict:
    """Every figure of the benchmark as one JSON-serializable dict (keys ``neuron_ratio``,
    ``network_ratio``, ``train_samples_per_s``, ``peak_memory_bytes``, ``lif_cost_ratio`` and
    the details per part)."""
    from memspice.bench.lif import require_snntorch

    require_snntorch()  # before minutes of ngspice
    progress("MIF neuron: ngspice and torch")
    neuron = _neuron(settings)
    name = "-".join(map(str, settings.network))
    progress(f"{name} network: ngspice (one sample) and torch (batch {settings.network_batch})")
    network = _network(settings)
    progress(f"training {name} through the circuit and snnTorch's Leaky, alternately, batch {settings.train_batch}")
    times = _in_fresh_process("both", "time", settings)
    circuit = {**times["circuit"], **_in_fresh_process("circuit", "memory", settings)}
    lif = {**times["lif"], **_in_fresh_process("lif", "memory", settings)}
    return {
        "neuron_ratio": neuron["torch"][str(max(settings.neuron_batches))]["samples_per_s"]
        / neuron["ngspice"]["samples_per_s"],
        "network_ratio": network["torch"]["samples_per_s"] / network["ngspice"]["samples_per_s"],
        "train_samples_per_s": circuit["samples_per_s"],
        "peak_memory_bytes": circuit["peak_memory_bytes"],
        "lif_cost_ratio": times["cost_ratio"],
        "lif_cost_ratio_spread": times["cost_ratio_spread"],
        "neuron": neuron,
        "network": network,
        "training": {"circuit": circuit, "lif": lif},
        "settings": {**asdict(settings), "ngspice": VERIFY_SETTINGS},
        "machine": machine(settings.device),
    }


def machine(device: str = "cpu") -> dict:
    """The machine the figures were taken on."""
    version = subprocess.run([ngspice_executable(), "-v"], capture_output=True, text=True, timeout=60).stdout
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "ngspice": next((line.strip(" *") for line in version.splitlines() if "ngspice" in line.lower()), "?")}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _seconds(fn: Callable[[], object], device: str) -> float:
    """Wall time (s) of one call of ``fn``."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def alternated(sides: dict[str, Callable[[], object]], device: str, repeats: int,
               cold: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """Wall times (s) of each side, timed in turn (A, B, A, B, ...) ``repeats`` times after one
    warm-up call each (none for the sides in ``cold``), and the warm-up times under
    ``"<side>_warmup"``."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for name, fn in sides.items():
        if name not in cold:
            times[f"{name}_warmup"] = [_seconds(fn, device)]
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(_seconds(fn, device))
    return times


def spread(values: list[float]) -> float:
    """Largest over smallest of ``values`` (1: no spread)."""
    return max(values) / min(values)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _ngspice(name: str, netlist: str) -> Callable[[], None]:
    """One ngspice process on ``netlist`` (as ``memspice verify`` runs one sample)."""
    def run() -> None:
        raise_first_error(run_many([(name, netlist)], workers=1, timeout=3600, progress=False))
    return run


def _neuron(settings: BenchSettings) -> dict:
    from memspice.solver import simulate_neurons

    stimulus = PWL([0, 1e-6, 2e-6, NEURON_WINDOW], [0, 0, NEURON_STEP, NEURON_STEP])  # on from 1 µs, 1 µs edge
    tran = TranSettings(t_end=NEURON_WINDOW, **VERIFY_SETTINGS)
    t = np.arange(int(round(NEURON_WINDOW / settings.dt)) + 1) * settings.dt
    current = torch.as_tensor(stimulus.sample(t), dtype=settings.torch_dtype, device=settings.device)
    sides: dict[str, Callable[[], object]] = {"ngspice": _ngspice("neuron", current_clamp(stimulus, NEURON_WINDOW,
                                                                                           settings=tran))}
    for batch in settings.neuron_batches:
        inputs = current.reshape(1, -1, 1).expand(batch, -1, 1).contiguous()

        def run(inputs=inputs):
            with torch.no_grad():
                return simulate_neurons(inputs, settings.solver, record_states=False)

        sides[str(batch)] = run
    times = alternated(sides, settings.device, settings.repeats, cold=("ngspice",))
    spice_s = statistics.median(times["ngspice"])
    out = {"ngspice": {"seconds_per_sample": spice_s, "samples_per_s": 1 / spice_s, "spread": spread(times["ngspice"])},
           "torch": {}}
    for batch in settings.neuron_batches:
        seconds = statistics.median(times[str(batch)])
        out["torch"][str(batch)] = {"seconds": seconds, "samples_per_s": batch / seconds,
                                    "spread": spread(times[str(batch)]), "warmup_s": times[f"{batch}_warmup"][0]}
    return out


def _inputs(settings: BenchSettings, batch: int, window: float, seed: int = 0) -> tuple[torch.Tensor, str]:
    """Row voltages ``(batch, n_steps + 1, n_in)`` (direct encoding, the training default) of
    Fashion-MNIST test images for a 784-input network, else of seeded random pixels; and which."""
    from memspice.data import load_dataset, make_encoder
    from memspice.data.idx import DatasetError

    n_in = settings.network[0]
    pixels, source = np.random.default_rng(seed).random((batch, n_in)), f"random pixels (seed {seed})"
    if n_in == 784:
        try:
            pixels, source = load_dataset("fashion-mnist").test_x[:batch], "fashion-mnist test images"
        except DatasetError:
            pass  # not installed: the random pixels
    encoder = make_encoder("direct", v_low=0.2, v_high=1.0)
    n_steps = int(round(window / settings.dt))
    rows = encoder(torch.as_tensor(pixels, dtype=settings.torch_dtype), n_steps, torch.arange(batch))
    return rows.to(settings.device), source


def _network(settings: BenchSettings) -> dict:
    from memspice.nn import MemristiveSNN

    model = MemristiveSNN(settings.network, solver=settings.solver).to(settings.device, settings.torch_dtype)
    rows, source = _inputs(settings, settings.network_batch, settings.network_window)
    network = model.describe()
    tran = TranSettings(t_end=round(settings.network_window, 15), **VERIFY_SETTINGS)
    save = [f"v({membrane_node(len(network.layers), j)})" for j in range(settings.network[-1])]
    netlist = network_netlist(network, input_waveforms(rows[0].double().cpu().numpy(), settings.dt), tran,
                              title=f"memspice bench: {'-'.join(map(str, settings.network))}, one sample", save=save)

    def run():
        with torch.no_grad():
            return model(rows)

    # torch, ngspice, torch: one ngspice run (tens of seconds) between two timed torch runs
    times = alternated({"torch": run, "ngspice": _ngspice("network", netlist)}, settings.device, 1, cold=("ngspice",))
    times["torch"].append(_seconds(run, settings.device))
    spice_s, seconds = times["ngspice"][0], statistics.median(times["torch"])
    return {"inputs": source, "window_s": settings.network_window,
            "ngspice": {"seconds_per_sample": spice_s, "samples_per_s": 1 / spice_s},
            "torch": {"batch": settings.network_batch, "seconds": seconds,
                      "samples_per_s": settings.network_batch / seconds, "spread": spread(times["torch"]),
                      "warmup_s": times["torch_warmup"][0]}}


def _in_fresh_process(kind: str, measure: str, settings: BenchSettings) -> dict:
    """:func:`measure_training` in a new interpreter (:mod:`memspice.bench.worker`)."""
    job = json.dumps({"kind": kind, "measure": measure, "settings": asdict(settings),
                      "threads": torch.get_num_threads()})
    env = dict(os.environ)
    if measure == "memory":
        # glibc then maps every block of 64 KiB or more on its own and unmaps it when freed: the
        # resident set follows the live tensors, so its peak measures them (and the slower
        # allocation is why time and memory are measured in separate processes)
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run([sys.executable, "-m", "memspice.bench.worker"], input=job, capture_output=True, text=True,
                          timeout=3600, env=env)
    if done.returncode != 0:
        what = "circuit and LIF" if kind == "both" else kind
        raise MemspiceError(f"the training benchmark ({what}, {measure}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _training(kind: str, settings: BenchSettings) -> tuple[Callable[[], None], int, Callable[[], list[int]]]:
    """One training iteration (forward, backward, Adam step) of ``kind`` (``circuit`` or
    ``lif``) on a fixed batch, its number of time steps, and the Newton iterations per layer of
    the last forward pass (none for the LIF network)."""
    from memspice.bench.lif import LIFNetwork
    from memspice.nn import MemristiveSNN
    from memspice.nn.readout import Readout

    torch.manual_seed(0)
    rows, _ = _inputs(settings, settings.train_batch, settings.train_window)
    labels = torch.arange(settings.train_batch, device=settings.device) % settings.network[-1]
    last: list[list[int]] = [[]]
    if kind == "circuit":
        model = MemristiveSNN(settings.network, solver=settings.solver)
        readout = Readout("membrane-mean", 100.0)

        def loss_of():
            solution = model(rows)
            last[0] = solution.newton_iterations
            return readout.loss(solution.v[-1], labels)
    else:
        model = LIFNetwork(settings.network)
        currents = rows[:, 1:]  # one input per step, as many steps as the circuit's

        def loss_of():
            return torch.nn.functional.cross_entropy(model(currents).mean(1), labels)

    model.to(settings.device, settings.torch_dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def iteration():
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return iteration, rows.shape[1] - 1, lambda: last[0]


def measure_training(kind: str, measure: str, settings: BenchSettings, threads: int) -> dict:
    """``kind="both"``, ``measure="time"``: the circuit and the LIF network timed alternately
    (:func:`alternated`): per network the median training samples per second, the spread, the
    warm-up time and the time per step; for the circuit the Newton iterations per step and
    layer; ``cost_ratio``, the median over the rounds of the circuit's time over the LIF
    network's, and its spread. ``kind="circuit"`` or ``"lif"``, ``measure="memory"``: the peak
    memory (bytes) of one training iteration above the state it starts from (activations, the
    autograd graph, temporaries): on CUDA the allocator's peak, on the CPU the peak resident
    set (``VmHWM``, reset through ``/proc/self/clear_refs`` after the warm-up) minus the
    resident set before the iteration."""
    torch.set_num_threads(threads)
    if measure == "time":
        built = {name: _training(name, settings) for name in ("circuit", "lif")}
        times = alternated({name: b[0] for name, b in built.items()}, settings.device, settings.train_iterations)
        out = {}
        for name, (_, steps, iterations) in built.items():
            median = statistics.median(times[name])
            out[name] = {"batch": settings.train_batch, "steps": steps, "seconds_per_batch": median,
                         "samples_per_s": settings.train_batch / median, "seconds_per_step": median / steps,
                         "spread": spread(times[name]), "warmup_s": times[f"{name}_warmup"][0]}
            if iterations():
                out[name]["newton_iterations_per_step"] = [n / steps for n in iterations()]
        ratios = [c / lif for c, lif in zip(times["circuit"], times["lif"])]
        return {**out, "cost_ratio": statistics.median(ratios), "cost_ratio_spread": spread(ratios)}
    iteration, steps, _ = _training(kind, settings)
    out = {"batch": settings.train_batch, "steps": steps}
    iteration()  # warm-up
    cuda = settings.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize(torch.device(settings.device))
        before = torch.cuda.memory_allocated(torch.device(settings.device))
        torch.cuda.reset_peak_memory_stats(torch.device(settings.device))
    else:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
        before = _resident_bytes("VmRSS")
    iteration()
    if cuda:
        torch.cuda.synchronize(torch.device(settings.device))
        peak = torch.cuda.max_memory_allocated(torch.device(settings.device))
    else:
        peak = _resident_bytes("VmHWM")
    return {**out, "peak_memory_bytes": int(peak - before)}


def _resident_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from ``/proc/self/status``, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")
