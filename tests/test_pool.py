"""Parallel ngspice jobs: results in order, a hung job killed and reported, nothing left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from memspice.errors import SpiceError
from memspice.spice.pool import raise_first_error, run_many
from memspice.spice.runner import failed_dir

RC = "* rc {r}\nV1 a 0 1\nR1 a b {r}\nC1 b 0 1n IC=0\n.tran 10n 5u 0 10n uic\n.end\n"
HANG = "* hangs: a 1 s transient at 1 ps steps\nV1 a 0 SIN(0 1 1e6)\nR1 a 0 1k\n.tran 1e-12 1 0 1e-12\n.end\n"


def children(pid: int) -> list[str]:
    """Processes whose parent is ``pid``, zombies included (their /proc/<pid>/stat lines), except
    Python's multiprocessing resource tracker (started once by a Dask LocalCluster in an earlier
    test, it lives as long as this process by design)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"multiprocessing.resource_tracker" not in command:
            found.append(stat.read_text())
    return found


@pytest.mark.ngspice
def test_jobs_run_in_parallel_and_a_hung_job_is_killed(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    syntax_error = "* x\nQ1 a b c\n.op\n.end\n"
    jobs = [("rc1", RC.format(r=1000)), ("hang", HANG), ("rc2", RC.format(r=2000)), ("bad", syntax_error)]
    results = run_many(jobs, workers=2, timeout=3, progress=False)
    assert [r.name for r in results] == ["rc1", "hang", "rc2", "bad"]
    rc1, hang, rc2, bad = results
    assert rc1.ok and rc2.ok
    v1, v2 = rc1.value[-1].variables["v(b)"][-1], rc2.value[-1].variables["v(b)"][-1]
    assert v1 > v2 > 0.9  # R = 1k charges faster than 2k
    assert isinstance(hang.error, SpiceError) and "did not finish within 3 s" in str(hang.error)
    assert isinstance(bad.error, SpiceError) and "Error on line" in str(bad.error)
    assert 3 <= hang.wall_s < 10
    assert children(os.getpid()) == []  # killed and reaped: no zombies
    assert list(tmp_path.iterdir()) == []  # run folders removed, failures kept (in the private cache folder):
    kept = sorted(p.name.rsplit("-", 1)[0] for p in failed_dir().iterdir() if p.read_text() in (HANG, syntax_error))
    assert kept == ["bad", "hang"]
    with pytest.raises(SpiceError, match="2 of 4 ngspice jobs failed; hang"):
        raise_first_error(results)


def test_job_names_are_checked():
    with pytest.raises(Exception, match="invalid SPICE job name"):
        run_many([("../escape", RC.format(r=1))], progress=False)
    with pytest.raises(ValueError, match="unique"):
        run_many([("a", RC.format(r=1)), ("a", RC.format(r=1))], progress=False)
    with pytest.raises(ValueError, match="workers"):
        run_many([("a", RC.format(r=1))], workers=0, progress=False)
