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

# Lines of ngspice output that mean the simulation did not do what the netlist asked.
_FAILURE = re.compile(
    r"(^\s*error\b|\berror:|timestep too small|singular matrix|unknown subckt|could not find|"
    r"no such vector|simulation\(s\) aborted|fatal)",
    re.IGNORECASE,
)


def ngspice_executable() -> str:
    """Path of the ``ngspice`` program, or a SpiceError that says how to install it."""
    exe = shutil.which("ngspice")
    if exe is None:
        raise SpiceError("ngspice is not installed: run `apt-get install -y ngspice libngspice0` (or `make setup`)")
    return exe


def run_netlist(netlist: str, timeout: float = 120.0, name: str = "circuit") -> list[RawPlot]:
    """Simulate the netlist text with ``ngspice -b`` and return the plots of its raw file.

    Raises SpiceError with ngspice's message on failure or after ``timeout`` seconds.
    """
    exe = ngspice_executable()
    with tempfile.TemporaryDirectory(prefix="memspice-") as tmp:
        cir = Path(tmp) / f"{name}.cir"
        raw = Path(tmp) / f"{name}.raw"
        cir.write_text(netlist)
        proc = subprocess.Popen(
            [exe, "-b", "-r", str(raw), str(cir)],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, so a timeout kills every child
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise SpiceError(f"ngspice did not finish within {timeout:g} s and was killed", netlist=name) from None
        failures = [line.strip() for line in output.splitlines() if _FAILURE.search(line)]
        if proc.returncode != 0 or failures or not raw.exists():
            why = "; ".join(failures) or f"ngspice exited with status {proc.returncode}"
            raise SpiceError(f"ngspice failed: {why}", netlist=name, output=output)
        return read_raw(raw)
