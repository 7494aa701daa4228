"""Run ngspice in batch mode (``ngspice -n -b -r out.raw``) and read the raw file back.

Each run happens in its own private temporary folder (its working folder, removed afterwards),
in its own process group, without init files (``-n``: no ``.spiceinit``), inside the sandbox
when there is one (:mod:`memspice.spice.sandbox`), with a timeout: a run that exceeds it, or
whose ``cancel`` event is set, or that is interrupted (Ctrl-C), is killed with all its children.
Every deck is checked first (:mod:`memspice.spice.safety`): no control language unless
``allow_control``. ngspice's own failures become :class:`~memspice.errors.SpiceError` carrying
ngspice's message.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from memspice.errors import SimulationCancelled, SpiceError
from memspice.spice import sandbox
from memspice.spice.rawfile import RawPlot, read_raw
from memspice.spice.safety import DeckInputs, UnsafeNetlistError, netlist_files

_POLL_S = 0.1  # how often a waiting run looks at its cancel event
# Passed into the sandbox besides SPICE_*/NGSPICE_* and the include paths' variables; ngspice 39
# crashes without HOME (it resolves ~/ paths with it, the same as the safety check here).
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")

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
    """A private folder for copies of failing generated netlists: ``$XDG_CACHE_HOME/memspice/
    failed-netlists`` (``~/.cache/...``), created owner-only and used only if it is a real folder
    of this user's that nobody else can write to; else a fresh ``memspice-failed-*`` temporary
    folder (also owner-only)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memspice" / "failed-netlists"
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(cache)
        if not cache.is_symlink() and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return cache
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="memspice-failed-"))


def run_file(path: str | os.PathLike, timeout: float = 120.0, allow_control: bool = False,
             cancel: threading.Event | None = None) -> list[RawPlot]:
    """Simulate the netlist file at ``path`` in place (its relative ``.include`` paths work), with
    a private temporary run folder as working folder. The deck and every file it includes are
    checked first (:func:`memspice.spice.safety.netlist_files`) unless ``allow_control``."""
    path = Path(path).resolve()
    if not path.is_file():
        why = "No such file or directory" if not path.exists() else "not a regular file"
        raise SpiceError(f"cannot read the netlist: {why}", netlist=str(path))
    with tempfile.TemporaryDirectory(prefix="memspice-") as tmp:
        inputs = netlist_files(path, tmp, allow_control)
        return _simulate(path, Path(tmp), inputs, timeout, keep_on_failure=False, cancel=cancel)


def run_netlist(netlist: str, timeout: float = 120.0, name: str = "circuit", allow_control: bool = False,
                cancel: threading.Event | None = None) -> list[RawPlot]:
    """Simulate the netlist text with ``ngspice -b`` and return the plots of its raw file.

    Raises SpiceError with ngspice's message on failure or after ``timeout`` seconds (the
    failing netlist is copied into :func:`failed_dir` and the error names the copy), and
    :class:`~memspice.errors.SimulationCancelled` when ``cancel`` is set before it ends.
    """
    with tempfile.TemporaryDirectory(prefix="memspice-") as tmp:
        cir = Path(tmp) / f"{name}.cir"
        cir.write_text(netlist)
        inputs = netlist_files(cir, tmp, allow_control, where=name)
        return _simulate(cir, Path(tmp), inputs, timeout, keep_on_failure=True, cancel=cancel)


def _environment(inputs: DeckInputs, run_dir: Path) -> dict[str, str]:
    """ngspice's environment in the sandbox: the few variables it needs, nothing else."""
    names = {*_PASSED_ENV, *inputs.variables, *(n for n in os.environ if n.startswith(("SPICE_", "NGSPICE_")))}
    return {"HOME": str(run_dir), **{n: os.environ[n] for n in sorted(names) if n in os.environ}}


def _check_visible(inputs: DeckInputs, readable: list[Path], run_dir: Path) -> None:
    """Refuse, before starting, a deck that includes a file the sandbox will not show ngspice."""
    shown = [*readable, run_dir.resolve()]
    for path in inputs.files:
        if not any(path == folder or folder in path.parents for folder in shown):
            raise UnsafeNetlistError(
                f"{inputs.files[0]} includes {path}, outside the folders the sandbox shows ngspice "
                f"({', '.join(map(str, readable))}); copy it next to the netlist, or, if you trust the netlist, "
                f"run without the sandbox (--sandbox off, {sandbox.ENV_VAR}=off)")


def _simulate(cir: Path, run_dir: Path, inputs: DeckInputs, timeout: float, keep_on_failure: bool,
              cancel: threading.Event | None) -> list[RawPlot]:
    exe = ngspice_executable()
    raw = run_dir / f"{cir.stem}.raw"
    argv = [exe, "-n", "-b", "-r", str(raw), str(cir)]
    if sandbox.active():
        readable = sandbox.readable_folders(cir, Path(exe))
        _check_visible(inputs, readable, run_dir)
        argv = sandbox.wrap(argv, run_dir, readable, _environment(inputs, run_dir))
    if cancel is not None and cancel.is_set():
        raise SimulationCancelled("ngspice was not started: the run was cancelled", netlist=str(cir))
    proc = subprocess.Popen(
        argv,
        cwd=run_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches memspice only
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                output, _ = proc.communicate(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise SimulationCancelled("ngspice was stopped: the run was cancelled", netlist=str(cir)) from None
                if time.monotonic() > deadline:
                    raise SpiceError(f"ngspice did not finish within {timeout:g} s and was killed",
                                     netlist=_report(cir, keep_on_failure)) from None
    except BaseException:  # a timeout, a cancel, Ctrl-C: nothing of this run may outlive it
        _kill(proc)
        raise
    failures = failure_lines(output)
    if proc.returncode != 0 or failures or not raw.exists():
        why = "; ".join(failures) or f"ngspice exited with status {proc.returncode}"
        raise SpiceError(f"ngspice failed: {why}", netlist=_report(cir, keep_on_failure), output=output)
    return read_raw(raw)


def _kill(proc: subprocess.Popen) -> None:
    """Kill the run's whole process group and reap it (no zombie, no orphan)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _report(cir: Path, keep: bool) -> str:
    """The path to name in an error: the netlist itself, or a kept copy of a temporary one
    (a new file in :func:`failed_dir`, never written through a link)."""
    if not keep:
        return str(cir)
    fd, kept = tempfile.mkstemp(prefix=f"{cir.stem}-", suffix=".cir", dir=failed_dir())
    with os.fdopen(fd, "wb") as out:
        out.write(cir.read_bytes())
    return kept
