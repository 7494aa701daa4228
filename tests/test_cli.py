"""The `memspice` command: help, the neuron step, bad arguments (training commands: test_training.py)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import memspice, memspice_stops


def test_help_lists_the_commands():
    result = memspice("--help")
    assert result.returncode == 0
    for command in ("models", "netlists", "demo", "step", "simulate", "characterize", "validate", "train", "evaluate",
                    "export", "verify"):
        assert command in result.stdout


@pytest.mark.ngspice
def test_step_prints_spikes_and_saves_plot(tmp_path):
    result = memspice("step", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "20 spikes" in result.stdout
    assert (tmp_path / "mif_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ".subckt mif mem" in (tmp_path / "mif_step.cir").read_text()


def test_step_rejects_a_negative_amplitude():
    result = memspice_stops("step", "--amplitude=-2e-6")
    assert result.returncode == 2
    assert "expected a positive number, got '-2e-6'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["simulate", "x.cir", "--timeout", "inf"], "argument --timeout: expected a finite number, got 'inf'"),
    (["characterize", "mif", "--threshold", "nan"], "argument --threshold: expected a finite number, got 'nan'"),
    (["train", "--device", "bogus", "--out", "{tmp}/run"], "--device 'bogus': memspice runs on cpu or cuda"),
    (["validate", "--device", "cuda:7"], "--device cuda:7: no CUDA device is available here"),
])
def test_bad_values_fail_in_one_line(tmp_path, args, message):
    result = memspice_stops(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("where, message", [
    ("{file}/w.npz", "is a file, not a folder"),
    ("{folder}", "it is a folder; give a file name"),
    ("/proc/memspice/w.npz", "cannot create a file in /proc/memspice"),
])
def test_unwritable_outputs_fail_before_any_work(tmp_path, where, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    out = where.format(file=tmp_path / "file", folder=tmp_path / "folder.npz")
    result = memspice_stops("simulate", "no-such-netlist.cir", "--out", out)  # the output is checked first
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_validate_refuses_a_dt_before_running_ngspice(tmp_path):
    env_path = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)  # no ngspice here: had it run, the error would say so
    try:
        result = memspice_stops("validate", "--dt", "1e-30", "--sandbox", "off")
    finally:
        os.environ["PATH"] = env_path
    assert result.returncode == 2 and "dt = 1e-30 s would take 1.2e+26 steps" in result.stderr


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="needs ngspice")
@pytest.mark.ngspice
def test_characterize_json_is_standard_json_when_a_measure_does_not_exist():
    """Spikes counted above 0.9 V, where the neuron never gets: no inter-spike interval exists."""
    result = memspice("characterize", "mif", "--points", "1", "--min-current", "1e-7", "--reference-current", "1e-7",
                      "--threshold", "0.9", "--json")
    assert result.returncode == 0, result.stderr

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["spike_counts"] == [0] and report["isi_s"] is None
