"""`memspice simulate`: any netlist, spikes as JSON, waveforms out (untrusted decks: test_untrusted_netlists)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import NETLISTS_DIR, memspice, memspice_stops


@pytest.fixture(scope="module")
def mif_netlist():
    """The committed example (it includes ../models/mif.lib)."""
    return NETLISTS_DIR / "mif_step.cir"


@pytest.mark.ngspice
def test_json_reports_the_spikes(mif_netlist):
    result = memspice("simulate", str(mif_netlist), "--json", "--probe", "mem")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["engine"] == "ngspice" and report["signals"] == ["v(mem)"]
    assert report["n_points"] > 1000 and report["wall_s"] > 0
    spikes = report["spikes"]["v(mem)"]
    assert len(spikes) == 20 and spikes[0] == pytest.approx(12.58e-6, rel=0.01)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
@pytest.mark.ngspice
def test_waveforms_are_saved(mif_netlist, tmp_path, suffix):
    out = tmp_path / f"w{suffix}"
    result = memspice("simulate", str(mif_netlist), "--probe", "mem", "i(v.xneuron.ve1)", "--out", str(out))
    assert result.returncode == 0, result.stderr
    if suffix == ".npz":
        data = np.load(out)
        t, v = data["time"], data["v(mem)"]
        assert "i(v.xneuron.ve1)" in data.files
    else:
        table = np.loadtxt(out, delimiter=",", skiprows=1)
        assert out.read_text().splitlines()[0] == "time,v(mem),i(v.xneuron.ve1)"
        t, v = table[:, 0], table[:, 1]
    assert np.all(np.diff(t) > 0) and 0.54 < v.max() < 0.55


@pytest.mark.ngspice
def test_without_probes_spikes_are_reported_for_the_circuits_own_nodes(mif_netlist, tmp_path):
    out = tmp_path / "w.npz"
    result = memspice("simulate", str(mif_netlist), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "v(xneuron.x1)" in report["signals"]  # every signal is kept ...
    assert list(report["spikes"]) == ["v(mem)"]  # ... but a neuron's state is not a membrane with spikes
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # saved files get the usual permissions


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.ngspice
def test_unknown_probe_lists_the_signals(mif_netlist):
    result = memspice("simulate", str(mif_netlist), "--probe", "nosuchnode")
    assert result.returncode == 2
    assert "no signal 'nosuchnode'; available: v(mem)" in result.stderr


def test_missing_netlist_is_a_clear_error(tmp_path):
    result = memspice_stops("simulate", str(tmp_path / "nope.cir"))
    assert result.returncode == 2
    assert "cannot read the netlist: No such file or directory" in result.stderr


def test_output_suffix_is_checked(mif_netlist):
    result = memspice_stops("simulate", str(mif_netlist), "--out", "w.txt")
    assert result.returncode == 2 and "expected a file name ending in .npz or .csv" in result.stderr
