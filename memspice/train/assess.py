"""``memspice evaluate``: a trained network's accuracy on a test set in the torch solver, how its
decisions were made, and what it owes to its hidden spikes (the same network with every hidden
neuron kept from spiking)."""

from __future__ import annotations

import time

from memspice.data import Dataset
from memspice.defaults import EVAL_BATCH_SIZE
from memspice.errors import MemspiceError
from memspice.solver.monitor import SolutionMonitor, summary_lines
from memspice.train.loop import Trained, evaluate

#: Ablations :func:`assess` knows.
ABLATIONS = ("hidden-spikes",)


def assess(trained: Trained, data: Dataset, samples: int | None = None, ablate: str | None = None,
           batch_size: int = EVAL_BATCH_SIZE, progress: bool = True, strict: bool = False,
           allow_cell_writes: bool = False, adaptive: bool = False) -> dict:
    """Evaluate ``trained`` on the first ``samples`` test samples of ``data`` (all if None).

    Returns ``samples``, ``accuracy``, ``decided_by_spikes`` (the share of predictions a spike
    reading made), ``decided_by`` (per reading), ``hidden_spikes_per_neuron`` and
    ``output_spikes_per_neuron`` (per sample), ``loss``, ``wall_s``, the solver's largest local
    error estimate (``error_ratio``, in units of its tolerance; ``local_error`` per layer: it
    warns above 1, or raises with ``strict``), the extreme voltages across synapse cells
    (``cell_voltages`` per crossbar, ``cell_margin`` to the nearest write threshold: reaching one
    raises unless ``allow_cell_writes``), ``substeps_per_step`` with ``adaptive`` (error-controlled
    substeps within the training grid; the readouts still read the grid), and with ``ablate = "hidden-spikes"`` the same
    figures of the ablated network as ``ablated_*`` (else None)."""
    if ablate is not None and ablate not in ABLATIONS:
        raise MemspiceError(f"unknown ablation {ablate!r}; known: {', '.join(ABLATIONS)}")
    sizes = trained.model.sizes
    n = count_test_samples(trained, data, samples)
    if ablate and len(sizes) < 3:
        raise MemspiceError("--ablate hidden-spikes needs a network with a hidden layer")
    if ablate:
        trained.model.hidden_spike_ablation()  # its neurons can be ablated: fails here, not after the first pass
    x, y = data.test_x[:n], data.test_y[:n]
    dtype = next(trained.model.parameters()).dtype
    started = time.perf_counter()
    runs = {"": False, "ablated_": True} if ablate else {"": False}
    monitor = SolutionMonitor(strict, allow_cell_writes,
                              context=f"evaluation (dt = {trained.model.dt:g} s, {trained.model.method})")
    out = {"dataset": data.name, "samples": n, "sizes": list(sizes), "population": trained.readout.population,
           "readout": trained.readout.kind, "adaptive": adaptive}
    for prefix, ablated in runs.items():
        result = evaluate(trained.model, trained.readout, trained.encoder, x, y, trained.config.n_steps, batch_size,
                          dtype, progress, ablate_hidden_spikes=ablated, monitor=monitor, adaptive=adaptive)
        out.update({f"{prefix}accuracy": result["acc"], f"{prefix}loss": result["loss"],
                    f"{prefix}decided_by_spikes": result["decided_by_spikes"],
                    f"{prefix}decided_by": result["decided_by"],
                    f"{prefix}hidden_spikes_per_neuron": result["hidden_spikes"],
                    f"{prefix}output_spikes_per_neuron": result["output_spikes"],
                    **{f"{prefix}{key}": result[key] for key in ("error_ratio", "local_error", "cell_voltages",
                                                                  "cell_margin", "substeps_per_step")}})
    if not ablate:
        out["ablated_accuracy"] = None
    out["wall_s"] = time.perf_counter() - started
    return out


def count_test_samples(trained: Trained, data: Dataset, samples: int | None) -> int:
    """How many test samples of ``data`` the first ``samples`` are (all if None), after checking
    that the network reads this dataset: one clear error for either."""
    sizes = trained.model.sizes
    if data.n_features != sizes[0] or len(data.classes) * trained.readout.population != sizes[-1]:
        network = network_name({"sizes": sizes, "population": trained.readout.population})
        raise MemspiceError(f"the {data.name} test set has {data.n_features} features and {len(data.classes)} "
                            f"classes, not those of a {network}")
    available = len(data.test_x)
    n = available if samples is None else samples
    if not 1 <= n <= available:
        raise MemspiceError(f"--samples {samples}: the {data.name} test set has {available} samples")
    return n


def network_name(report: dict) -> str:
    """How a report names its network: ``784-128-80 network (8 output neurons per class)``."""
    population = report.get("population", 1)  # reports saved before populations: one per class
    per_class = f" ({population} output neurons per class)" if population > 1 else ""
    return f"{'-'.join(map(str, report['sizes']))} network{per_class}"


def assessment_table(report: dict) -> str:
    """The text summary of :func:`assess`'s report."""
    def line(prefix: str, what: str) -> str:
        shares = ", ".join(f"{100 * v:.1f} % {k}" for k, v in report[f"{prefix}decided_by"].items())
        return (f"  {what:<22} accuracy {100 * report[f'{prefix}accuracy']:6.2f} %   decided by {shares}; "
                f"{report[f'{prefix}hidden_spikes_per_neuron']:.3f} hidden and "
                f"{report[f'{prefix}output_spikes_per_neuron']:.3f} output spikes per neuron and sample")

    lines = [f"{report['samples']} {report['dataset']} test samples, {network_name(report)}, "
             f"{report['readout']} readout (torch solver, {report['wall_s']:.0f} s)", line("", "network")]
    lines += summary_lines(report)
    if report.get("substeps_per_step"):
        lines.append(f"  adaptive   {report['substeps_per_step']:.2f} substeps per grid step on average (every batch "
                     "held to the adaptive tolerance)")
    if report["ablated_accuracy"] is not None:
        lines.append(line("ablated_", "hidden spikes ablated"))
        lines.append(f"  the hidden spikes are worth {100 * (report['accuracy'] - report['ablated_accuracy']):.2f} "
                     "points of accuracy")
    return "\n".join(lines)
