"""Data-parallel training: two torchrun processes (gloo, CPU) train exactly like one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from memspice.train.checkpoint import load_checkpoint

OPTIONS = ["--dataset", "digits", "--hidden", "8", "--epochs", "2", "--batch-size", "16", "--train-samples", "64",
           "--eval-samples", "16", "--window", "4e-6", "--dtype", "float64", "--threads", "1", "--no-fused", "--quiet"]


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _metrics(folder) -> list[dict]:
    with open(folder / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "memspice", "train", *OPTIONS, "--out", str(one)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "memspice", "train", *OPTIONS, "--out", str(two)])
    rows_one, rows_two = _metrics(one), _metrics(two)
    # each process trained on half of every batch: together they saw the data once per epoch
    assert [r["processes"] for r in rows_two] == ["2", "2"]
    assert [r["train_samples"] for r in rows_two] == [r["train_samples"] for r in rows_one] == ["64", "64"]
    for a, b in zip(rows_one, rows_two):
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-7)
    weights_one = load_checkpoint(one / "checkpoint.pt")["model"]
    weights_two = load_checkpoint(two / "checkpoint.pt")["model"]
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        # the same weights up to the order of the gradient sums (Adam's normalization turns their
        # ~1e-16 differences into ~1e-7 on the logits; the 8 steps of lr 0.1 move them ~0.1-1)
        torch.testing.assert_close(weights_two[name], value, rtol=0, atol=1e-6, msg=name)
