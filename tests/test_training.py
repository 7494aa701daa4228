"""MEMprop training, checkpoints, export and verification (the last two run the real ngspice)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import memspice

from memspice.cli import _train_config, build_parser
from memspice.data import DirectEncoder, RateEncoder, load_dataset, read_idx
from memspice.data.idx import DatasetError
from memspice.deploy import export_netlist, verify
from memspice.deploy.verify import JournalError
from memspice.nn import Crossbar, MemristiveSNN, Readout, predict, soft_spike_counts, spike_counts
from memspice.spice.results import Waveforms
from memspice.spice.runner import run_netlist
from memspice.train.checkpoint import CheckpointError, load_checkpoint
from memspice.train.config import input_encoder, recipe
from memspice.train.loop import RunError, evaluate, load_trained, train

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
    crossbar = Crossbar(8, 4, 1e-8, 1e-6, parametrization=parametrization)
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
    untrained = MemristiveSNN(trained.model.sizes, dt=trained.config.dt, seed=trained.config.seed)
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
    result = memspice("verify", str(garbage))
    assert result.returncode == 2 and "corrupt or not a checkpoint" in result.stderr


def test_a_checkpoint_whose_sizes_disagree_with_its_weights_is_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    state = load_checkpoint(out / "checkpoint.pt")
    state["model_config"]["sizes"] = [64, 99, 10]  # the weights and the configuration say 64-16-10
    torch.save(state, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match=r"layer sizes \[64, 99, 10\] disagree .* \(\[64, 16, 10\]\)"):
        load_trained(tmp_path / "lying.pt")


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


def test_verify_on_three_samples_agrees_with_the_solver(tiny_run, digits):
    out, _ = tiny_run
    report = verify(load_trained(out / "checkpoint.pt"), digits.test_x, digits.test_y, np.arange(3), progress=False)
    assert report["samples"] == 3
    assert report["agreement"] == 1.0
    assert report["count_match"] >= 0.9
    assert 0.0 <= report["decided_by_count"] <= 1.0
    assert sum(sum(row["counts_spice"]) for row in report["per_sample"]) > 0  # the outputs do spike
    for row in report["per_sample"]:  # each prediction follows from the counts and means it reports
        for engine in ("spice", "torch"):
            assert predict(np.array([row[f"counts_{engine}"]]), np.array([row[f"means_{engine}"]]))[0] \
                == row[f"pred_{engine}"]
    assert 0.0 <= report["mean_error_v"] < 5e-3


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
    assert again["per_sample"] == fresh["per_sample"]
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
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
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


def test_cli_export_and_verify(tiny_run, tmp_path):
    out, _ = tiny_run
    cir = tmp_path / "net.cir"
    result = memspice("export", str(out / "checkpoint.pt"), "--sample", "2", "--out", str(cir))
    assert result.returncode == 0, result.stderr
    assert cir.read_text().startswith("* memspice: digits network 64-16-10, test sample 2")
    result = memspice("export", str(out / "checkpoint.pt"), "--sample", "5000", "--out", str(cir))
    assert result.returncode == 2 and "test set has samples 0..358" in result.stderr
    result = memspice("verify", str(out / "checkpoint.pt"), "--samples", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"samples", "acc_spice", "acc_torch", "agreement", "count_match", "wall_s"}
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
    result = memspice("verify-merge", str(parts[0]), str(parts[0]))
    assert result.returncode == 2 and "overlap" in result.stderr
    (tmp_path / "junk.json").write_text("{}")
    result = memspice("verify-merge", str(tmp_path / "junk.json"))
    assert result.returncode == 2 and "not a report saved by `memspice verify --save`" in result.stderr
    broken = json.loads(parts[0].read_text())
    del broken["per_sample"][0]["counts_torch"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    result = memspice("verify-merge", str(tmp_path / "broken.json"), str(parts[1]))
    assert result.returncode == 2 and "broken.json: per_sample[0] lacks one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_train_rejects_bad_options(tmp_path):
    result = memspice("train", "--dataset", "cifar", "--out", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'cifar'" in result.stderr
    result = memspice("train", "--window", "1e-7", "--out", str(tmp_path))
    assert result.returncode == 2 and "window" in result.stderr and "at least two steps" in result.stderr
    result = memspice("train", "--out", str(tmp_path / "nothing"), "--resume")
    assert result.returncode == 2 and "nothing to resume" in result.stderr
    result = memspice("train", "--init-pos", "0.8", "0.2", "--out", str(tmp_path))
    assert result.returncode == 2 and "init_pos = (0.8, 0.2) is invalid" in result.stderr
    result = memspice("train", "--v-high", "2.5", "--out", str(tmp_path))
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
    assert predict(spike_counts(v), v.mean(1)).item() == 0
    quiet = v[..., 1:]  # no spikes: the higher mean membrane wins the tie
    assert predict(spike_counts(quiet), quiet.mean(1)).item() == 0
    assert predict(np.array([[2, 2, 1]]), np.array([[0.1, 0.3, 0.5]])).item() == 1
    logits = Readout("count", scale=2.0, width=1e-4).logits(v)
    torch.testing.assert_close(logits, torch.tensor([[10.0, 0.0, 0.0]]), atol=1e-2, rtol=0)
