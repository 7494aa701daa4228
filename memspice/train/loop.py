"""MEMprop: backpropagation through time through the circuit's own transient solution.

The loss is taken on the output neurons' membrane waveforms (:class:`memspice.nn.Readout`) and
its gradient flows through the implicit solver's steps into the crossbar conductances: no
surrogate gradient, because the spikes are continuous waveforms of the circuit.

A run lives in one folder: ``config.json``, ``checkpoint.pt`` (atomic, every epoch and on
Ctrl-C), ``metrics.csv`` (one row per epoch), ``results.json`` and the plots. It is deterministic
on the CPU: the data order of epoch ``e`` is a permutation seeded with ``(seed, e)``, the learning
rate a function of the step, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from memspice.data import Dataset, load_dataset
from memspice.devices.user import neuron_model
from memspice.errors import RunError
from memspice.fileio import atomic_write_text, file_sha256
from memspice.hardware import Chip, load_spec
from memspice.nn import MemristiveSNN, Readout, spike_counts
from memspice.nn.readout import DECIDERS
from memspice.nn.regularizers import rate_band_penalty
from memspice.solver.monitor import SolutionMonitor
from memspice.train import distributed
from memspice.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from memspice.train.config import TrainConfig, input_encoder
from memspice.train.schedules import annealed_threshold, learning_rates

METRICS = ("epoch", "train_loss", "train_acc", "train_samples", "eval_loss", "eval_acc", "eval_samples", "lr",
           "epoch_s", "processes", "hidden_spikes", "output_spikes", "decided_by_spikes", "threshold",
           "error_ratio")


@dataclass
class Trained:
    """A network rebuilt from a checkpoint with what it needs to classify a dataset sample;
    ``sha256``: the checkpoint file's digest (None for a network that was never saved)."""

    config: TrainConfig
    model: MemristiveSNN
    readout: Readout
    encoder: Callable
    history: list[dict]
    sha256: str | None = None

    def encode(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Row voltages (V, ``(batch, n_steps + 1, n_in)``) of pixels ``x`` (dataset rows ``index``)."""
        return self.encoder(x, self.config.n_steps, index)

    @property
    def t_end(self) -> float:
        """The simulated window (s): ``n_steps`` steps of the network's dt."""
        return self.config.n_steps * self.model.dt

    def check_settings(self) -> None:
        """Refuse a training configuration that restates the network's own settings differently
        (both values named): the network's are the ones its weights were trained with."""
        _refuse_differences(self.model.config(), {k: getattr(self.config, k) for k in _RESTATED}, "the network has",
                            "its training configuration says")

    def state(self) -> dict:
        """What rebuilds this network (:func:`trained_from_state`): configuration, module
        arguments, weights and history; plain containers and tensors."""
        return {"config": self.config.to_dict(), "model_config": self.model.config(),
                "model": self.model.state_dict(), "history": self.history}


#: The network's settings that a training configuration restates (under the same names).
_RESTATED = ("dt", "method", "buffer_gain", "buffer_knee", "pulse_gain", "pulse_tau", "buffer_rail",
             "column_conductance", "on_off_ratio", "parametrization")


def _refuse_differences(have: dict, said: dict, have_name: str, said_name: str,
                        why: str = "verify and export take every setting from the network") -> None:
    """A CheckpointError naming the first setting of ``said`` whose value differs in ``have``."""
    for key in have:
        if key in said and have[key] != said[key]:
            raise CheckpointError(f"{key}: {have_name} {have[key]!r}, {said_name} {said[key]!r}; "
                                  f"they must agree ({why})")


#: Options a resumed run may change: they do not change the result.
RUNTIME_OPTIONS = ("epochs", "device", "threads", "fused", "strict", "allow_cell_writes")


def build(config: TrainConfig, n_in: int, n_classes: int, neuron: str | None = None
          ) -> tuple[MemristiveSNN, Readout, Callable]:
    """The untrained network (``config.population`` output neurons per class), readout and
    encoder that ``config`` describes; ``neuron``: the user's own neuron model (MODULE:NAME) that
    the user named, when ``config.neuron`` is one (:func:`~memspice.devices.user.neuron_model`)."""
    model = MemristiveSNN((n_in, *config.hidden, n_classes * config.population), buffer_gain=config.buffer_gain,
                          solver=config.solver, column_conductance=config.column_conductance,
                          on_off_ratio=config.on_off_ratio, seed=config.seed, init_pos=config.init_pos,
                          init_neg=config.init_neg, parametrization=config.parametrization,
                          deep_init_pos=config.deep_init_pos, deep_init_neg=config.deep_init_neg,
                          neuron_model=neuron_model(config.neuron, neuron), buffer_knee=config.buffer_knee,
                          pulse_gain=config.pulse_gain, pulse_tau=config.pulse_tau, buffer_rail=config.buffer_rail)
    readout = Readout(config.readout, config.readout_scale, width=config.readout_width, fire_weight=config.fire_weight,
                      population=config.population)
    return model, readout, input_encoder(config)


def load_trained(path: str | Path, device: str = "cpu", neuron: str | None = None) -> Trained:
    """The trained network of the checkpoint at ``path``; ``neuron``: the MODULE:NAME of a neuron
    model of your own that the network is built of (:func:`~memspice.devices.user.neuron_model`)."""
    state = load_checkpoint(path, map_location=device)
    trained = trained_from_state(state, str(path), device, neuron)
    trained.sha256 = file_sha256(path)
    return trained


def trained_from_state(state: dict, where: str = "checkpoint", device: str = "cpu", neuron: str | None = None
                       ) -> Trained:
    """The network that ``state`` (a checkpoint's content, or :meth:`Trained.state`) describes;
    :class:`CheckpointError` names ``where`` when it does not rebuild, or when its training
    configuration and its module arguments disagree (e.g. on dt)."""
    try:
        config = TrainConfig.from_dict(dict(state["config"]))
        sizes = [int(n) for n in state["model_config"]["sizes"]]
        if sizes[-1] % config.population:
            raise ValueError(f"{sizes[-1]} output neurons are not populations of {config.population}")
        model, readout, encoder = build(config, sizes[0], sizes[-1] // config.population, neuron)
        model.load_state_dict(state["model"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{where}: the checkpoint's network does not rebuild: {exc}") from None
    if list(model.sizes) != sizes:
        raise CheckpointError(f"{where}: the checkpoint's layer sizes {sizes} disagree with its weights and "
                              f"configuration ({list(model.sizes)})")
    try:
        _refuse_differences(dict(state["model_config"]), model.config(), "the network was saved with",
                            "its training configuration says")
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    return Trained(config, model.to(device), readout, encoder, list(state["history"]))


def _order(config: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))


def training_chip_seed(config: TrainConfig, step: int) -> int:
    """The seed of the chip that hardware-aware training runs optimizer step ``step`` on (a fresh
    chip per batch; the same ones when a run resumes)."""
    return config.seed * 1_000_003 + step


def evaluate(model: MemristiveSNN, readout: Readout, encoder: Callable, x: np.ndarray, y: np.ndarray,
             n_steps: int, batch_size: int, dtype: torch.dtype, progress: bool = False,
             ablate_hidden_spikes: bool = False, monitor: SolutionMonitor | None = None,
             adaptive: bool = False, chip: Chip | None = None) -> dict:
    """Loss, accuracy and spike statistics on the samples ``x`` (``(N, n_in)``), labels ``y``:
    ``hidden_spikes`` and ``output_spikes`` per neuron and sample, ``decided_by`` the share of
    predictions each reading made (:data:`~memspice.nn.readout.DECIDERS`) and
    ``decided_by_spikes`` the share made without the membrane. ``ablate_hidden_spikes``: every
    hidden neuron's M1 cannot turn on (:meth:`MemristiveSNN.hidden_spike_ablation`).
    ``error_ratio``, ``local_error``: the solver's largest local error estimate over these
    samples (in units of its tolerance) and where, per layer; ``cell_voltages``, ``cell_margin``:
    the extreme voltages across synapse cells (:meth:`SolutionMonitor.to_json`); ``monitor`` (a new
    one if None) warns or raises when the tolerance or a write threshold is exceeded.
    ``adaptive``: error-controlled substeps within the grid (``substeps_per_step``: how many each
    batch took per grid step, on average). ``chip``: the network as that chip holds it
    (:mod:`memspice.hardware`)."""
    monitor = monitor or SolutionMonitor(context="evaluation")
    mine = SolutionMonitor()  # these samples' figures; the run's monitor judges
    device = next(model.parameters()).device
    overrides = model.hidden_spike_ablation() if ablate_hidden_spikes else None
    loss_sum, correct, hidden, output, substeps, batches = 0.0, 0, 0.0, 0.0, 0, 0
    decided = np.zeros(len(DECIDERS))
    with torch.no_grad():
        for start in tqdm(range(0, len(x), batch_size), desc="eval", leave=False, disable=not progress):
            index = torch.arange(start, min(start + batch_size, len(x)))
            xb = torch.as_tensor(x[index.numpy()], dtype=dtype, device=device)
            yb = torch.as_tensor(y[index.numpy()], device=device)
            solution = model(encoder(xb, n_steps, index), neuron_overrides=overrides, adaptive=adaptive, chip=chip,
                             samples=index)
            substeps, batches = substeps + (solution.substeps or 0), batches + 1
            monitor.observe(solution)
            mine.record(solution)
            v = solution.v
            loss_sum += readout.loss(v[-1], yb).item() * len(index)
            classes, decided_by = readout.decide(v[-1])
            correct += (classes == yb).sum().item()
            decided += np.bincount(decided_by.cpu().numpy(), minlength=len(DECIDERS))
            hidden += sum(spike_counts(h).mean().item() for h in v[:-1]) / max(len(v) - 1, 1) * len(index)
            output += spike_counts(v[-1]).mean().item() * len(index)
    n = max(len(x), 1)
    shares = {name: float(count / n) for name, count in zip(DECIDERS, decided)}
    return {"loss": loss_sum / n, "acc": correct / n, "hidden_spikes": hidden / n, "output_spikes": output / n,
            "decided_by": shares, "decided_by_spikes": 1.0 - shares["membrane"], **mine.to_json(),
            "substeps_per_step": substeps / max(batches * n_steps, 1) if adaptive else None}


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          on_batch: Callable[[int, int], None] | None = None, dataset: Dataset | None = None,
          neuron: str | None = None) -> dict | None:
    """Train (or, with ``resume``, continue) the run of ``config`` in the folder ``out``; returns
    the final results. ``on_batch(epoch, batch)`` is called after every optimizer step;
    ``neuron``: give ``config.neuron`` here too when it is a model of your own (MODULE:NAME), to
    let memspice import it (:func:`~memspice.devices.user.neuron_model`).

    Under ``torchrun`` every process trains its share of each batch (:mod:`memspice.train.distributed`);
    the main process writes the run folder, evaluates and returns the results, the others ``None``."""
    group = distributed.join(config.device)
    try:
        results = _train(config, Path(out), resume, progress, on_batch, dataset, group, neuron)
        # leave together: a gloo process that tears its connections down while the main one still
        # evaluates can abort at exit ("terminate called without an active exception")
        group.barrier()
        return results
    finally:
        distributed.leave(group)


def _train(config: TrainConfig, out: Path, resume: bool, progress: bool, on_batch: Callable[[int, int], None] | None,
           dataset: Dataset | None, group: distributed.ProcessGroup, neuron: str | None) -> dict | None:
    state = _checked_run_folder(config, out, resume, group)
    if config.threads:
        torch.set_num_threads(config.threads)
    run = _TrainingRun(config, out, group, dataset or load_dataset(config.dataset, config.data_dir),
                       progress=progress and group.main, neuron=neuron)
    epoch, first_batch, partial = run.start(state)
    while epoch < config.epochs:
        running, result, lr, threshold, started = run.epoch(epoch, first_batch, partial, on_batch)
        partial = {}
        # (the other processes wait here for the main one's evaluation)
        loss_sum, correct, seen = group.sum([running["loss_sum"], running["correct"], running["seen"]])
        if group.main:
            run.record(epoch, {"train_loss": loss_sum / seen, "train_acc": correct / seen, "train_samples": int(seen),
                               "eval_loss": result["loss"], "eval_acc": result["acc"], "lr": lr,
                               "epoch_s": time.perf_counter() - started, "hidden_spikes": result["hidden_spikes"],
                               "output_spikes": result["output_spikes"],
                               "decided_by_spikes": result["decided_by_spikes"],
                               "threshold": run.device_th1 if threshold is None else threshold,
                               "error_ratio": max(running["error_ratio"], result["error_ratio"] or 0.0)})
        epoch, first_batch = epoch + 1, 0
        if group.main:
            run.snapshot(epoch, 0, {})
            _write_metrics(out / "metrics.csv", run.history)
    if not group.main:
        return None
    return finish(out, config, run.model, run.readout, run.encoder, run.data, run.history, run.dtype, run.progress,
                  run.monitor)


def _checked_run_folder(config: TrainConfig, out: Path, resume: bool, group: distributed.ProcessGroup) -> dict | None:
    """The checkpoint to resume from (``None`` for a new run), after checking that ``out`` holds
    a run of ``config`` to resume, or none to overwrite."""
    checkpoint_path, state = out / "checkpoint.pt", None
    if resume:
        if not checkpoint_path.is_file():
            raise RunError(f"nothing to resume: no checkpoint in {out}")
        state = load_checkpoint(checkpoint_path, map_location=group.device)
        saved = TrainConfig.from_dict(dict(state["config"]))
        changed = {k: (v, getattr(config, k)) for k, v in saved.to_dict().items()
                   if k not in RUNTIME_OPTIONS and v != config.to_dict()[k]}
        if changed:
            raise RunError(f"{out} was trained with other options: "
                           + ", ".join(f"{k} = {a!r} there, {b!r} now" for k, (a, b) in changed.items()))
    elif checkpoint_path.exists():
        raise RunError(f"{out} already holds a run; continue it with --resume or choose another --out")
    group.barrier()  # every process has checked the folder before the main one writes to it
    return state


class _TrainingRun:
    """One training run's network, optimizer and data, and what it has done (``history``)."""

    def __init__(self, config: TrainConfig, out: Path, group: distributed.ProcessGroup, data: Dataset,
                 progress: bool, neuron: str | None = None) -> None:
        self.config, self.out, self.group, self.data, self.progress = config, out, group, data, progress
        self.neuron = neuron  #: the user's neuron model they named, MODULE:NAME
        self.dtype = getattr(torch, config.dtype)
        self.train_x, self.train_y = data.train_x, data.train_y
        if config.train_samples:
            self.train_x, self.train_y = self.train_x[: config.train_samples], self.train_y[: config.train_samples]
        self.eval_n = min(config.eval_samples or len(data.test_x), len(data.test_x))
        self.model, self.readout, self.encoder = build(config, data.n_features, len(data.classes), neuron)
        self.model = self.model.to(device=group.device, dtype=self.dtype)
        self.net = self.model if group.world == 1 else torch.nn.parallel.DistributedDataParallel(self.model)
        groups = [{"params": self.model.parameters()}] if config.layer_lr is None else \
            [{"params": crossbar.parameters()} for crossbar in self.model.crossbars]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr)
        self.n_batches = math.ceil(len(self.train_x) / config.batch_size)
        self.device_th1 = self.model.layers[0].device_params().get("th1")  # the MIF's, which annealing raises
        self.hardware = load_spec(config.hardware) if config.hardware else None
        self.monitor = SolutionMonitor(config.strict, config.allow_cell_writes,
                                       context=f"training (dt = {config.dt:g} s, {config.method})")
        self.history: list[dict] = []

    def start(self, state: dict | None) -> tuple[int, int, dict]:
        """The weights to start from (the checkpoint ``state``, or ``init_from``, or the
        initialization); ``(epoch, batch, partial epoch's sums)`` to go on from."""
        epoch, first_batch, partial = 0, 0, {}
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            epoch, first_batch, self.history = state["epoch"], state["batch"], list(state["history"])
            partial = dict(state.get("partial", {}))
        elif self.config.init_from:
            self.model.load_state_dict(_starting_weights(self.config, self.model, self.neuron))
        if self.group.main:
            atomic_write_text(self.out / "config.json", json.dumps(self.config.to_dict(), indent=2) + "\n")
        return epoch, first_batch, partial

    def snapshot(self, next_epoch: int, next_batch: int, running: dict) -> None:
        """The checkpoint (main process): where to go on from, and the epoch's sums so far."""
        if not self.group.main:
            return
        save_checkpoint(self.out / "checkpoint.pt", {
            "config": self.config.to_dict(), "model_config": self.model.config(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "epoch": next_epoch, "batch": next_batch,
            "history": self.history, "partial": running,
            "dataset": {"name": self.data.name, "classes": list(self.data.classes)}})

    def epoch(self, epoch: int, first_batch: int, partial: dict, on_batch: Callable[[int, int], None] | None):
        """Batches ``first_batch..`` of ``epoch`` and the evaluation after them (main process):
        ``(sums, evaluation, last lr, last threshold, start time)``. Ctrl-C saves every finished
        batch and is raised again (an interrupted evaluation is redone)."""
        config, n_batches = self.config, self.n_batches
        order = _order(config, epoch, len(self.train_x))
        running = {"loss_sum": 0.0, "correct": 0, "seen": 0, "elapsed": 0.0, "error_ratio": 0.0, **partial}
        started = time.perf_counter() - running["elapsed"]
        bar = tqdm(range(first_batch, n_batches), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not self.progress, initial=first_batch, total=n_batches)
        next_batch = first_batch
        lr = learning_rates(config, epoch * n_batches + first_batch, n_batches)[0]  # also when no batch is left
        threshold = annealed_threshold(config, epoch * n_batches + first_batch, n_batches, self.device_th1)
        try:
            for batch in bar:
                rows = order[batch * config.batch_size:(batch + 1) * config.batch_size]
                lr, threshold = self.step(epoch, batch, rows, running)
                next_batch = batch + 1
                bar.set_postfix(loss=f"{running['loss_sum'] / running['seen']:.3f}",
                                acc=f"{running['correct'] / running['seen']:.3f}")
                if on_batch:
                    on_batch(epoch, batch)
            bar.close()
            result = evaluate(self.model, self.readout, self.encoder, self.data.test_x[:self.eval_n],
                              self.data.test_y[:self.eval_n], config.n_steps, max(config.batch_size, 64), self.dtype,
                              self.progress, monitor=self.monitor) if self.group.main else {}
        except KeyboardInterrupt:
            running["elapsed"] = time.perf_counter() - started
            self.snapshot(epoch, next_batch, running)
            bar.close()
            raise
        return running, result, lr, threshold, started

    def step(self, epoch: int, batch: int, index: torch.Tensor, running: dict) -> tuple[float, float | None]:
        """One optimizer step on the dataset rows ``index`` (this process's share of them), its
        loss and accuracy added to ``running``; returns its learning rate (the input crossbar's) and
        annealed threshold."""
        config, group, dtype, model = self.config, self.group, self.dtype, self.model
        step = epoch * self.n_batches + batch
        rates = learning_rates(config, step, self.n_batches)
        for param_group, lr in zip(self.optimizer.param_groups, rates, strict=True):
            param_group["lr"] = lr
        threshold = annealed_threshold(config, step, self.n_batches, self.device_th1)
        # a tensor: the annealed value changes every step without recompiling the solver
        overrides = None if threshold is None else \
            [{"th1": torch.tensor(threshold, dtype=dtype, device=group.device)}] * len(model.layers)
        share = group.shard(index)
        xb = torch.as_tensor(self.train_x[share.numpy()], dtype=dtype, device=group.device)
        yb = torch.as_tensor(self.train_y[share.numpy()], device=group.device)
        chip = None if self.hardware is None else self.hardware.sample(model.sizes, training_chip_seed(config, step))
        solution = self.net(self.encoder(xb, config.n_steps, share), neuron_overrides=overrides, chip=chip,
                            samples=share)
        self.monitor.observe(solution)
        running["error_ratio"] = max([running["error_ratio"], *(e.ratio for e in solution.errors or [])])
        v = solution.v
        loss = self.readout.loss(v[-1], yb)
        if config.hidden_rate is not None and len(v) > 1:
            loss = loss + config.rate_weight * rate_band_penalty(v[:-1], config.hidden_rate, self.readout.threshold,
                                                                 self.readout.width)
        self.optimizer.zero_grad(set_to_none=True)
        # DDP averages the processes' gradients: weighting each share's mean loss by its size
        # makes that the gradient of the whole batch's mean loss, as in one process
        (loss * (len(share) * group.world / len(index))).backward()
        self.optimizer.step()
        model.project_()
        running["loss_sum"] += loss.item() * len(share)
        running["correct"] += (self.readout.predict(v[-1].detach()) == yb).sum().item()
        running["seen"] += len(share)
        return rates[0], threshold

    def record(self, epoch: int, figures: dict) -> None:
        """The history's row of ``epoch`` (from 0), printed with progress."""
        row = {"epoch": epoch + 1, **figures, "eval_samples": self.eval_n, "processes": self.group.world}
        self.history.append({name: row[name] for name in METRICS})
        if self.progress:
            row = self.history[-1]
            tqdm.write(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                       f"eval ({self.eval_n}) loss {row['eval_loss']:.4f} acc {row['eval_acc']:.4f}, "
                       f"{100 * row['decided_by_spikes']:.0f} % by spikes, {row['hidden_spikes']:.2f} hidden and "
                       f"{row['output_spikes']:.2f} output spikes per neuron | {row['epoch_s']:.0f} s")


#: Module arguments a run that starts from another network's weights may change: memory, and the
#: periphery the crossbars are fine-tuned for.
_REFINABLE = ("checkpoint_every", "buffer_gain", "buffer_knee", "pulse_gain", "pulse_tau", "buffer_rail")


def _starting_weights(config: TrainConfig, model: MemristiveSNN, neuron: str | None) -> dict:
    """The weights of ``config.init_from`` for ``model``; :class:`CheckpointError` when that network's
    layer sizes or settings (dt, method, ...) are not the new run's. Its row buffers may differ:
    the weights are the crossbars', and fine-tuning them for other buffers is what such a run is for.
    So may its output populations, where the new run's is a multiple of it: each output neuron's
    column is copied to that many neurons of its class, so that the run starts from the same
    decisions on the ideal circuit."""
    start = load_trained(config.init_from, neuron=neuron)
    copies, remainder = divmod(config.population, start.readout.population)
    weights = start.model.state_dict()
    theirs = {k: v for k, v in start.model.config().items() if k not in _REFINABLE}
    if not remainder and copies > 1:
        theirs["sizes"] = [*theirs["sizes"][:-1], theirs["sizes"][-1] * copies]
        last = f"crossbars.{len(start.model.sizes) - 2}."
        weights = {k: v.repeat_interleave(copies, dim=1) if k.startswith(last) else v for k, v in weights.items()}
    _refuse_differences(theirs, model.config(), f"the network of {config.init_from}", "this run",
                        "a run starts from the weights of a network like its own (or populations of its output "
                        "neurons)")
    return weights


def _write_metrics(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in METRICS} for row in history)  # older runs lack some columns
    atomic_write_text(path, buffer.getvalue())


def finish(out: Path, config: TrainConfig, model: MemristiveSNN, readout: Readout, encoder: Callable,
           data: Dataset, history: list[dict], dtype: torch.dtype, progress: bool,
           monitor: SolutionMonitor | None = None) -> dict:
    """Test accuracy on the whole test set, ``results.json`` and the plots (``monitor``: the
    run's, so that a local error warning comes once per run)."""
    from memspice.plots import plot_output_membranes, plot_training

    test = evaluate(model, readout, encoder, data.test_x, data.test_y, config.n_steps, max(config.batch_size, 64),
                    dtype, progress, monitor=monitor)
    results = {"dataset": data.name, "sizes": list(model.sizes), "epochs": len(history),
               "test_samples": len(data.test_x), "test_acc": test["acc"], "test_loss": test["loss"],
               "train_s": sum(row["epoch_s"] for row in history),
               "epoch_s": history[-1]["epoch_s"] if history else None,
               "output_spikes": test["output_spikes"], "hidden_spikes": test["hidden_spikes"],
               "decided_by_spikes": test["decided_by_spikes"], "decided_by": test["decided_by"],
               **{k: test[k] for k in ("error_ratio", "local_error", "cell_voltages", "cell_margin")}}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    if history:
        plot_training(history, out / "training.png")
    with torch.no_grad():
        index = torch.arange(min(4, len(data.test_x)))
        xb = torch.as_tensor(data.test_x[index.numpy()], dtype=dtype, device=next(model.parameters()).device)
        solution = model(encoder(xb, config.n_steps, index))
    plot_output_membranes(solution.t.cpu().numpy(), solution.v[-1].cpu().numpy(), data.test_y[index.numpy()],
                          data.classes, readout.threshold, out / "membranes.png", readout.population)
    return results
