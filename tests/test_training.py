"""MEMprop training, checkpoints, export and verification (the last two run the real ngspice)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import default_sigint, memspice, memspice_stops

from memspice.circuit import PulseExtender
from memspice.cli import _train_config, build_parser
from memspice.data import DirectEncoder, RateEncoder, load_dataset, read_idx
from memspice.data.idx import DatasetError
from memspice.deploy import export_netlist, verify
from memspice.deploy.verify import JournalError, network_sha256
from memspice.errors import ConfigError, MemspiceError
from memspice.hardware import PRESETS, Chip, HardwareSpec
from memspice.nn import (
    DECIDERS,
    READOUTS,
    MemristiveCrossbar,
    MemristiveSNN,
    Readout,
    decide,
    first_spike_steps,
    latency,
    pool_readings,
    rate_band_penalty,
    soft_spike_counts,
    spike_counts,
)
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist
from memspice.train.assess import assess, assessment_table
from memspice.train.checkpoint import CheckpointError, load_checkpoint
from memspice.train.config import TrainConfig, input_encoder, recipe
from memspice.train.loop import (
    RunError,
    evaluate,
    load_trained,
    train,
    trained_from_state,
)

# A small, quick network: 64-16-10 on 128 digits, 8 µs windows (40 steps).
TINY = {"hidden": (16,), "epochs": 4, "batch_size": 16, "lr": 0.1, "train_samples": 128, "eval_samples": 32,
        "window": 8e-6, "threads": 1, "fused": False}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("tiny")
    results = train(recipe("digits", **TINY), out, progress=False, dataset=digits)
    return out, results


@pytest.mark.parametrize("parametrization", ["sigmoid", "clamp"])
def test_conductances_never_leave_their_range(parametrization):
    crossbar = MemristiveCrossbar(8, 4, 1e-8, 1e-6, parametrization=parametrization)
    optimizer = torch.optim.SGD(crossbar.parameters(), lr=1e6)
    for _ in range(3):  # huge steps drive the parameters far out
        loss = (crossbar(torch.ones(2, 8), torch.zeros(2, 4)) ** 2).sum() * 1e12 - crossbar.g_neg.sum() * 1e9
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert crossbar.theta_pos.abs().max() > 50  # far out (before any projection), yet
        for g in (crossbar.g_pos, crossbar.g_neg):
            assert g.min() >= 1e-8 and g.max() <= 1e-6
    crossbar.project_()
    crossbar.zero_grad()
    crossbar.g_pos.sum().backward()
    if parametrization == "clamp":  # projected onto the range, where a cell at a bound still learns
        assert crossbar.theta_pos.min() == 0 and crossbar.theta_neg.max() == 1
        assert (crossbar.theta_pos.grad != 0).all()
    else:  # saturated logits: no gradient left
        assert (crossbar.theta_pos.grad.abs() < 1e-20).any()
    description = crossbar.describe()
    assert description.g_range == (1e-8, 1e-6)


def test_training_a_tiny_subset_lowers_the_loss_and_beats_chance(tiny_run, digits):
    out, results = tiny_run
    history = [json.loads(json.dumps(row)) for row in load_checkpoint(out / "checkpoint.pt")["history"]]
    assert len(history) == 4
    trained = load_trained(out / "checkpoint.pt")
    untrained = MemristiveSNN(trained.model.sizes, solver=trained.config.dt, seed=trained.config.seed)
    x, y = digits.train_x[:128], digits.train_y[:128]
    before = evaluate(untrained, trained.readout, trained.encoder, x, y, trained.config.n_steps, 128, torch.float32)
    after = evaluate(trained.model, trained.readout, trained.encoder, x, y, trained.config.n_steps, 128,
                     torch.float32)
    assert after["loss"] < before["loss"] - 0.05
    assert after["acc"] > 0.25  # chance is 0.1: 13 of 128, with a standard deviation of 3.4
    assert 0.0 <= results["test_acc"] <= 1.0 and results["test_samples"] == len(digits.test_x)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_acc,train_samples,eval_loss,eval_acc") and len(lines) == 5
    for name in ("training.png", "membranes.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, digits):
    config = recipe("digits", **{**TINY, "epochs": 2})  # stopped in epoch 1, resumed across the epoch boundary
    train(config, tmp_path / "straight", progress=False, dataset=digits)

    def interrupt(epoch, batch):
        if (epoch, batch) == (0, 2):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "stopped", progress=False, on_batch=interrupt, dataset=digits)
    saved = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert (saved["epoch"], saved["batch"]) == (0, 3)
    with pytest.raises(RunError, match="--resume"):
        train(config, tmp_path / "stopped", progress=False, dataset=digits)
    train(config, tmp_path / "stopped", resume=True, progress=False, dataset=digits)

    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_refuses_changed_options(tiny_run, digits):
    out, _ = tiny_run
    with pytest.raises(RunError, match="lr = 0.1 there, 0.5 now"):
        train(recipe("digits", **{**TINY, "lr": 0.5}), out, resume=True, progress=False, dataset=digits)


def test_a_run_can_start_from_a_trained_network(tiny_run, digits, tmp_path):
    """--init-from: the new run's weights start as the checkpoint's (at a learning rate too small to
    move them, they end there), with its own options; a network of other sizes is refused."""
    out, _ = tiny_run
    start = load_checkpoint(out / "checkpoint.pt")["model"]
    config = recipe("digits", **{**TINY, "epochs": 1, "lr": 1e-9, "v_high": 0.9,
                                 "init_from": str(out / "checkpoint.pt")})
    train(config, tmp_path / "tuned", progress=False, dataset=digits)
    tuned = load_trained(tmp_path / "tuned" / "checkpoint.pt")
    assert tuned.config.v_high == 0.9
    for name, tensor in tuned.model.state_dict().items():
        torch.testing.assert_close(tensor, start[name], rtol=0, atol=1e-6)
    rectified = config.__class__(**{**config.to_dict(), "buffer_knee": 0.0, "buffer_gain": 6.0, "buffer_rail": 1.2})
    train(rectified, tmp_path / "rectified", progress=False, dataset=digits)  # fine-tuned for other buffers
    buffers = load_trained(tmp_path / "rectified" / "checkpoint.pt").model.describe().buffer
    assert (buffers.knee, buffers.gain, buffers.rail) == (0.0, 6.0, 1.2)
    with pytest.raises(CheckpointError, match="sizes"):
        train(config.__class__(**{**config.to_dict(), "hidden": (8,)}), tmp_path / "other", progress=False,
              dataset=digits)


def test_a_run_can_start_from_populations_of_a_trained_networks_outputs(tiny_run, digits, tmp_path):
    """--population 3 --init-from a network of one output neuron per class: each output column is
    copied to its class's three neurons, so the run starts from the same decisions; ngspice's
    readings are pooled by the same populations; other multiples and sizes are refused."""
    out, _ = tiny_run
    config = recipe("digits", **{**TINY, "epochs": 1, "lr": 1e-9, "population": 3,
                                 "init_from": str(out / "checkpoint.pt")})
    train(config, tmp_path / "population", progress=False, dataset=digits)
    start, grown = load_trained(out / "checkpoint.pt"), load_trained(tmp_path / "population" / "checkpoint.pt")
    assert list(grown.model.sizes) == [64, 16, 30] and grown.readout.population == 3
    x, y = digits.test_x[:48], digits.test_y[:48]
    before, after = (evaluate(t.model, t.readout, t.encoder, x, y, t.config.n_steps, 48, torch.float32)
                     for t in (start, grown))
    assert after["acc"] == before["acc"] and after["decided_by"] == before["decided_by"]
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5)
    assessed = assess(grown, digits, samples=48, progress=False)
    assert assessed["accuracy"] == before["acc"] and assessed["population"] == 3
    assert "64-16-30 network (3 output neurons per class)" in assessment_table(assessed)
    with pytest.raises(MemspiceError, match=r"5 classes, not those of a 64-16-30 network \(3 output neurons per"):
        assess(grown, dataclasses.replace(digits, classes=digits.classes[:5]), samples=8, progress=False)
    report = verify(grown, digits.test_x, digits.test_y, np.arange(2), progress=False)
    assert report["agreement"] == 1.0 and report["population"] == 3
    assert all(len(row["counts_spice"]) == 30 for row in report["per_sample"])
    for row in report["per_sample"]:  # the prediction is the populations' decision
        firsts = [[np.inf if f is None else f for f in row["firsts_spice"]]]
        pooled = pool_readings(np.array([row["counts_spice"]]), np.array(firsts), np.array([row["means_spice"]]), 3,
                               grown.t_end)
        assert decide(*pooled, report["decision_order"])[0][0] == row["pred_spice"]
    with pytest.raises(CheckpointError, match="sizes"):  # 3 neurons per class do not make 4
        train(config.__class__(**{**config.to_dict(), "population": 4,
                                  "init_from": str(tmp_path / "population" / "checkpoint.pt")}),
              tmp_path / "four", progress=False, dataset=digits)
    state = load_checkpoint(tmp_path / "population" / "checkpoint.pt")
    state["config"]["population"] = 7
    with pytest.raises(CheckpointError, match="30 output neurons are not populations of 7"):
        trained_from_state(state)


def test_each_crossbar_learns_at_its_own_rate(tiny_run, digits, tmp_path):
    """--layer-lr: a rate too small to move the input crossbar leaves it where it started while
    the output crossbar learns; the run records both rates and resumes with them."""
    out, _ = tiny_run
    start = load_checkpoint(out / "checkpoint.pt")["model"]
    config = recipe("digits", **{**TINY, "epochs": 1, "layer_lr": (1e-9, 0.1), "init_from": str(out / "checkpoint.pt")})
    train(config, tmp_path, progress=False, dataset=digits)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for name, tensor in state["model"].items():
        moved = (tensor - start[name]).abs().max().item()
        assert moved < 1e-6 if name.startswith("crossbars.0.") else moved > 1e-2, (name, moved)
    rates = [group["lr"] for group in state["optimizer"]["param_groups"]]  # both decayed alike
    assert len(rates) == 2 and rates[1] / rates[0] == pytest.approx(1e8)
    assert state["config"]["layer_lr"] == [1e-9, 0.1]


def test_corrupt_and_foreign_checkpoints_fail_clearly(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a memspice checkpoint"):
        load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "memspice-checkpoint", "object": np.random.default_rng(0)}, unsafe)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    result = memspice_stops("verify", str(garbage))
    assert result.returncode == 2 and "corrupt or not a checkpoint" in result.stderr


def test_a_checkpoint_whose_sizes_disagree_with_its_weights_is_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    state = load_checkpoint(out / "checkpoint.pt")
    state["model_config"]["sizes"] = [64, 99, 10]  # the weights and the configuration say 64-16-10
    torch.save(state, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match=r"layer sizes \[64, 99, 10\] disagree .* \(\[64, 16, 10\]\)"):
        load_trained(tmp_path / "lying.pt")


@pytest.mark.ngspice
def test_an_exported_network_runs_in_ngspice(tiny_run, digits):
    out, _ = tiny_run
    trained = load_trained(out / "checkpoint.pt")
    for synapse in ("resistor", "memristor"):
        netlist = export_netlist(trained, digits.test_x[5], 5, int(digits.test_y[5]), synapse)
        assert f"test sample 5 (label {digits.test_y[5]})" in netlist
        waves = Waveforms.from_plot(run_netlist(netlist, name=f"export_{synapse}")[-1])
        assert sorted(waves.signals) == sorted(f"v(l2_m{j})" for j in range(10))
        assert waves.time[-1] == pytest.approx(trained.config.window)
        if synapse == "memristor":  # programmed states: x0 = (G - gmin) / (gmax - gmin) per cell
            assert " synapse x0=" in netlist


@pytest.mark.ngspice
def test_verify_on_three_samples_agrees_with_the_solver(tiny_run, digits):
    out, _ = tiny_run
    report = verify(load_trained(out / "checkpoint.pt"), digits.test_x, digits.test_y, np.arange(3), progress=False)
    assert report["samples"] == 3
    assert report["agreement"] == 1.0
    assert report["count_match"] >= 0.9
    assert 0.0 <= report["decided_by_spikes"] <= 1.0 and report["decision_order"] == ["count"]
    assert sum(sum(row["counts_spice"]) for row in report["per_sample"]) > 0  # the outputs do spike
    for row in report["per_sample"]:  # each prediction follows from the readings it reports
        for engine in ("spice", "torch"):
            firsts = [[np.inf if f is None else f for f in row[f"firsts_{engine}"]]]
            pred, by, _ = decide(np.array([row[f"counts_{engine}"]]), np.array(firsts),
                                 np.array([row[f"means_{engine}"]]), report["decision_order"])
            assert (pred[0], DECIDERS[by[0]]) == (row[f"pred_{engine}"], row[f"decided_{engine}"])
            assert [f is None for f in row[f"firsts_{engine}"]] == [c == 0 for c in row[f"counts_{engine}"]]
    assert 0.0 <= report["mean_error_v"] < 5e-3
    assert 0.0 <= report["first_spike_error_s"] < 0.2 * trained_dt(out)


def test_near_ties_are_flagged_against_the_engines_largest_difference():
    from memspice.deploy.verify import judge, summarize

    def row(index, counts, firsts_spice, firsts_torch):
        return {"index": index, "label": 0, "counts_spice": counts, "counts_torch": counts,
                "firsts_spice": firsts_spice, "firsts_torch": firsts_torch,
                "means_spice": [0.1, 0.2], "means_torch": [0.1, 0.2]}

    # first spikes 3 ns apart in sample 0, 40 ns in sample 1; the engines differ by up to 4.5 ns
    rows = judge([row(0, [1, 1], [2.000e-6, 2.003e-6], [2.000e-6, 2.0075e-6]),
                  row(1, [1, 1], [3.00e-6, 3.04e-6], [3.00e-6, 3.04e-6]),
                  row(2, [0, 0], [None, None], [None, None])], ["first-spike", "count"])
    assert [r["near_tie"] for r in rows] == [True, False, False]  # the membranes agree exactly: 0.1 V apart
    assert [r["decided_spice"] for r in rows] == ["first-spike", "first-spike", "membrane"]
    figures = summarize(rows)
    assert figures["near_ties"] == 1 and figures["decided_by_spikes"] == pytest.approx(2 / 3)
    assert figures["first_spike_error_s"] == pytest.approx(4.5e-9)


def trained_dt(out) -> float:
    return load_trained(out / "checkpoint.pt").config.dt


@pytest.mark.ngspice
def test_an_interrupted_verification_resumes_from_its_journal(tiny_run, digits, tmp_path):
    out, _ = tiny_run
    trained = load_trained(out / "checkpoint.pt")
    journal = tmp_path / "report.json.partial"
    first = verify(trained, digits.test_x, digits.test_y, np.arange(2), progress=False, journal=journal)
    assert first["resumed"] == 0 and len(journal.read_text().splitlines()) == 2
    with open(journal, "a") as fh:
        fh.write('{"index": 2, "netlist_sha')  # the process was killed while writing sample 2
    again = verify(trained, digits.test_x, digits.test_y, np.arange(3), progress=False, journal=journal)
    assert again["resumed"] == 2  # samples 0 and 1 come from the journal, sample 2 is simulated
    fresh = verify(trained, digits.test_x, digits.test_y, np.arange(3), progress=False)
    def readings(report):  # the rows without their ngspice run times
        return [{k: v for k, v in row.items() if k != "spice_s"} for row in report["per_sample"]]

    assert readings(again) == readings(fresh)
    # a journal of other weights (or synapses, settings) is not used
    other = verify(trained, digits.test_x, digits.test_y, np.arange(1), progress=False, journal=journal,
                   synapse="memristor")
    assert other["resumed"] == 0
    # a line with the right digest but the wrong content names the journal to delete
    lines = journal.read_text().splitlines()
    entry = json.loads(lines[0])
    journal.write_text("\n".join([json.dumps({**entry, "counts": "many"}), *lines[1:]]) + "\n")
    with pytest.raises(JournalError, match=rf"{journal}, line 1: .*delete {journal}"):
        verify(trained, digits.test_x, digits.test_y, np.arange(3), progress=False, journal=journal)


@pytest.mark.ngspice
def test_an_interrupted_cli_verification_keeps_its_finished_samples(tiny_run, tmp_path):
    """Ctrl-C (SIGINT to memspice only, as a terminal sends it) during `memspice verify --save`:
    the samples that finished are in the journal, no ngspice is left, no queued sample starts,
    and the same command resumes from the journal."""
    out, _ = tiny_run
    save = tmp_path / "report.json"
    journal = tmp_path / "report.json.partial"
    runs = tmp_path / "tmp"
    runs.mkdir()
    command = [sys.executable, "-m", "memspice", "verify", str(out / "checkpoint.pt"), "--samples", "40",
               "--workers", "1", "--save", str(save)]
    proc = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(runs)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not (journal.is_file() and journal.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"the samples that finished are in {journal}" in err
    kept = len(journal.read_text().splitlines())
    assert 2 <= kept < 40 and not save.exists() and not list(runs.iterdir())
    result = subprocess.run([*command[:6], "3", *command[7:], "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(save.read_text())["resumed"] == min(kept, 3)  # the journal's first samples


@pytest.mark.ngspice
def test_cli_export_and_verify(tiny_run, tmp_path):
    out, _ = tiny_run
    cir = tmp_path / "net.cir"
    result = memspice("export", str(out / "checkpoint.pt"), "--sample", "2", "--out", str(cir))
    assert result.returncode == 0, result.stderr
    assert cir.read_text().startswith("* memspice: digits network 64-16-10, test sample 2")
    result = memspice_stops("export", str(out / "checkpoint.pt"), "--sample", "5000", "--out", str(cir))
    assert result.returncode == 2 and "test set has samples 0..358" in result.stderr
    result = memspice("verify", str(out / "checkpoint.pt"), "--samples", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"samples", "acc_spice", "acc_torch", "agreement", "count_match", "decided_by_spikes",
                           "decided_by_spikes_torch", "near_ties", "elapsed_s", "compute_s", "missing"}
    assert report["samples"] == 2
    # the same two samples verified as two parts (two machines) and merged
    parts = [tmp_path / "part0.json", tmp_path / "part1.json"]
    for k, part in enumerate(parts):
        result = memspice("verify", str(out / "checkpoint.pt"), "--samples", "1", "--offset", str(k), "--save",
                          str(part), "--json")
        assert result.returncode == 0, result.stderr
        assert part.is_file() and not (tmp_path / f"part{k}.json.partial").exists()  # the journal is gone
    result = memspice("verify-merge", *map(str, parts), "--json")
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)
    assert {k: merged[k] for k in ("samples", "acc_spice", "acc_torch", "agreement", "count_match")} == \
        {k: report[k] for k in ("samples", "acc_spice", "acc_torch", "agreement", "count_match")}
    result = memspice_stops("verify-merge", str(parts[0]), str(parts[0]))
    assert result.returncode == 2 and "overlap" in result.stderr
    (tmp_path / "junk.json").write_text("{}")
    result = memspice_stops("verify-merge", str(tmp_path / "junk.json"))
    assert result.returncode == 2 and "not a report saved by `memspice verify --save`" in result.stderr
    broken = json.loads(parts[0].read_text())
    del broken["per_sample"][0]["counts_torch"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = memspice_stops("verify-merge", str(tmp_path / "broken.json"), str(parts[1]))
    assert result.returncode == 2 and "broken.json: per_sample[0] lacks one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_evaluate_reports_decisions_and_the_ablation(tiny_run, tmp_path):
    out, _ = tiny_run
    saved = tmp_path / "results.json"
    result = memspice("evaluate", str(out / "checkpoint.pt"), "--samples", "40", "--ablate", "hidden-spikes",
                      "--no-fused", "--threads", "1", "--save", str(saved), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert json.loads(saved.read_text()) == report
    assert report["samples"] == 40 and report["dataset"] == "digits" and len(report["checkpoint_sha256"]) == 64
    assert 0 <= report["decided_by_spikes"] <= 1 and report["decided_by_spikes"] == pytest.approx(
        report["decided_by"]["count"] + report["decided_by"]["first-spike"])
    assert report["hidden_spikes_per_neuron"] > 0 and report["ablated_hidden_spikes_per_neuron"] == 0
    assert 0 <= report["ablated_accuracy"] <= 1
    # the same figures as the training loop's evaluation of those samples
    trained, digits = load_trained(out / "checkpoint.pt"), load_dataset("digits")
    direct = evaluate(trained.model, trained.readout, trained.encoder, digits.test_x[:40], digits.test_y[:40],
                      trained.config.n_steps, 256, torch.float32)
    assert report["accuracy"] == direct["acc"]
    result = memspice_stops("evaluate", str(out / "checkpoint.pt"), "--samples", "5000", "--no-fused")
    assert result.returncode == 2 and "the digits test set has 359 samples" in result.stderr
    result = memspice_stops("evaluate", str(out / "checkpoint.pt"), "--samples", "few")
    assert result.returncode == 2 and "expected a whole number, got 'few'" in result.stderr


@pytest.mark.ngspice
def test_cli_robustness_runs_sampled_chips_in_torch_and_one_in_ngspice(tiny_run, tmp_path):
    out, _ = tiny_run
    result = memspice("robustness", str(out / "checkpoint.pt"), "--hardware", "stress", "--chips", "2", "--seed", "4",
                      "--samples", "40", "--spice", "2", "--workers", "1", "--no-fused", "--threads", "1",
                      "--allow-cell-writes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hardware"] == PRESETS["stress"].to_dict() and report["samples"] == 40
    assert [c["chip_seed"] for c in report["per_chip"]] == [4, 5]
    # each chip's figure is the evaluation of the network on that chip, the ideal one on none
    trained, digits = load_trained(out / "checkpoint.pt"), load_dataset("digits")
    for chip, expected in ((None, report["ideal_accuracy"]),
                           (PRESETS["stress"].sample(trained.model.sizes, 5), report["per_chip"][1]["accuracy"])):
        direct = evaluate(trained.model, trained.readout, trained.encoder, digits.test_x[:40], digits.test_y[:40],
                          trained.config.n_steps, 256, torch.float32, chip=chip)
        assert direct["acc"] == expected
    assert report["accuracy_worst"] <= report["accuracy_mean"] <= report["accuracy_best"]
    spice = report["spice"]
    assert spice["chip_seed"] == 4 and spice["samples"] == 2 and spice["agreement"] == 1.0
    assert spice["count_match"] >= 0.9
    bad = tmp_path / "chip.json"
    bad.write_text(json.dumps({"program_noise": -0.1}))
    for hardware, message in (("nope", "neither a preset"), (str(bad), "program_noise must be a finite number >= 0")):
        result = memspice_stops("robustness", str(out / "checkpoint.pt"), "--hardware", hardware)
        assert result.returncode == 2 and message in result.stderr
        assert "sandbox" not in result.stderr  # without --spice no ngspice runs, and none is announced


def test_calibration_in_the_loop_lowers_the_loss_on_its_chip_and_leaves_the_network(tiny_run, digits):
    """A trimmed chip calibrated on training samples: the codes it keeps classify those samples
    better than the factory's, and the readout's loss there falls; the codes are integers a DAC
    holds, the network's weights and their requires_grad are as they were, and a chip without
    threshold trims is refused before any work."""
    from memspice.train.calibration import calibrate

    out, _ = tiny_run
    trained = load_trained(out / "checkpoint.pt")
    weights = {k: v.clone() for k, v in trained.model.state_dict().items()}
    chip = HardwareSpec(threshold_spread=0.03, trim_bits=5).sample(trained.model.sizes, 2)
    x, y = digits.train_x[:128], digits.train_y[:128]

    def figures() -> dict:
        return evaluate(trained.model, trained.readout, trained.encoder, x, y, trained.config.n_steps, 128,
                        torch.float32, chip=chip)

    before = figures()
    fitted = calibrate(trained, chip, x, y, epochs=3, batch_size=16)
    after = figures()
    assert fitted["accuracy"][0] == before["acc"] and len(fitted["accuracy"]) == 4
    assert fitted["kept_pass"] > 0 and after["acc"] == max(fitted["accuracy"]) > before["acc"]
    assert after["loss"] < before["loss"]
    assert chip.calibrated and fitted["codes_changed"] > 0
    for codes in chip.calibration:
        assert not codes.requires_grad and torch.equal(codes, codes.round()) and codes.abs().max() <= 2 * 15
    assert all(torch.equal(v, weights[k]) for k, v in trained.model.state_dict().items())
    assert all(p.requires_grad for p in trained.model.parameters())
    with pytest.raises(ConfigError, match="no threshold trims to calibrate"):
        calibrate(trained, PRESETS["stress"].sample(trained.model.sizes, 0), x, y)


def test_calibration_of_the_output_layer_alone_on_a_switch_trimmed_chip(tiny_run, digits):
    """Calibrating only the output layer's codes of a chip that trims its switches: the hidden
    layer's codes stay 0, the output layer's move and classify the calibration samples better than
    the factory's; layers the network does not have are one clear error."""
    from memspice.train.calibration import calibrate

    out, _ = tiny_run
    trained = load_trained(out / "checkpoint.pt")
    chip = HardwareSpec(threshold_spread=0.03, trim_bits=5, trim_scheme="switch").sample(trained.model.sizes, 2)
    x, y = digits.train_x[:128], digits.train_y[:128]
    fitted = calibrate(trained, chip, x, y, epochs=3, batch_size=16, layers=[2])
    hidden, output = chip.calibration
    assert not hidden.any() and output.any()
    assert fitted["kept_pass"] > 0 and max(fitted["accuracy"]) > fitted["accuracy"][0]
    for bad in ([3], [], [0, 1]):
        with pytest.raises(ConfigError, match=r"calibration layers must be among the network's layers 1\.\.2"):
            calibrate(trained, chip, x, y, layers=bad)


def test_cli_robustness_calibrates_each_chip_and_checks_the_calibrated_one_in_ngspice(tiny_run, tmp_path):
    out, _ = tiny_run
    spec = HardwareSpec(name="trimmed", threshold_spread=0.03, trim_bits=5)
    (tmp_path / "chip.json").write_text(json.dumps(spec.to_dict()))
    result = memspice("robustness", str(out / "checkpoint.pt"), "--hardware", str(tmp_path / "chip.json"),
                      "--chips", "2", "--seed", "2", "--samples", "40", "--calibrate", "128", "--calibrate-epochs", "3",
                      "--spice", "2", "--workers", "1", "--no-fused", "--threads", "1", "--allow-cell-writes", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["calibration"] == {"samples": 128, "epochs": 3, "layers": [1, 2]}
    for row in report["per_chip"]:  # every chip kept codes that classify its calibration samples better
        fitted = row["calibration"]
        assert fitted["kept_pass"] > 0 and fitted["accuracy"][fitted["kept_pass"]] > fitted["accuracy"][0]
        assert len(row["codes"]) == 2 and any(any(layer) for layer in row["codes"])
    # the figures are the evaluation on the chips as calibrated, rebuilt from the report's codes
    trained, digits = load_trained(out / "checkpoint.pt"), load_dataset("digits")
    chip = Chip.from_description({**spec.sample(trained.model.sizes, 3).describe(),
                                  "calibration": report["per_chip"][1]["codes"]})
    direct = evaluate(trained.model, trained.readout, trained.encoder, digits.test_x[:40], digits.test_y[:40],
                      trained.config.n_steps, 256, torch.float32, chip=chip)
    assert direct["acc"] == report["per_chip"][1]["accuracy"]
    assert report["uncalibrated"]["accuracy_mean"] == np.mean([c["accuracy_uncalibrated"] for c in report["per_chip"]])
    assert report["spice"]["agreement"] == 1.0 and report["spice"]["count_match"] >= 0.9
    result = memspice_stops("robustness", str(out / "checkpoint.pt"), "--hardware", "stress", "--calibrate", "64")
    assert result.returncode == 2 and "no threshold trims to calibrate" in result.stderr


def test_hardware_aware_training_runs_every_batch_on_a_fresh_chip(tmp_path, digits, monkeypatch):
    seeds = []
    sample = HardwareSpec.sample

    def recorded(spec, sizes, seed):
        seeds.append(seed)
        return sample(spec, sizes, seed)

    monkeypatch.setattr(HardwareSpec, "sample", recorded)
    config = recipe("digits", **{**TINY, "epochs": 1, "train_samples": 48, "hardware": "stress"})
    results = train(config, tmp_path / "run", progress=False, dataset=digits)
    assert len(seeds) == len(set(seeds)) == 3  # 48 samples in batches of 16
    assert 0 <= results["test_acc"] <= 1
    with pytest.raises(ConfigError, match="neither a preset"):
        recipe("digits", hardware="no-such-chip")


def test_verify_draws_a_random_sample_of_the_test_set(tmp_path):
    from memspice.cli import _sample_indices

    def indices(*extra):
        args = build_parser().parse_args(["verify", str(tmp_path / "c.pt"), *extra])
        return _sample_indices(args, 359, "digits")

    drawn = indices("--samples", "20", "--sample-seed", "7")
    assert len(set(drawn.tolist())) == 20 and list(drawn) == sorted(drawn) and drawn.max() < 359
    assert list(drawn) == list(indices("--samples", "20", "--sample-seed", "7"))  # the seed fixes the draw
    assert list(drawn) != list(indices("--samples", "20", "--sample-seed", "8"))
    assert list(indices("--samples", "3", "--offset", "5")) == [5, 6, 7]
    with pytest.raises(MemspiceError, match="drop --offset"):
        indices("--samples", "3", "--offset", "5", "--sample-seed", "1")
    with pytest.raises(MemspiceError, match="has 359 samples"):
        indices("--samples", "400", "--sample-seed", "1")


def test_schedules_restart_the_learning_rate_and_anneal_the_threshold():
    from memspice.train.schedules import LR_FLOOR, annealed_threshold, learning_rates

    once = recipe("digits", epochs=4, lr=0.1)
    assert learning_rates(once, 0, 10) == pytest.approx((0.1,))
    assert learning_rates(once, 40, 10) == pytest.approx((0.1 * LR_FLOOR,))
    restarts = recipe("digits", epochs=4, lr=0.1, lr_restart_epochs=2)
    assert learning_rates(restarts, 19, 10)[0] < 0.02 and learning_rates(restarts, 20, 10) == pytest.approx((0.1,))
    per_layer = recipe("digits", epochs=4, lr=0.1, layer_lr=(0.01, 0.2))  # one rate per crossbar, --lr unused
    assert learning_rates(per_layer, 0, 10) == pytest.approx((0.01, 0.2))
    assert learning_rates(per_layer, 20, 10) == pytest.approx((0.01 * (1 + LR_FLOOR) / 2, 0.2 * (1 + LR_FLOOR) / 2))
    assert annealed_threshold(once, 0, 10, 0.4) is None  # no annealing asked for
    anneal = recipe("digits", anneal_threshold=0.3, anneal_epochs=2)
    assert annealed_threshold(anneal, 0, 10, 0.4) == pytest.approx(0.3)
    assert annealed_threshold(anneal, 10, 10, 0.4) == pytest.approx(0.35)
    assert annealed_threshold(anneal, 20, 10, 0.4) is None  # arrived: the device's own value


def test_annealing_and_the_rate_band_train_and_leave_the_device_threshold(tmp_path, digits):
    config = recipe("digits", **{**TINY, "epochs": 2, "train_samples": 32}, anneal_threshold=0.3, anneal_epochs=1.5,
                    hidden_rate=(0.5, 2.0), readout="first-spike", readout_scale=10.0)
    train(config, tmp_path, progress=False, dataset=digits)
    history = load_checkpoint(tmp_path / "checkpoint.pt")["history"]
    # 2 batches per epoch: epoch 1's last step is step 1 of the 3 that annealing takes
    assert history[0]["threshold"] == pytest.approx(0.3 + 0.1 * 1 / 3)
    assert history[1]["threshold"] == pytest.approx(0.4)  # the device's value once annealing has ended
    trained = load_trained(tmp_path / "checkpoint.pt")
    assert trained.model.layers[0].device_params()["th1"] == pytest.approx(0.4)  # the module, and its netlist, keep it
    assert re.search(r" th1=0\.4\s", export_netlist(trained, digits.test_x[0], 0, 0))


PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def test_the_shipped_digits_network_is_decided_by_its_spikes(digits):
    """pretrained/digits: its report belongs to it, and it still classifies by spikes with this solver."""
    from memspice.fileio import file_sha256

    path = PRETRAINED / "digits" / "checkpoint.pt"
    report = json.loads((path.parent / "results.json").read_text())
    assert report["checkpoint_sha256"] == file_sha256(path) and report["samples"] == len(digits.test_x)
    assert report["accuracy"] >= 0.97 and report["decided_by_spikes"] >= 0.95
    assert report["accuracy"] - report["ablated_accuracy"] >= 0.05  # the hidden spikes matter
    trained = load_trained(path)
    trained.model.solver = trained.model.solver.replace(fused=False)  # no compiling in the suite: the same numerics
    again = evaluate(trained.model, trained.readout, trained.encoder, digits.test_x[:120], digits.test_y[:120],
                     trained.config.n_steps, 120, torch.float32)
    assert again["acc"] >= 0.95 and again["decided_by_spikes"] >= 0.95


@pytest.mark.parametrize("folder, buffers, verified, by_spikes", [
    ("fashion-mnist-intermediate", (None, None, None), 20, 0.95),
    ("fashion-mnist-rectified", (0.0, None, None), 10, 0.95),
    ("fashion-mnist-pulses", (0.0, PulseExtender(60.0), None), 20, 0.94),
    ("fashion-mnist-railed", (0.0, None, 1.35), 10, 0.99),
    ("fashion-mnist-railed-longer", (0.0, None, 1.35), 200, 0.99),
    ("fashion-mnist", (0.0, PulseExtender(70.0), 0.3), 200, 0.99),
    ("fashion-mnist-lower-rail", (0.0, PulseExtender(70.0), 0.25), 20, 0.99)])
def test_the_shipped_fashion_networks_reports_belong_to_them(folder, buffers, verified, by_spikes):
    """pretrained/fashion-mnist*: each evaluation is of its checkpoint, on the whole test set,
    decided by spikes (the pulse-extender network 94.9 %), within the solver's tolerance and with
    every synapse cell below its write threshold; ngspice agreed on its samples; its buffers (knee,
    pulse extenders, rail) are the ones its folder names."""
    from memspice.fileio import file_sha256

    path = PRETRAINED / folder / "checkpoint.pt"
    buffer = load_trained(path).model.buffer
    assert (buffer.knee, buffer.pulse, buffer.rail) == buffers
    report = json.loads((path.parent / "results.json").read_text())
    assert report["checkpoint_sha256"] == file_sha256(path) and report["samples"] == 10_000
    assert report["decided_by_spikes"] >= by_spikes and report["error_ratio"] < 1 and report["cell_margin"] > 0
    if buffer.pulse is not None:  # the extenders carry its hidden spikes to the output layer
        assert report["accuracy"] - report["ablated_accuracy"] >= 0.05
    checked = json.loads((path.parent / "verify.json").read_text())
    assert checked["checkpoint_sha256"] == report["checkpoint_sha256"]
    assert checked["network_sha256"] == network_sha256(load_trained(path).state())
    assert checked["agreement"] >= 0.95 and checked["count_match"] >= 0.99 and checked["samples"] >= verified
    assert checked["cell_margin"] > 0


def test_the_shipped_fashion_network_reaches_the_accuracy_target_by_its_spikes():
    """pretrained/fashion-mnist, the project's Fashion-MNIST network: 87 % of the whole test set
    in the torch solver, decided by spikes in both engines, 5 points of it lost when no hidden
    neuron may spike, and ngspice agreeing on its random test samples (drawn with a seed, not the
    first ones)."""
    folder = PRETRAINED / "fashion-mnist"
    report = json.loads((folder / "results.json").read_text())
    assert report["accuracy"] >= 0.87 and report["decided_by_spikes"] >= 0.95
    assert report["accuracy"] - report["ablated_accuracy"] >= 0.05
    checked = json.loads((folder / "verify.json").read_text())
    assert checked["checkpoint_sha256"] == report["checkpoint_sha256"]
    drawn = np.sort(np.random.default_rng(0).choice(10_000, 200, replace=False))  # --samples 200 --sample-seed 0
    assert checked["requested"] == drawn.tolist() and not checked["missing"]
    assert checked["agreement"] >= 0.995 and checked["count_match"] >= 0.99
    assert checked["decided_by_spikes"] >= 0.95 and checked["decided_by_spikes_torch"] >= 0.95


def test_the_shipped_hardware_aware_network_fares_better_on_the_chips_it_was_trained_for():
    """pretrained/fashion-mnist-hardware-aware against the network it was fine-tuned from, on the
    same 20 stress-neurons2 chips and test images: reports of these checkpoints, a higher mean and
    a higher worst chip; both networks on the same chips with trimmed neurons: higher means, and
    a trimmed chip agrees with ngspice; the trimmed chips calibrated in the loop: higher means
    still, and a calibrated chip agrees with ngspice."""
    from memspice.fileio import file_sha256

    folder = PRETRAINED / "fashion-mnist-hardware-aware"
    aware = json.loads((folder / "robustness-stress-neurons2.json").read_text())
    ideal = json.loads((folder / "robustness-stress-neurons2-ideal-trained.json").read_text())
    assert aware["checkpoint_sha256"] == file_sha256(folder / "checkpoint.pt")
    assert ideal["checkpoint_sha256"] == file_sha256(PRETRAINED / "fashion-mnist-intermediate" / "checkpoint.pt")
    for key in ("hardware", "chips", "first_seed", "samples", "dataset"):
        assert aware[key] == ideal[key]
    assert HardwareSpec.from_dict(aware["hardware"]) == PRESETS["stress-neurons2"] and aware["chips"] == 20
    assert json.loads((folder / "config.json").read_text())["hardware"] == "stress-neurons2"
    assert aware["accuracy_mean"] > ideal["accuracy_mean"] + 0.05 and aware["accuracy_worst"] > ideal["accuracy_worst"]
    checked = json.loads((folder / "robustness-stress-neurons2-spice.json").read_text())
    assert checked["checkpoint_sha256"] == aware["checkpoint_sha256"] and checked["hardware"] == aware["hardware"]
    assert checked["spice"]["agreement"] == 1.0 and checked["spice"]["count_match"] == 1.0
    evaluated = json.loads((folder / "results.json").read_text())
    assert evaluated["checkpoint_sha256"] == aware["checkpoint_sha256"] and evaluated["samples"] == 10_000
    for preset in ("stress", "stress-neurons2"):  # trimmed neurons: the same chips, calibrated, fare better
        for name in ("", "-ideal-trained"):
            untrimmed, trimmed = (json.loads((folder / f"robustness-{chip}{name}.json").read_text())
                                  for chip in (preset, f"{preset}-trimmed"))
            assert HardwareSpec.from_dict(trimmed["hardware"]) == PRESETS[f"{preset}-trimmed"]
            assert trimmed["checkpoint_sha256"] == untrimmed["checkpoint_sha256"]
            assert trimmed["accuracy_mean"] > untrimmed["accuracy_mean"] + 0.05
    trimmed = json.loads((folder / "robustness-stress-trimmed-ideal-trained-spice.json").read_text())
    assert trimmed["checkpoint_sha256"] == ideal["checkpoint_sha256"]
    assert HardwareSpec.from_dict(trimmed["hardware"]) == PRESETS["stress-trimmed"]
    assert trimmed["spice"]["agreement"] == 1.0 and trimmed["spice"]["count_match"] >= 0.95
    for name in ("", "-ideal-trained"):  # the same trimmed chips, each calibrated in the loop first, fare better
        trimmed, calibrated = (json.loads((folder / f"robustness-stress-trimmed{kind}{name}.json").read_text())
                               for kind in ("", "-calibrated"))
        assert calibrated["checkpoint_sha256"] == trimmed["checkpoint_sha256"]
        assert calibrated["hardware"] == trimmed["hardware"] and calibrated["calibration"] == {"samples": 4000,
                                                                                             "epochs": 4}
        assert calibrated["uncalibrated"]["accuracy_mean"] == trimmed["accuracy_mean"]  # the same chips as trimmed
        assert calibrated["accuracy_mean"] > trimmed["accuracy_mean"] + 0.03
    trimmed, calibrated = (json.loads((folder / f"robustness-stress-neurons2-trimmed{kind}-ideal-trained.json")
                                      .read_text()) for kind in ("", "-calibrated"))
    assert calibrated["checkpoint_sha256"] == trimmed["checkpoint_sha256"] == ideal["checkpoint_sha256"]
    assert calibrated["uncalibrated"]["accuracy_mean"] == trimmed["accuracy_mean"]  # 2 % neurons: within 1.5 points
    assert calibrated["accuracy_mean"] > calibrated["ideal_accuracy"] - 0.015
    checked = json.loads((folder / "robustness-stress-trimmed-calibrated-ideal-trained-spice.json").read_text())
    assert checked["checkpoint_sha256"] == ideal["checkpoint_sha256"] and checked["per_chip"][0]["codes"]
    assert checked["spice"]["agreement"] == 1.0 and checked["spice"]["count_match"] >= 0.95


def test_the_shipped_network_trained_on_switch_trimmed_chips_fares_better_on_them():
    """pretrained/fashion-mnist-hardware-aware-trimmed against the network it was fine-tuned from,
    on the same 20 chips and test images: the switch trims are worth far more than the membrane
    trims on the same chips; training through them raises the mean and the worst chip, with and
    without wires; calibrating the output neurons raises the mean again, leaves the hidden layer's
    codes at the factory's and brings both networks within 1.5 points of the ideal network on the
    ideal circuit; a chip agrees with ngspice."""
    from memspice.fileio import file_sha256

    folder = PRETRAINED / "fashion-mnist-hardware-aware-trimmed"
    sha = file_sha256(folder / "checkpoint.pt")
    ideal_sha = file_sha256(PRETRAINED / "fashion-mnist-intermediate" / "checkpoint.pt")
    assert json.loads((folder / "config.json").read_text())["hardware"] == "stress-switch-trimmed"
    membrane = json.loads((PRETRAINED / "fashion-mnist-hardware-aware" / "robustness-stress-trimmed-ideal-trained.json")
                          .read_text())
    for preset in ("stress-switch-trimmed", "stress-wired-switch-trimmed"):
        aware, ideal = (json.loads((folder / f"robustness-{preset}{kind}.json").read_text())
                        for kind in ("", "-ideal-trained"))
        assert aware["checkpoint_sha256"] == sha and ideal["checkpoint_sha256"] == ideal_sha
        assert aware["hardware"] == ideal["hardware"]
        for key in ("chips", "first_seed", "samples", "dataset"):
            assert aware[key] == ideal[key] == membrane[key]
        assert HardwareSpec.from_dict(aware["hardware"]) == PRESETS[preset] and aware["chips"] == 20
        assert ideal["accuracy_mean"] > membrane["accuracy_mean"] + 0.15  # same draws, trimmed at the switches
        assert aware["accuracy_mean"] > ideal["accuracy_mean"] and aware["accuracy_worst"] > ideal["accuracy_worst"]
    wired = json.loads((folder / "robustness-stress-wired-switch-trimmed.json").read_text())
    calibrated = json.loads((folder / "robustness-stress-wired-switch-trimmed-calibrated.json").read_text())
    assert calibrated["checkpoint_sha256"] == sha and calibrated["calibration"]["layers"] == [2]
    assert calibrated["uncalibrated"]["accuracy_mean"] == wired["accuracy_mean"]
    assert calibrated["accuracy_mean"] > wired["accuracy_mean"] + 0.01
    assert all(not any(chip["codes"][0]) for chip in calibrated["per_chip"] if chip["codes"])
    ideal = json.loads((folder / "robustness-stress-wired-switch-trimmed-ideal-trained.json").read_text())
    ideal_calibrated = json.loads((folder / "robustness-stress-wired-switch-trimmed-calibrated-ideal-trained.json")
                                  .read_text())
    assert ideal_calibrated["checkpoint_sha256"] == ideal_sha and ideal_calibrated["hardware"] == wired["hardware"]
    assert ideal_calibrated["uncalibrated"]["accuracy_mean"] == ideal["accuracy_mean"]
    for report in (calibrated, ideal_calibrated):  # within 1.5 points of the ideal network on the ideal circuit
        assert report["accuracy_mean"] > ideal["ideal_accuracy"] - 0.015
    checked = json.loads((folder / "robustness-stress-switch-trimmed-spice.json").read_text())
    assert checked["checkpoint_sha256"] == sha
    assert checked["spice"]["agreement"] == 1.0 and checked["spice"]["count_match"] >= 0.95


def test_the_shipped_population_networks_hold_the_margin_on_trimmed_chips():
    """pretrained/fashion-mnist-population(-aware): 8 output neurons per class, on the same 20
    switch-trimmed chips and test images as the one-per-class networks, uncalibrated: both far
    ahead of the network they started from, the hardware-aware one ahead again and within 1.5
    points of that network on the ideal circuit (with wires too); each evaluation is of its
    checkpoint and decided by spikes; a chip agrees with ngspice."""
    from memspice.fileio import file_sha256

    one_per_class = PRETRAINED / "fashion-mnist-hardware-aware-trimmed"
    ideal_sha = file_sha256(PRETRAINED / "fashion-mnist-intermediate" / "checkpoint.pt")
    for name, hardware in (("fashion-mnist-population", None), ("fashion-mnist-population-aware",
                                                                 "stress-switch-trimmed")):
        folder = PRETRAINED / name
        config = json.loads((folder / "config.json").read_text())
        assert config["population"] == 8 and config["hardware"] == hardware
        trained = load_trained(folder / "checkpoint.pt")
        assert list(trained.model.sizes) == [784, 128, 80] and trained.readout.population == 8
        evaluated = json.loads((folder / "evaluate.json").read_text())
        assert evaluated["checkpoint_sha256"] == file_sha256(folder / "checkpoint.pt")
        assert evaluated["samples"] == 10_000 and evaluated["decided_by_spikes"] >= 0.95
        assert evaluated["population"] == 8
    for preset in ("stress-switch-trimmed", "stress-wired-switch-trimmed"):
        ideal, pooled, aware = (json.loads(path.read_text()) for path in (
            one_per_class / f"robustness-{preset}-ideal-trained.json",
            PRETRAINED / "fashion-mnist-population" / f"robustness-{preset}.json",
            PRETRAINED / "fashion-mnist-population-aware" / f"robustness-{preset}.json"))
        assert ideal["checkpoint_sha256"] == ideal_sha
        assert pooled["checkpoint_sha256"] == file_sha256(PRETRAINED / "fashion-mnist-population" / "checkpoint.pt")
        assert aware["checkpoint_sha256"] == file_sha256(PRETRAINED / "fashion-mnist-population-aware" /
                                                         "checkpoint.pt")
        for key in ("hardware", "chips", "first_seed", "samples", "dataset"):
            assert pooled[key] == aware[key] == ideal[key]
        assert HardwareSpec.from_dict(aware["hardware"]) == PRESETS[preset] and aware["chips"] == 20
        assert aware["calibration"] is None and pooled["calibration"] is None
        assert aware["population"] == pooled["population"] == 8
        assert pooled["accuracy_mean"] > ideal["accuracy_mean"] + 0.05  # the populations, trained on no chip
        assert aware["accuracy_mean"] > pooled["accuracy_mean"]
        assert aware["accuracy_mean"] > ideal["ideal_accuracy"] - 0.015  # the margin, uncalibrated
        assert ideal["accuracy_mean"] < ideal["ideal_accuracy"] - 0.05  # where one per class loses clearly more
    checked = json.loads((PRETRAINED / "fashion-mnist-population-aware" / "robustness-stress-switch-trimmed-spice.json")
                         .read_text())
    assert checked["checkpoint_sha256"] == aware["checkpoint_sha256"]
    assert checked["spice"]["agreement"] == 1.0 and checked["spice"]["count_match"] >= 0.95


def test_cli_train_rejects_bad_options(tmp_path):
    result = memspice_stops("train", "--dataset", "cifar", "--out", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'cifar'" in result.stderr
    result = memspice_stops("train", "--window", "1e-7", "--out", str(tmp_path))
    assert result.returncode == 2 and "window" in result.stderr and "at least two steps" in result.stderr
    result = memspice_stops("train", "--out", str(tmp_path / "nothing"), "--resume")
    assert result.returncode == 2 and "nothing to resume" in result.stderr
    result = memspice_stops("train", "--init-pos", "0.8", "0.2", "--out", str(tmp_path))
    assert result.returncode == 2 and "init_pos = (0.8, 0.2) is invalid" in result.stderr
    result = memspice_stops("train", "--anneal-threshold", "0.1", "--out", str(tmp_path))
    assert result.returncode == 2 and "anneal_threshold = 0.1 is invalid" in result.stderr \
        and "(0.22, 0.4] V" in result.stderr
    result = memspice_stops("train", "--hidden-rate", "2", "1", "--out", str(tmp_path))
    assert result.returncode == 2 and "hidden_rate = (2.0, 1.0) is invalid" in result.stderr
    result = memspice_stops("train", "--layer-lr", "0.1", "--out", str(tmp_path))
    assert result.returncode == 2 and "layer_lr = (0.1,) is invalid" in result.stderr \
        and "2 finite numbers > 0, one per crossbar" in result.stderr
    result = memspice_stops("train", "--v-high", "2.5", "--out", str(tmp_path))
    assert result.returncode == 2 and "below the synapse write thresholds" in result.stderr \
        and "v_high=2.5" in result.stderr


def test_cli_options_override_the_recipe(tmp_path):
    args = build_parser().parse_args(["train", "--dataset", "fashion-mnist", "--v-low", "0.1", "--v-high", "1.2",
                                      "--readout-scale", "300", "--out", str(tmp_path)])
    config = _train_config(args)
    assert (config.v_low, config.v_high, config.readout_scale) == (0.1, 1.2, 300.0)
    assert config.window == recipe("fashion-mnist").window  # what is not given comes from the recipe
    encoder = input_encoder(config)
    assert encoder(torch.tensor([[0.0, 1.0]]), 2)[0, -1].tolist() == pytest.approx([0.1, 1.2])


def test_every_training_option_is_on_the_command_line(tmp_path):
    """The options are generated from TrainConfig's fields: each one, given, reaches the
    configuration; the help names each recipe's default where they differ."""
    values = {"hidden": ["32", "16"], "data_dir": ["/data"], "dataset": ["fashion-mnist"], "method": ["trap"],
              "encoder": ["rate"], "readout": ["count"], "parametrization": ["clamp"], "dtype": ["float64"],
              "device": ["cpu"], "init_from": ["c.pt"], "seed": ["3"], "dt": ["1e-7"], "window": ["1e-6"],
              "v_low": ["0.1"], "anneal_threshold": ["0.3"], "epochs": ["2"], "threads": ["2"], "hardware": ["stress"],
              "neuron": ["mif"], "layer_lr": ["0.01", "0.02", "0.03"],
              "pulse_tau": ["3e-6"]}
    pairs = {"init_pos", "init_neg", "deep_init_pos", "deep_init_neg", "hidden_rate"}
    argv, expected = ["train", "--out", str(tmp_path / "run")], {}
    for option in fields(TrainConfig):
        flag = "--" + option.name.replace("_", "-")
        if option.type in (bool, "bool"):
            argv.append(flag.replace("--", "--no-") if option.default else flag)
            expected[option.name] = not option.default
            continue
        given = values.get(option.name, ["0.1", "0.6"] if option.name in pairs else ["1"])
        argv += [flag, *given]
        kind = {"positive_int": int, "int": int, None: str}.get(option.metadata["kind"], float)
        parsed = [kind(v) for v in given]
        expected[option.name] = tuple(parsed) if option.metadata.get("nargs") else parsed[0]
    config = _train_config(build_parser().parse_args(argv))
    assert config.to_dict() == TrainConfig(**expected).to_dict()
    help_text = " ".join(memspice("train", "--help").stdout.split())
    assert "--no-fused" in help_text and "(default: 10 (digits), 12 (fashion-mnist, mnist))" in help_text


def test_crossbars_start_in_the_configured_fractions(tmp_path):
    def assert_fractions(model, expected):
        for crossbar, (pos, neg) in zip(model.crossbars, expected, strict=True):
            for g, (low, high) in ((crossbar.g_pos, pos), (crossbar.g_neg, neg)):
                fraction = (g - crossbar.g_min) / (crossbar.g_max - crossbar.g_min)
                assert low - 1e-3 < fraction.min() < low + 0.05 and high - 0.05 < fraction.max() < high + 1e-3

    model = MemristiveSNN((64, 16, 10), init_pos=(0.2, 0.8), init_neg=(0.1, 0.7))
    assert_fractions(model, (((0.2, 0.8), (0.1, 0.7)), ((0.3, 0.9), (0.0, 0.4))))  # then the defaults
    model = MemristiveSNN((64, 16, 12, 10), deep_init_pos=(0.25, 0.75), deep_init_neg=(0.25, 0.75))
    assert_fractions(model, (((0.3, 0.9), (0.0, 0.4)), ((0.25, 0.75), (0.25, 0.75)), ((0.25, 0.75), (0.25, 0.75))))
    args = build_parser().parse_args(["train", "--deep-init-neg", "0.2", "0.6", "--out", str(tmp_path)])
    assert _train_config(args).deep_init_neg == (0.2, 0.6)
    with pytest.raises(ValueError, match=r"deep_init_pos = \(0.5, 0.5\) is invalid"):
        recipe("digits", deep_init_pos=(0.5, 0.5))
    config = recipe("fashion-mnist")
    assert (config.init_pos, config.init_neg, config.deep_init_pos) == ((0.4, 1.0), (0.0, 0.5), (0.2, 0.8))
    assert recipe("digits").init_pos == recipe("digits").deep_init_pos == (0.3, 0.9)
    assert recipe("fashion-mnist", parametrization="clamp").parametrization == "clamp"
    assert "clamp" in repr(MemristiveSNN((4, 2), parametrization="clamp"))
    with pytest.raises(ValueError, match="unknown parametrization 'tanh'; choose one of sigmoid, clamp"):
        MemristiveSNN((4, 2), parametrization="tanh")


def test_idx_reader_round_trip_and_bad_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], ">u4").tobytes() + images.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), images)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="needs"):
        read_idx(tmp_path / "short")


def test_missing_datasets_name_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("mnist")


def test_digits_split_is_fixed(digits):
    again = load_dataset("digits")
    assert digits.train_x.shape == (1438, 64) and digits.test_x.shape == (359, 64)
    np.testing.assert_array_equal(digits.test_y, again.test_y)
    assert 0.0 <= digits.train_x.min() and digits.train_x.max() <= 1.0


def test_encoders():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    rows = DirectEncoder(0.2, 1.0)(x, 4)
    assert rows.shape == (1, 5, 3)
    torch.testing.assert_close(rows[0, 0], torch.zeros(3))
    torch.testing.assert_close(rows[0, 1:], torch.tensor([0.2, 0.6, 1.0]).expand(4, 3))
    rate = RateEncoder(amplitude=1.0, max_probability=1.0, seed=3)
    a = rate(torch.full((2, 3), 0.5), 200, torch.tensor([7, 8]))
    b = rate(torch.full((1, 3), 0.5), 200, torch.tensor([8]))
    torch.testing.assert_close(a[1], b[0])  # the pulses of a sample do not depend on its batch
    assert set(a.unique().tolist()) == {0.0, 1.0} and 0.4 < a[:, 1:].mean() < 0.6
    with pytest.raises(ValueError, match="write thresholds"):
        DirectEncoder(0.0, 2.5)


def test_readouts():
    t = torch.linspace(0, 1, 201)
    spikes = torch.relu(torch.sin(2 * torch.pi * 5 * t)) * 0.6  # 5 bumps to 0.6 V
    v = torch.stack([spikes, 0.3 * torch.ones_like(t), 0.1 * torch.ones_like(t)], -1).unsqueeze(0)
    torch.testing.assert_close(spike_counts(v), torch.tensor([[5.0, 0.0, 0.0]]))
    torch.testing.assert_close(soft_spike_counts(v, width=1e-4), torch.tensor([[5.0, 0.0, 0.0]]), atol=1e-3, rtol=0)
    # the first crossing of 0.45 V: 0.6 sin(10 pi t) = 0.45 at t = asin(0.75) / (10 pi), 200 steps per unit
    first = first_spike_steps(v)
    assert first[0, 0].item() == pytest.approx(200 * np.arcsin(0.75) / (10 * np.pi), abs=0.05)
    assert torch.isinf(first[0, 1:]).all()
    # latency: a fraction of the window for a spiking neuron, past it by (0.45 - peak) / width for a silent one
    torch.testing.assert_close(latency(v, width=0.1)[0, 1:], torch.tensor([1 + 1.5, 1 + 3.5]))
    assert Readout("count").predict(v).item() == 0
    quiet = v[..., 1:]  # no spikes: the higher mean membrane decides, and says so
    classes, by = Readout("count").decide(quiet)
    assert classes.item() == 0 and DECIDERS[by.item()] == "membrane"
    # count logits: 2 x (5 spikes + 1 - the first spike's fraction of the window); a silent neuron's
    # latency is 1 + (0.45 V - its peak) / width
    logits = Readout("count", scale=2.0, width=1e-4).logits(v)
    early = np.arcsin(0.75) / (10 * np.pi)
    torch.testing.assert_close(logits, torch.tensor([[2 * (6 - early), -2 * 0.15 / 1e-4, -2 * 0.35 / 1e-4]],
                                                    dtype=torch.float32),
                               atol=1e-2, rtol=1e-4)


def test_decisions_go_by_spikes_first():
    counts = np.array([[2, 2, 1], [0, 0, 0], [1, 3, 0], [1, 1, 0]])
    firsts = np.array([[5.0, 3.0, 1.0], [np.inf] * 3, [9.0, 2.0, np.inf], [4.0, 4.0, np.inf]])
    means = np.array([[0.1, 0.3, 0.5], [0.1, 0.3, 0.2], [0.3, 0.1, 0.5], [0.2, 0.1, 0.3]])
    pred, by, margin = decide(counts, firsts, means, ("count", "first-spike"))
    assert pred.tolist() == [1, 1, 1, 0]  # a count tie goes to the earlier spike; then to the membrane
    assert [DECIDERS[b] for b in by] == ["first-spike", "membrane", "count", "membrane"]
    # margins among the candidates left: 5 - 3 (not 3 - 1: neuron 2 has fewer spikes), 0.3 - 0.2 V, 3 - 1 spikes
    np.testing.assert_allclose(margin, [2.0, 0.1, 2.0, 0.1])
    pred, by, margin = decide(counts, firsts, means, ("first-spike", "count"))
    assert pred.tolist() == [2, 1, 1, 0]  # the earliest first spike wins; a time tie goes to the count
    assert [DECIDERS[b] for b in by] == ["first-spike", "membrane", "first-spike", "membrane"]
    np.testing.assert_allclose(margin, [2.0, 0.1, 7.0, 0.1])
    pred, by, margin = decide(counts, firsts, means, ("count",))  # a membrane-trained network's order
    assert pred.tolist() == [1, 1, 1, 0] and [DECIDERS[b] for b in by] == ["membrane", "membrane", "count", "membrane"]
    with pytest.raises(ValueError, match="order must name"):
        decide(counts, firsts, means, ("membrane",))


def test_a_population_decides_by_its_neurons_pooled():
    """Two neurons per class: a class's spikes add up, its first-spike time is its neurons' mean
    (a silent one counting as the window's end), its logit the mean of theirs."""
    counts = np.array([[1, 0, 1, 1], [0, 0, 0, 0]])
    firsts = np.array([[1.0, np.inf, 4.0, 5.0], [np.inf] * 4])
    means = np.array([[0.2, 0.0, 0.3, 0.3], [0.1, 0.3, 0.2, 0.1]])
    pooled = pool_readings(counts, firsts, means, 2, window=10.0)
    np.testing.assert_allclose(pooled[0], [[1, 2], [0, 0]])
    np.testing.assert_allclose(pooled[1], [[5.5, 4.5], [np.inf, np.inf]])  # one early neuron does not win alone
    np.testing.assert_allclose(pooled[2], [[0.1, 0.3], [0.2, 0.15]])
    pred, by, _ = decide(*pooled, ("first-spike", "count"))
    assert pred.tolist() == [1, 0] and [DECIDERS[b] for b in by] == ["first-spike", "membrane"]
    assert all(np.array_equal(a, b) for a, b in zip(pool_readings(counts, firsts, means, 1, 10.0),
                                                        (counts, firsts, means)))
    v = torch.rand(3, 21, 6, generator=torch.Generator().manual_seed(0))
    for kind in READOUTS:
        per_neuron, pooled_readout = Readout(kind, 2.0), Readout(kind, 2.0, population=3)
        torch.testing.assert_close(pooled_readout.logits(v), per_neuron.logits(v).unflatten(-1, (2, 3)).mean(-1))
    labels = torch.tensor([0, 1, 1])
    assert Readout("first-spike", 2.0, population=3, fire_weight=0.5).loss(v, labels).isfinite()
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="population must be a positive integer"):
            Readout("count", population=bad)


@pytest.mark.parametrize("kind, buffers", [("count", {}), ("first-spike", {}), ("membrane-mean", {}),
                                           ("first-spike", {"buffer_gain": 3.5, "buffer_knee": 0.2,
                                                            "deep_init_pos": (0.6, 1.0), "deep_init_neg": (0.0, 0.2)})],
                         ids=["count", "first-spike", "membrane-mean", "first-spike-rectifying"])
def test_readout_losses_have_the_finite_difference_gradient(kind, buffers):
    """Each readout's loss, differentiated through the circuit solver, against central differences
    in one crossbar conductance (float64): the gradient that trains it is the true one; through
    rectifying buffers too."""
    model = MemristiveSNN((6, 4, 3), seed=3, init_pos=(0.5, 1.0), init_neg=(0.0, 0.3), **buffers).double()
    rows = torch.cat([torch.zeros(2, 1, 6), torch.rand(2, 40, 6, generator=torch.Generator().manual_seed(1)) * 1.2],
                     1).double()
    labels = torch.tensor([0, 2])
    readout = Readout(kind, scale={"count": 2.0, "first-spike": 5.0, "membrane-mean": 50.0}[kind], width=0.05)
    hidden_v = model(rows).v

    def loss() -> torch.Tensor:
        v = model(rows).v
        return readout.loss(v[-1], labels) + rate_band_penalty(v[:-1], (0.5, 1.0), width=0.05)

    assert spike_counts(hidden_v[0]).sum() > 0 and spike_counts(hidden_v[1]).sum() > 0  # spikes in both layers
    parameter = next(model.crossbars[0].parameters())  # the input crossbar: its gradient crosses both layers
    model.zero_grad()
    loss().backward()
    for index in [(0, 0), (1, 2), (3, 1)]:
        analytic = parameter.grad[index].item()
        with torch.no_grad():
            h = 1e-5
            parameter[index] += h
            up = loss().item()
            parameter[index] -= 2 * h
            down = loss().item()
            parameter[index] += h
        assert analytic == pytest.approx((up - down) / (2 * h), rel=2e-3, abs=1e-7)


def test_the_hidden_spike_ablation_silences_hidden_neurons_only():
    model = MemristiveSNN((6, 8, 3), seed=3, init_pos=(0.5, 1.0), init_neg=(0.0, 0.3))
    rows = torch.cat([torch.zeros(4, 1, 6), torch.full((4, 50, 6), 1.0)], 1)
    with torch.no_grad():
        intact = model(rows).v
        ablated = model(rows, neuron_overrides=model.hidden_spike_ablation()).v
    assert spike_counts(intact[0]).sum() > 0 and spike_counts(ablated[0]).sum() == 0
    assert model.hidden_spike_ablation()[-1] is None  # the output layer keeps its switch
    assert not torch.equal(intact[1], ablated[1])  # the output layer saw the difference
    with pytest.raises(ValueError, match="one entry per layer"):
        model(rows, neuron_overrides=[None])
