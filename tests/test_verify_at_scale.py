"""Verification at scale: settings from the network, netlists made where they are simulated,
reports that cannot mix up, and a real Dask cluster that loses a worker (real ngspice)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from conftest import memspice

from memspice.cli import build_parser
from memspice.data import load_dataset
from memspice.deploy import export_netlist, merge, verify
from memspice.errors import MemspiceError
from memspice.netlist.circuits import in_row_order
from memspice.spice.runner import run_netlist
from memspice.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from memspice.train.config import TrainConfig
from memspice.train.loop import Trained, build, load_trained

verify_module = importlib.import_module("memspice.deploy.verify")  # the package exports the function verify


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny(seed: int = 0) -> Trained:
    """An untrained 64-16-10 network (its own weights per seed) with a 4 µs window: ~1 s per sample in ngspice."""
    config = TrainConfig(dataset="digits", hidden=(16,), window=4e-6, seed=seed, fused=False, threads=1)
    model, readout, encoder = build(config, 64, 10)
    return Trained(config, model, readout, encoder, [])


def saved(trained: Trained, path) -> str:
    """Save ``trained`` as a checkpoint at ``path``; its path as text."""
    save_checkpoint(path, {**trained.state(), "optimizer": {}, "epoch": 0, "batch": 0})
    return str(path)


def test_a_configuration_that_restates_dt_differently_is_refused(digits, tmp_path):
    trained = tiny()
    trained.model.solver = trained.model.solver.replace(dt=1e-7)  # the network steps at 100 ns, its config says 200 ns
    for run in (lambda: export_netlist(trained, digits.test_x[0], 0),
                lambda: verify(trained, digits.test_x, digits.test_y, np.arange(1), progress=False)):
        with pytest.raises(CheckpointError, match=r"dt: the network has 1e-07, its training configuration says 2e-07"):
            run()
    # a checkpoint whose module arguments and configuration disagree does not load
    path = tmp_path / "c.pt"
    saved(tiny(), path)
    state = load_checkpoint(path)
    state["model_config"]["dt"] = 1e-7
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match=r"dt: the network was saved with 1e-07, its training configuration "
                                              r"says 2e-07"):
        load_trained(path)


@pytest.mark.ngspice
def test_each_netlist_is_made_by_the_job_that_simulates_it(digits, monkeypatch):
    """Not all netlists first (9 MB each for 784-128-10): one job builds, simulates and drops its own."""
    events = []
    build_netlist, simulate = verify_module.export_netlist, verify_module.run_netlist

    def spy_build(trained, x, index, *args, **kwargs):
        events.append(("built", index))
        return build_netlist(trained, x, index, *args, **kwargs)

    def spy_simulate(netlist, **kwargs):
        plots = simulate(netlist, **kwargs)
        events.append(("simulated", kwargs["name"]))
        return plots

    monkeypatch.setattr(verify_module, "export_netlist", spy_build)
    monkeypatch.setattr(verify_module, "run_netlist", spy_simulate)
    report = verify(tiny(), digits.test_x, digits.test_y, np.arange(3), workers=1, progress=False)
    assert events == [("built", 0), ("simulated", "sample0"), ("built", 1), ("simulated", "sample1"),
                      ("built", 2), ("simulated", "sample2")]
    assert report["samples"] == 3 and report["agreement"] == 1.0


@pytest.mark.ngspice
def test_reports_carry_what_they_verified_and_merges_refuse_foreign_parts(digits, tmp_path):
    trained = tiny()
    path = saved(trained, tmp_path / "a.pt")
    parts = []
    for k, where in ((1, ["--workers", "1"]), (2, ["--cluster", "local:2"]), (3, ["--workers", "2"])):
        out = tmp_path / f"part{k}.json"
        result = memspice("verify", path, "--samples", "6", "--sample-seed", "1", "--part", f"{k}/3", *where,
                          "--save", str(out), "--json")
        assert result.returncode == 0, result.stderr
        parts.append(json.loads(out.read_text()))
    plan = sorted(np.random.default_rng(1).choice(len(digits.test_x), 6, replace=False).tolist())
    first = parts[0]
    assert first["requested"] == plan and first["part"] == [1, 3]
    assert [row["index"] for row in first["per_sample"]] == plan[0::3]
    assert first["checkpoint_sha256"] == load_trained(path).sha256 and len(first["network_sha256"]) == 64
    assert (first["dt"], first["n_steps"], first["method"]) == (2e-7, 20, "radau5")
    assert first["compute_s"] >= first["torch_s"] + sum(row["spice_s"] for row in first["per_sample"]) * 0.999
    assert all(row["spice_s"] > 0 for row in first["per_sample"])

    merged = merge(parts)
    assert [row["index"] for row in merged["per_sample"]] == plan and merged["missing"] == []
    assert merged["compute_s"] == pytest.approx(sum(p["compute_s"] for p in parts))
    assert merged["elapsed_s"] == max(p["elapsed_s"] for p in parts)
    # a part missing: its samples are named
    assert merge(parts[:2])["missing"] == plan[2::3]
    files = [tmp_path / f"part{k}.json" for k in (1, 2)]
    result = memspice("verify-merge", *map(str, files))
    assert result.returncode == 0 and "MISSING    2 requested samples are in no part: " in result.stdout
    # a part of another network (other weights, same settings) is refused, naming both digests
    other = verify(tiny(seed=1), digits.test_x, digits.test_y, np.array(plan[2::3]), progress=False,
                   requested=plan, part=(3, 3))
    with pytest.raises(MemspiceError, match=rf"differ in network_sha256 \('{first['network_sha256']}' vs "
                                            rf"'{other['network_sha256']}'\)"):
        merge([*parts[:2], other])
    # and so is one with other ngspice settings
    with pytest.raises(MemspiceError, match="differ in ngspice_settings"):
        merge([parts[0], {**parts[1], "ngspice_settings": {**parts[1]["ngspice_settings"], "reltol": 1e-3}}])


@pytest.mark.ngspice
def test_a_dask_cluster_that_loses_a_worker_reports_every_sample_once(digits, tmp_path):
    pytest.importorskip("distributed")
    from memspice.spice.cluster import Cluster

    samples = np.arange(8)
    journal = tmp_path / "report.json.partial"
    with Cluster("local:2") as cluster:
        pids = cluster.client.run(os.getpid)
        assert len(pids) == 2
        killed = []

        def shared_holders() -> list[str]:
            return [a for key, where in cluster.client.who_has().items() if key.startswith("shared-") for a in where]

        def kill_one_worker_mid_run() -> None:
            # mid-run, when one worker alone holds the network (Dask keeps one replica): it must be rebuilt
            def ready() -> bool:
                return journal.is_file() and journal.read_text().count("\n") >= 2 and len(shared_holders()) == 1

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not ready():
                time.sleep(0.05)
            address = (shared_holders() or list(pids))[0]
            killed.append(ready() and len(journal.read_text().splitlines()) < len(samples))
            os.kill(pids[address], signal.SIGKILL)

        killer = threading.Thread(target=kill_one_worker_mid_run)
        killer.start()
        report = verify(tiny(), digits.test_x, digits.test_y, samples, workers=cluster, progress=False,
                        journal=journal)
        killer.join()
    assert killed == [True]  # the network's only holder died mid-run
    assert [row["index"] for row in report["per_sample"]] == samples.tolist()
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == samples.tolist()  # each sample journaled exactly once
    local = verify(tiny(), digits.test_x, digits.test_y, samples[:2], progress=False)
    keys = ("counts_spice", "firsts_spice", "means_spice")
    assert [{k: row[k] for k in keys} for row in report["per_sample"][:2]] == \
        [{k: row[k] for k in keys} for row in local["per_sample"]]  # the same readings as the local pool
    assert report["agreement"] == 1.0


def test_cluster_options_are_checked_before_anything_runs(capsys):
    for option, value, message in (("--cluster", "local:0", "expected local, local:N"),
                                   ("--cluster", "tcp://host:8786", "for a running scheduler use --scheduler"),
                                   ("--scheduler", "host", "expected local, local:N"),
                                   ("--part", "4/3", "expected K/N with 1 <= K <= N")):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["verify", "c.pt", option, value])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["verify", "c.pt", "--cluster", "local", "--scheduler", "tcp://h:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    args = build_parser().parse_args(["verify", "c.pt", "--cluster", "local:3", "--part", "2/5"])
    assert (args.cluster, args.scheduler, args.part) == ("local:3", None, (2, 5))


def test_the_network_digest_follows_the_weights_and_the_encoding_not_the_training():
    a, b = tiny(), tiny()
    digest = verify_module.network_sha256
    assert digest(a.state()) == digest(b.state())
    trained_otherwise = {**a.state(), "config": {**a.state()["config"], "lr": 0.5, "threads": 2, "strict": True}}
    assert digest(trained_otherwise) == digest(a.state())
    assert digest({**a.state(), "config": {**a.state()["config"], "v_high": 0.9}}) != digest(a.state())
    with torch.no_grad():
        next(b.model.parameters())[0, 0] += 1e-6
    assert digest(a.state()) != digest(b.state())


@pytest.mark.parametrize("synapse", ["resistor", "memristor"])
@pytest.mark.ngspice
def test_the_column_order_of_the_cells_gives_the_row_orders_waveforms(digits, synapse):
    """The crossbar cards go column by column (faster in ngspice); the circuit is the same as in
    row order: equal time points and output membranes to 1e-6 V."""
    netlist = export_netlist(tiny(), digits.test_x[3], 3, synapse=synapse)
    cells = [line.split()[0] for line in netlist.splitlines() if line.startswith(("Rl1_g", "Xl1_g"))]
    assert cells[:3] == [f"{cells[0][0]}l1_gp{i}_0" for i in range(3)] and cells[64] == f"{cells[0][0]}l1_gn0_0"
    rows = in_row_order(netlist)
    assert rows != netlist and sorted(rows.splitlines()) == sorted(netlist.splitlines())
    by_columns, by_rows = (run_netlist(deck, name=f"order_{synapse}")[-1].variables for deck in (netlist, rows))
    assert len(by_columns["time"]) == len(by_rows["time"])
    assert np.abs(by_columns["time"] - by_rows["time"]).max() < 1e-15
    assert max(np.abs(by_columns[k] - by_rows[k]).max() for k in by_rows if k != "time") < 1e-6
