"""The `memspice` command: help, the neuron step, bad arguments (training commands: test_training.py)."""

from __future__ import annotations

from conftest import memspice


def test_help_lists_the_commands():
    result = memspice("--help")
    assert result.returncode == 0
    for command in ("models", "netlists", "demo", "step", "simulate", "characterize", "validate", "train", "export",
                    "verify"):
        assert command in result.stdout


def test_step_prints_spikes_and_saves_plot(tmp_path):
    result = memspice("step", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "20 spikes" in result.stdout
    assert (tmp_path / "mif_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ".subckt mif mem" in (tmp_path / "mif_step.cir").read_text()


def test_step_rejects_a_negative_amplitude():
    result = memspice("step", "--amplitude=-2e-6")
    assert result.returncode == 2
    assert "expected a positive number, got '-2e-6'" in result.stderr
