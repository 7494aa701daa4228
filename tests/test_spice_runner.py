"""The batch runner and raw-file reader: real ngspice, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memspice.errors import RawFileError, SpiceError
from memspice.spice.rawfile import read_raw
from memspice.spice.runner import failed_dir, run_netlist

RC = """* RC charging
V1 in 0 DC 1
R1 in out 1k
C1 out 0 1u IC=0
.tran 10u 5m 0 10u uic
.end
"""


@pytest.mark.ngspice
def test_rc_circuit_matches_the_exponential():
    plot = run_netlist(RC)[-1]
    t, v = plot.variables["time"], plot.variables["v(out)"]
    assert plot.kinds["v(out)"] == "voltage"
    np.testing.assert_allclose(v, 1 - np.exp(-t / 1e-3), atol=2e-3)


@pytest.mark.ngspice
def test_syntax_error_carries_ngspice_message():
    with pytest.raises(SpiceError, match=r"Error on line 4.*circuit not parsed") as info:
        run_netlist("* bad\nV1 a 0 DC 1\nR1 a 0 1k\nQ1 a b c\n.op\n.end\n", name="bad")
    assert "could not find a valid modelname" in info.value.output
    kept = Path(info.value.netlist)
    assert kept.name.startswith("bad-") and kept.suffix == ".cir" and "Q1 a b c" in kept.read_text()
    assert kept.parent == failed_dir() and kept.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.ngspice
def test_unknown_subcircuit_is_reported():
    with pytest.raises(SpiceError, match="(?i)unknown subckt|could not find"):
        run_netlist("* missing model\nX1 a nosuchmodel\nR1 a 0 1k\n.op\n.end\n")


@pytest.mark.ngspice
def test_circuit_without_operating_point_is_an_error():
    """Gmin and source stepping fail on a hard-switching B-source: ngspice goes on from a garbage
    point (-1e7 V) and exits 0, so the runner must read the failure from its output."""
    netlist = "* no DC solution\nB1 0 a I={V(a) > 0.5 ? 1 : -1}\nC1 a 0 1p\n.tran 1n 1u\n.end\n"
    with pytest.raises(SpiceError, match="no DC operating point.*singular matrix: +check node a"):
        run_netlist(netlist)


@pytest.mark.ngspice
def test_node_without_a_dc_path_is_an_error():
    """Node a connects only to a current source and a capacitor: a node missing its connection."""
    netlist = "* floating node\nI1 0 a DC 1m\nC1 a b 1p\nR1 b 0 1k\n.tran 1n 1u\n.end\n"
    with pytest.raises(SpiceError, match="no DC operating point.*check node a"):
        run_netlist(netlist)


@pytest.mark.ngspice
def test_timestep_too_small_is_an_error():
    netlist = "* conflicting ideal sources\nV1 a 0 DC 1\nV2 a 0 DC 2\nR1 a 0 1k\n.tran 1n 1u\n.end\n"
    with pytest.raises(SpiceError, match="(?i)timestep too small"):
        run_netlist(netlist)


@pytest.mark.ngspice
def test_timeout_kills_ngspice():
    endless = "* endless\nR1 a 0 1k\n.control\nwhile 1 = 1\nend\n.endc\n.end\n"
    with pytest.raises(SpiceError, match="did not finish within 2 s"):
        run_netlist(endless, timeout=2, allow_control=True)


@pytest.mark.ngspice
def test_truncated_raw_file_is_an_error(tmp_path):
    plot = run_netlist(RC)[-1]
    assert plot.n_points > 10
    raw = tmp_path / "rc.raw"
    header = (
        "Title: rc\nDate: x\nPlotname: Transient Analysis\nFlags: real\nNo. Variables: 2\n"
        f"No. Points: {plot.n_points}\nVariables:\n\t0\ttime\ttime\n\t1\tv(out)\tvoltage\nBinary:\n"
    ).encode()
    body = np.column_stack([plot.variables["time"], plot.variables["v(out)"]]).astype("<f8").tobytes()
    raw.write_bytes(header + body)
    back = read_raw(raw)[0]
    np.testing.assert_array_equal(back.variables["v(out)"], plot.variables["v(out)"])
    raw.write_bytes(header + body[: len(body) // 2])
    with pytest.raises(RawFileError, match="truncated"):
        read_raw(raw)
    raw.write_bytes(b"")
    with pytest.raises(RawFileError, match="empty"):
        read_raw(raw)
    raw.write_bytes(header.replace(b"No. Points: ", b"No. Points: x"))
    with pytest.raises(RawFileError, match="not an integer"):
        read_raw(raw)


@pytest.mark.ngspice
def test_ascii_raw_file_reads_like_binary(tmp_path):
    plot = run_netlist(RC)[-1]
    lines = ["Title: rc", "Date: x", "Plotname: Transient Analysis", "Flags: real", "No. Variables: 2",
             f"No. Points: {plot.n_points}", "Variables:", "\t0\ttime\ttime", "\t1\tv(out)\tvoltage", "Values:"]
    for k, (t, v) in enumerate(zip(plot.variables["time"], plot.variables["v(out)"])):
        lines += [f" {k}\t{float(t)!r}", f"\t{float(v)!r}"]
    (tmp_path / "a.raw").write_text("\n".join(lines) + "\n")
    back = read_raw(tmp_path / "a.raw")[0]
    np.testing.assert_array_equal(back.variables["v(out)"], plot.variables["v(out)"])
