"""Validation cases: the same circuit in ngspice (ground truth) and in the torch solver.

Each case builds its circuit once as memspice objects (stimuli, a :class:`~memspice.circuit.Network`),
writes it for ngspice with the ground-truth settings and integrates it in torch on the grid
``t_n = n·dt``; ngspice's waveforms are interpolated onto that grid and compared
(:func:`memspice.validate.metrics.compare`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from memspice.circuit import Crossbar, Network, NeuronLayer
from memspice.defaults import SPIKE_THRESHOLD
from memspice.devices import MIF, DeviceModel
from memspice.errors import ConfigError
from memspice.netlist.builder import TranSettings
from memspice.netlist.circuits import membrane_node, network_netlist, neuron_instance
from memspice.netlist.examples import CLAMPED_NEURON, current_clamp, step_current
from memspice.netlist.stimuli import DC, PWL
from memspice.signals import spike_times
from memspice.solver import Solution, simulate_network, simulate_neurons
from memspice.solver.accuracy import LayerError, check_accuracy
from memspice.solver.options import SolverOptions
from memspice.spice.pool import Workers, raise_first_error, run_many
from memspice.spice.results import Waveforms
from memspice.validate.metrics import compare, targets

CASES = ("mif-step", "mif-pwl", "mif-fi", "xbar-net")
STEP = step_current(2e-6, 10e-6, 110e-6, 120e-6)  # the reference step, with 1 µs edges
SWEEP_FACTORS = (1 / 8, 1 / 4, 1 / 2, 1, 2)  #: the dts of ``validate --sweep-dt``, in units of --dt
PWL_COUNT, PWL_PERIOD, PWL_RANGE, PWL_T_END = 4, 2e-6, (0.3e-6, 8e-6), 60e-6
FI_CURRENTS = tuple(float(c) for c in np.geomspace(0.5e-6, 16e-6, 6))
FI_STEP = (5e-6, 55e-6, 60e-6)  # on, off, end (s)
XBAR_SIZES = (16, 8, 4)
XBAR_T_END = 30e-6


@dataclass
class TorchSettings:
    """How the torch side of a case runs: the ``solver``'s options
    (:class:`~memspice.solver.SolverOptions`: step, method, the local error ``tolerance`` it is
    checked against, ``adaptive`` substeps, whose dense output spikes are then read from),
    ``device``, ``dtype`` and whether a local error beyond the tolerance is an error
    (``strict``) or a warning (:mod:`memspice.solver.accuracy`)."""

    solver: SolverOptions = field(default_factory=SolverOptions)
    device: str = "cpu"
    dtype: str = "float64"
    strict: bool = False

    def stepping(self, dt: float | None = None, method: str | None = None) -> TorchSettings:
        """These settings with another step ``dt`` (s) and/or ``method``."""
        changes = {k: v for k, v in (("dt", dt), ("method", method)) if v is not None}
        return replace(self, solver=self.solver.replace(**changes))

    def describe(self) -> dict:
        tolerance = self.solver.step_tolerance
        return {"dt": self.solver.dt, "method": self.solver.method, "device": self.device, "dtype": self.dtype,
                "tolerance": {"v": tolerance.v, "x": tolerance.x}, "adaptive": self.solver.adaptive is not False}

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]


@dataclass
class CaseResult:
    """Metrics per probe, the main probe's waveforms on the common grid, both engines'
    settings and wall times, and the torch solver's local error estimates per layer."""

    case: str
    probes: dict[str, dict]
    t: np.ndarray
    v_ref: np.ndarray
    v_torch: np.ndarray
    ngspice: dict
    torch: dict
    wall_ngspice_s: float
    wall_torch_s: float
    extra: dict = field(default_factory=dict)
    errors: list[LayerError] = field(default_factory=list)
    split_steps: int = 0
    substeps: int | None = None

    def to_json(self) -> dict:
        return {"case": self.case, "targets": targets(self.probes), "probes": self.probes, "ngspice": self.ngspice,
                "torch": self.torch, "wall_ngspice_s": self.wall_ngspice_s, "wall_torch_s": self.wall_torch_s,
                "local_error": [e.to_json() for e in self.errors], "split_steps": self.split_steps,
                "substeps": self.substeps, **self.extra}


MAX_STEPS = 10_000_000  #: the most torch steps a case may take (a dt this fine is a typo)


def grid(t_end: float, dt: float) -> np.ndarray:
    """``t_n = n·dt`` for every whole step up to ``t_end`` (s); at most :data:`MAX_STEPS` steps."""
    n = np.floor(t_end / dt * (1 + 1e-9))
    if n < 1:
        raise ConfigError(f"the simulated time {t_end:g} s is shorter than one step dt = {dt:g} s")
    if n > MAX_STEPS:
        raise ConfigError(f"dt = {dt:g} s would take {n:.3g} steps to simulate {t_end:g} s; at most {MAX_STEPS:g} "
                         "are allowed (give a larger dt)")
    return np.arange(int(n) + 1) * dt


@dataclass(frozen=True)
class SpikeReading:
    """How both engines' spikes of a neuron model are read: an upward crossing of ``level`` by its
    ``component`` (0: the membrane; ``k``: its ``k``-th state, ``node`` its subcircuit's internal
    node in ngspice). A model with a :class:`~memspice.devices.SpikeEvent` is read by it (the MIF
    neuron: M1's state x1 crossing 0.5, M1 turning on, whatever voltage the membrane peaks at),
    one without by its membrane crossing :data:`~memspice.defaults.SPIKE_THRESHOLD`."""

    component: int
    level: float
    node: str | None = None
    what: str = ""

    @classmethod
    def of(cls, model: DeviceModel) -> SpikeReading:
        event = model.spike
        if event is None:
            return cls(0, SPIKE_THRESHOLD, None, f"the membrane crossing {SPIKE_THRESHOLD:g} V")
        return cls(1 + model.state_nodes.index(event.state), event.level, event.state,
                   f"{event.state} crossing {event.level:g}" + (f" ({event.doc})" if event.doc else ""))

    def ngspice(self, waveforms: Waveforms, instance: str, membrane: str) -> np.ndarray:
        """Spike times (s) of the neuron subcircuit ``instance`` (its instance name in the netlist,
        e.g. ``neuron``) with the membrane node ``membrane``, on ngspice's own time points."""
        name = f"v(x{instance}.{self.node})" if self.node else f"v({membrane})"
        return spike_times(waveforms.time, waveforms.signals[name], self.level)

    def torch(self, solution: Solution, layer: int, item: int, neuron: int = 0) -> np.ndarray:
        """Spike times (s) of one neuron of a torch solution (on its dense output, when it has one)."""
        return solution.spike_times(layer, item, neuron, self.component, self.level)


def _tensor(values: np.ndarray, settings: TorchSettings) -> torch.Tensor:
    return torch.as_tensor(values, dtype=settings.torch_dtype, device=settings.device)


def _ngspice(jobs: list[tuple[str, str]], workers: Workers, timeout: float) -> tuple[list[Waveforms], float]:
    start = time.perf_counter()
    results = run_many(jobs, workers=workers, timeout=timeout, progress=False)
    raise_first_error(results)
    return [Waveforms.from_plot(r.value[-1]) for r in results], time.perf_counter() - start


def _timed_torch(fn, settings: TorchSettings, case: str) -> tuple[Solution, float]:
    """``fn()``'s solution and wall time; its local error checked (a warning, or an error with
    ``settings.strict``: before ngspice runs)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    solver = settings.solver
    check_accuracy(out.errors or [], settings.strict, f"{case} (torch, dt = {solver.dt:g} s, {solver.method})")
    return out, wall


def _accuracy(solution: Solution) -> dict:
    """:class:`CaseResult`'s fields from a solution's local error estimates (and its substeps)."""
    return {"errors": list(solution.errors or []), "split_steps": solution.split_steps,
            "substeps": solution.substeps}


def mif_current(stimulus: PWL, settings: TorchSettings, workers: Workers = None, timeout: float = 600.0,
                case: str = "mif-step", neuron: Mapping[str, float] | None = None,
                model: DeviceModel = MIF) -> CaseResult:
    """The neuron ``model`` (parameters ``neuron``: overrides of its defaults) under the input
    current ``stimulus`` (A), simulated to its last time."""
    t, refs, ref_spikes, v_torch, spice, wall_ref, wall, solution = mif_batch([stimulus], settings, workers, timeout,
                                                                              neuron, case, model)
    reading = SpikeReading.of(model)
    probes = {"v(mem)": compare(*refs[0], t, v_torch[0], spikes=reading.torch(solution, 0, 0),
                                ref_spikes=ref_spikes[0])}
    return CaseResult(case, probes, t, np.interp(t, *refs[0]), v_torch[0], spice.describe(), settings.describe(),
                      wall_ref, wall, _extra(neuron, model), **_accuracy(solution))


def _extra(neuron: Mapping[str, float] | None, model: DeviceModel) -> dict:
    """A report's record of the neuron: its model's name, parameters (overrides of the defaults)
    and what its spikes are read as."""
    return {"neuron_model": model.name, "neuron": dict(neuron or {}), "spikes": SpikeReading.of(model).what}


def random_pwl(seed: int = 0) -> list[PWL]:
    """The random stimuli of case mif-pwl: :data:`PWL_COUNT` currents (A), each linear between
    levels drawn uniformly from :data:`PWL_RANGE` every :data:`PWL_PERIOD` (s), from 0 at t = 0."""
    rng = np.random.default_rng(seed)
    times = np.arange(round(PWL_T_END / PWL_PERIOD) + 1) * PWL_PERIOD
    out = []
    for _ in range(PWL_COUNT):
        levels = rng.uniform(*PWL_RANGE, len(times))
        levels[0] = 0.0
        out.append(PWL(times.tolist(), levels.tolist()))
    return out


def mif_references(stimuli: list[PWL], workers: Workers = None, timeout: float = 600.0,
                   neuron: Mapping[str, float] | None = None, model: DeviceModel = MIF):
    """The neuron ``model`` (``neuron``: overrides of its defaults) under each stimulus (A) in ngspice,
    in parallel: the membranes ``(t, v)`` on ngspice's time points, their spike times
    (:class:`SpikeReading`), the settings and the wall time."""
    t_end = max(s.times[-1] for s in stimuli)
    spice = TranSettings(t_end=t_end)
    refs, wall = _ngspice([(f"mif{k}", current_clamp(s, t_end, neuron, settings=spice, model=model))
                           for k, s in enumerate(stimuli)], workers, timeout)
    reading = SpikeReading.of(model)
    spikes = [reading.ngspice(r, CLAMPED_NEURON, "mem") for r in refs]
    return [(r.time, r.signals["v(mem)"]) for r in refs], spikes, spice, wall


def mif_torch(stimuli: list[PWL], settings: TorchSettings, neuron: Mapping[str, float] | None = None,
              case: str = "mif", model: DeviceModel = MIF) -> tuple[np.ndarray, np.ndarray, float, Solution]:
    """The same in the torch solver, one batch: the grid, the membranes ``(len(stimuli), n)`` on
    it, the wall time and the solution (its local error estimates checked, :func:`_timed_torch`)."""
    t = grid(max(s.times[-1] for s in stimuli), settings.solver.dt)
    current = _tensor(np.stack([s.sample(t) for s in stimuli]), settings).unsqueeze(-1)
    solution, wall = _timed_torch(
        lambda: simulate_neurons(current, settings.solver, neuron, model=model, dense_output=True), settings, case)
    return t, solution.v[0][..., 0].double().cpu().numpy(), wall, solution


def mif_batch(stimuli: list[PWL], settings: TorchSettings, workers: Workers, timeout: float,
              neuron: Mapping[str, float] | None = None, case: str = "mif", model: DeviceModel = MIF):
    """:func:`mif_references` and :func:`mif_torch` together (torch first: a dt the solver
    refuses fails before ngspice runs)."""
    t, v_torch, wall, solution = mif_torch(stimuli, settings, neuron, case, model)
    refs, ref_spikes, spice, wall_ref = mif_references(stimuli, workers, timeout, neuron, model)
    return t, refs, ref_spikes, v_torch, spice, wall_ref, wall, solution


def mif_pwl(settings: TorchSettings, workers: Workers = None, timeout: float = 600.0,
            neuron: Mapping[str, float] | None = None, model: DeviceModel = MIF) -> CaseResult:
    """The neuron under the random piecewise-linear currents of :func:`random_pwl`."""
    t, refs, ref_spikes, v_torch, spice, wall_ref, wall, solution = mif_batch(
        mif_stimuli("mif-pwl"), settings, workers, timeout, neuron, "mif-pwl", model)
    reading = SpikeReading.of(model)
    probes = {f"v(mem) stimulus {k}": compare(*ref, t, v, spikes=reading.torch(solution, 0, k),
                                              ref_spikes=ref_spikes[k])
              for k, (ref, v) in enumerate(zip(refs, v_torch))}
    return CaseResult("mif-pwl", probes, t, np.interp(t, *refs[0]), v_torch[0], spice.describe(), settings.describe(),
                      wall_ref, wall, {"stimuli": {"count": PWL_COUNT, "period_s": PWL_PERIOD,
                                                   "range_A": list(PWL_RANGE), "seed": 0}, **_extra(neuron, model)},
                      **_accuracy(solution))


def mif_stimuli(case: str) -> list[PWL]:
    """The input currents (A) of a MIF case: mif-step's step, mif-pwl's random currents, mif-fi's steps."""
    if case == "mif-step":
        return [STEP]
    if case == "mif-pwl":
        return random_pwl()
    if case == "mif-fi":
        return [step_current(c, *FI_STEP) for c in FI_CURRENTS]
    raise ConfigError(f"{case!r} is not a MIF case; choose one of mif-step, mif-pwl, mif-fi")


def mif_fi(settings: TorchSettings, workers: Workers = None, timeout: float = 600.0,
           neuron: Mapping[str, float] | None = None, model: DeviceModel = MIF) -> CaseResult:
    """f–I curve from both engines: one ngspice run per current, one torch batch for all."""
    t, refs, ref_spikes, v_torch, spice, wall_ref, wall, solution = mif_batch(
        mif_stimuli("mif-fi"), settings, workers, timeout, neuron, "mif-fi", model)
    reading = SpikeReading.of(model)
    probes, counts = {}, {"currents_A": list(FI_CURRENTS), "spikes_ref": [], "spikes_torch": []}
    for k, c in enumerate(FI_CURRENTS):
        metrics = compare(*refs[k], t, v_torch[k], spikes=reading.torch(solution, 0, k), ref_spikes=ref_spikes[k])
        probes[f"v(mem) at {c * 1e6:.3g} uA"] = metrics
        counts["spikes_ref"].append(metrics["spikes_ref"])
        counts["spikes_torch"].append(metrics["spikes_torch"])
    main = FI_CURRENTS.index(min(FI_CURRENTS, key=lambda c: abs(c - 2e-6)))
    return CaseResult("mif-fi", probes, t, np.interp(t, *refs[main]), v_torch[main], spice.describe(),
                      settings.describe(), wall_ref, wall, {"fi": counts, **_extra(neuron, model)},
                      **_accuracy(solution))


#: (G⁺ range, G⁻ range) in S per layer of the validation network. Small against the neuron's
#: own conductances (M1: 20 µS), so that the crossbar feeds current instead of clamping the
#: membrane at its rows' weighted mean (a neuron under a stiff clamp fires once, then blocks).
XBAR_CONDUCTANCES = (((0.1e-6, 0.6e-6), (0.01e-6, 0.05e-6)), ((2e-6, 6e-6), (0.05e-6, 0.2e-6)))


def random_network(seed: int = 0, neuron: Mapping[str, float] | None = None,
                   model: DeviceModel = MIF) -> tuple[Network, list[DC]]:
    """The small validation network: 16-8-4, resistor synapses drawn from
    :data:`XBAR_CONDUCTANCES`, DC row voltages in [0.5, 1] V; neurons of ``model`` with the
    overrides ``neuron``."""
    rng = np.random.default_rng(seed)
    layers = []
    for (n_in, n_out), (pos, neg) in zip(zip(XBAR_SIZES, XBAR_SIZES[1:]), XBAR_CONDUCTANCES):
        crossbar = Crossbar(rng.uniform(*pos, (n_in, n_out)), rng.uniform(*neg, (n_in, n_out)))
        layers.append((crossbar, NeuronLayer(n_out, dict(neuron or {}), model=model)))
    return Network(layers), [DC(float(u)) for u in rng.uniform(0.5, 1.0, XBAR_SIZES[0])]


def xbar_net(settings: TorchSettings, workers: Workers = None, timeout: float = 600.0,
             neuron: Mapping[str, float] | None = None, model: DeviceModel = MIF) -> CaseResult:
    """The small random network (:func:`random_network`) in both engines, loading term included."""
    network, inputs = random_network(neuron=neuron, model=model)
    spice = TranSettings(t_end=XBAR_T_END)
    netlist = network_netlist(network, inputs, spice, title="validation network 16-8-4")
    t = grid(XBAR_T_END, settings.solver.dt)
    rows = _tensor(np.stack([u.sample(t) for u in inputs], -1), settings).unsqueeze(0)
    weights = [(_tensor(c.g_pos, settings), _tensor(c.g_neg, settings)) for c, _ in network.layers]
    params = [dict(neurons.params) for _, neurons in network.layers]
    solution, wall = _timed_torch(lambda: simulate_network(weights, rows, settings.solver, params,
                                                           network.buffer, model, dense_output=True),
                                  settings, "xbar-net")
    (ref,), wall_ref = _ngspice([("xbar_net", netlist)], workers, timeout)
    probes, main = {}, None
    reading = SpikeReading.of(model)
    for k, (_, neurons) in enumerate(network.layers, start=1):
        v_layer = solution.v[k - 1][0].double().cpu().numpy()
        for j in range(neurons.size):
            name = f"v({membrane_node(k, j)})"
            probes[name] = compare(ref.time, ref.signals[name], t, v_layer[:, j],
                                   spikes=reading.torch(solution, k - 1, 0, j),
                                   ref_spikes=reading.ngspice(ref, neuron_instance(k, j), membrane_node(k, j)))
            if k == len(network.layers) and j == 0:
                main = (np.interp(t, ref.time, ref.signals[name]), v_layer[:, j])
    out_layer = len(network.layers)
    counts = {"spikes_ref": [m["spikes_ref"] for n, m in probes.items() if n.startswith(f"v(l{out_layer}_")],
              "spikes_torch": [m["spikes_torch"] for n, m in probes.items() if n.startswith(f"v(l{out_layer}_")]}
    return CaseResult("xbar-net", probes, t, main[0], main[1], spice.describe(), settings.describe(),
                      wall_ref, wall, {"sizes": list(network.sizes), "output_spikes": counts, **_extra(neuron, model)},
                      **_accuracy(solution))


def run_case(case: str, settings: TorchSettings, stimulus: PWL | None = None, workers: Workers = None,
             timeout: float = 600.0, neuron: Mapping[str, float] | None = None,
             model: DeviceModel = MIF) -> CaseResult:
    """One case by name; ``stimulus`` replaces the neuron cases' input current; every neuron is
    a ``model`` (the MIF neuron unless another is given) with the parameters ``neuron``
    (overrides of its defaults)."""
    if stimulus is not None:
        return mif_current(stimulus, settings, workers=workers, timeout=timeout, case=f"{case}+stimulus",
                           neuron=neuron, model=model)
    if case == "mif-step":
        return mif_current(STEP, settings, workers=workers, timeout=timeout, neuron=neuron, model=model)
    if case == "mif-pwl":
        return mif_pwl(settings, workers, timeout, neuron, model)
    if case == "mif-fi":
        return mif_fi(settings, workers, timeout, neuron, model)
    if case == "xbar-net":
        return xbar_net(settings, workers, timeout, neuron, model)
    raise ConfigError(f"unknown case {case!r}; choose one of {', '.join(CASES)} or all")
