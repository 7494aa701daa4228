"""The in-process runner (PySpice + libngspice) against the subprocess runner; library lookup."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from memspice.errors import SpiceError
from memspice.netlist.examples import mif_step
from memspice.spice import shared
from memspice.spice.runner import run_netlist


@pytest.mark.libngspice
@pytest.mark.ngspice
def test_shared_library_and_subprocess_give_the_same_mif_waveform():
    netlist = mif_step()
    a = shared.run_shared(netlist)[-1]
    b = run_netlist(netlist)[-1]
    assert set(a.variables) == set(b.variables)
    grid = b.variables["time"]
    error = np.abs(np.interp(grid, a.variables["time"], a.variables["v(mem)"]) - b.variables["v(mem)"])
    assert error.max() <= 1e-6
    assert b.variables["v(mem)"].max() > 0.45  # it spiked: the comparison is not between two flat lines


def test_shared_library_reports_ngspice_errors_and_recovers():
    with pytest.raises(SpiceError, match="unknown subckt"):
        shared.run_shared("* missing\nX1 a nosuchmodel\nR1 a 0 1k\n.tran 1n 1u\n.end\n")
    with pytest.raises(SpiceError, match="no analysis"):
        shared.run_shared("* no analysis\nV1 a 0 1\nR1 a 0 1k\n.end\n")
    with pytest.raises(SpiceError, match="did not finish within 1 s"):
        shared.run_shared("* slow\nV1 a 0 SIN(0 1 1e6)\nR1 a 0 1k\n.tran 1e-12 1 0 1e-12\n.end\n", timeout=1)
    rc = shared.run_shared("* rc\nV1 a 0 1\nR1 a b 1k\nC1 b 0 1n IC=0\n.tran 10n 5u 0 10n uic\n.end\n")[-1]
    assert rc.variables["v(b)"][-1] == pytest.approx(1 - np.exp(-5), rel=1e-3)


@pytest.mark.libngspice
def test_library_is_found_without_configuration(monkeypatch):
    monkeypatch.delenv("NGSPICE_LIBRARY_PATH", raising=False)
    assert "ngspice" in shared.library_path()


def test_missing_library_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "libngspice.so.0"))
    with pytest.raises(SpiceError, match="NGSPICE_LIBRARY_PATH=.* is not a file.*apt-get install -y libngspice0"):
        shared.library_path()
    monkeypatch.delenv("NGSPICE_LIBRARY_PATH")
    monkeypatch.setattr(shared.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(SpiceError, match="not installed.*apt-get install -y libngspice0"):
        shared.library_path()


def test_a_file_that_is_no_library_fails_clearly(tmp_path):
    """In a fresh process, since the shared library loads once per process."""
    fake = tmp_path / "libngspice.so"
    fake.write_text("not a library")
    code = ("from memspice.spice.shared import run_shared\n"
            "from memspice.errors import SpiceError\n"
            "try:\n    run_shared('* x\\nR1 a 0 1\\n.end\\n')\nexcept SpiceError as e:\n    print(e)\n")
    env = {**os.environ, "NGSPICE_LIBRARY_PATH": str(fake)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cannot load the ngspice shared library" in out.stdout and str(fake) in out.stdout
