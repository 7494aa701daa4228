"""Run ngspice in batch mode (``ngspice -b -r out.raw``) and read the raw file back.

Each run happens in its own temporary folder, in its own process group, with a timeout: a run
that exceeds it is killed with all its children. ngspice's own failures become
:class:`~memspice.errors.SpiceError` carrying ngspice's message.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from memspice.errors import SpiceError
from memspice.spice.rawfile import RawPlot, read_raw
from memspice.spice.safety import check_control_blocks

# Lines of ngspice output that mean the simulation did not do what the netlist asked. "singular
# matrix" alone is not one of them (gmin stepping often recovers), but it explains a failure.
_FAILURE = re.compile(
    r"(^\s*error\b|\berror:|timestep too small|source stepping failed|unknown subckt|could not find|"
    r"no such vector|simulation\(s\) aborted|fatal)",
    re.IGNORECASE,
)
_HINT = re.compile(r"singular matrix", re.IGNORECASE)
_SYNTAX = re.compile(r"error on line", re.IGNORECASE)


def failure_lines(output: str) -> list[str]:
    """The lines of ngspice output that report a failure (error, timestep too small, no operating
    point...), each once; with the card after an "Error on line" and the singular-matrix hints."""
    lines = [line.strip() for line in output.splitlines()]
    found: list[str] = []
    for k, line in enumerate(lines):
        if _FAILURE.search(line):
            no_op = "source stepping" in line
            found.append("no DC operating point: gmin and source stepping failed" if no_op else line)
            if _SYNTAX.search(line):
                found += [x for x in lines[k + 1 : k + 3] if x]
    if found:
        found += [line[line.lower().index("singular"):] for line in lines if _HINT.search(line)]
    return list(dict.fromkeys(found))


def ngspice_executable() -> str:
    """Path of the ``ngspice`` program, or a SpiceError that says how to install it."""
    exe = shutil.which("ngspice")
    if exe is None:
        raise SpiceError("ngspice is not installed: run `apt-get install -y ngspice libngspice0` (or `make setup`)")
    return exe


def failed_dir() -> Path:
    """Where failing generated netlists are kept for inspection: ``$TMPDIR/memspice-failed``."""
    return Path(tempfile.gettempdir()) / "memspice-failed"


def run_file(path: str | os.PathLike, timeout: float = 120.0, allow_control: bool = False) -> list[RawPlot]:
    """Simulate the netlist file at ``path`` in place (its relative ``.include`` paths work), with
    a temporary run directory as working folder. Its ``.control`` blocks are checked first
    (:mod:`memspice.spice.safety`) unless ``allow_control``."""
    path = Path(path).resolve()
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise SpiceError(f"cannot read the netlist: {exc.strerror}", netlist=str(path)) from None
    if not allow_control:
        check_control_blocks(text, where=str(path))
    with tempfile.TemporaryDirectory(prefix="memspice-") as tmp:
        return _simulate(path, Path(tmp), timeout, keep_on_failure=False)


def run_netlist(
    netlist: str, timeout: float = 120.0, name: str = "circuit", allow_control: bool = False
) -> list[RawPlot]:
    """Simulate the netlist text with ``ngspice -b`` and return the plots of its raw file.

    Raises SpiceError with ngspice's message on failure or after ``timeout`` seconds; the failing
    netlist is kept in :func:`failed_dir` and the error names it.
    """
    if not allow_control:
        check_control_blocks(netlist, where=name)
    with tempfile.TemporaryDirectory(prefix="memspice-") as tmp:
        cir = Path(tmp) / f"{name}.cir"
        cir.write_text(netlist)
        return _simulate(cir, Path(tmp), timeout, keep_on_failure=True)


def _simulate(cir: Path, run_dir: Path, timeout: float, keep_on_failure: bool) -> list[RawPlot]:
    exe = ngspice_executable()
    raw = run_dir / f"{cir.stem}.raw"
    proc = subprocess.Popen(
        [exe, "-b", "-r", str(raw), str(cir)],
        cwd=run_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, so a timeout kills every child
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        failures = failure_lines(output)
        if proc.returncode != 0 or failures or not raw.exists():
            why = "; ".join(failures) or f"ngspice exited with status {proc.returncode}"
            raise SpiceError(f"ngspice failed: {why}", netlist=_report(cir, keep_on_failure), output=output)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()  # reap it: no zombie
        raise SpiceError(
            f"ngspice did not finish within {timeout:g} s and was killed", netlist=_report(cir, keep_on_failure)
        ) from None
    return read_raw(raw)


def _report(cir: Path, keep: bool) -> str:
    """The path to name in an error: the netlist itself, or a kept copy of a temporary one."""
    if not keep:
        return str(cir)
    kept = failed_dir() / cir.name
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cir, kept)
    return str(kept)
