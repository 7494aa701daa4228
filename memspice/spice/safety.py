"""Refuse ngspice ``.control`` blocks that could harm the machine, unless the user opts in.

ngspice's control language can run shell commands (``shell``), change folder (``cd``) and write
files (``write``, ``wrdata``, ``hardcopy``, output redirection ``>``...). An untrusted netlist is
simulated only if its control blocks do none of that outside the run directory.
"""

from __future__ import annotations

from memspice.errors import MemspiceError

_NEVER = {"shell", "cd", "setcs", "source", "load", "edit", "sysinfo"}
_WRITERS = {"write", "wrdata", "wrs2p", "wrnodev", "hardcopy", "snsave"}


class UnsafeNetlistError(MemspiceError):
    """A netlist's ``.control`` block runs shell commands or writes outside the run directory."""


def _outside_run_dir(path: str) -> bool:
    path = path.strip("'\"")
    return path.startswith(("/", "~")) or ".." in path.split("/") or "$" in path


def _danger(command_line: str) -> str | None:
    """Why a single control command is unsafe, or None."""
    words = command_line.lower().split()
    if not words:
        return None
    if words[0] in ("shell", "cd"):
        return "runs a shell command or leaves the run directory"
    if words[0] in _NEVER:
        return "reads or edits files the user did not hand over"
    if ">" in command_line:
        target = command_line.split(">", 1)[1].lstrip(">").split()
        if not target or _outside_run_dir(target[0]):
            return "redirects output to a file outside the run directory"
    if words[0] in _WRITERS and len(words) > 1 and _outside_run_dir(words[1]):
        return "writes a file outside the run directory"
    return None


def check_control_blocks(netlist: str, where: str = "netlist") -> None:
    """Raise UnsafeNetlistError naming the first dangerous control command in ``netlist``."""
    inside = False
    for number, raw in enumerate(netlist.splitlines(), 1):
        line = raw.strip()
        lower = line.lower()
        if lower.startswith(".control"):
            inside = True
        elif lower.startswith(".endc"):
            inside = False
        elif inside and not line.startswith(("*", "#")):
            for command in line.split(";"):
                why = _danger(command)
                if why:
                    raise UnsafeNetlistError(
                        f"{where}, line {number}: the .control command {command.strip()!r} {why}; "
                        "simulate it only if you trust it, with --allow-control (allow_control=True)"
                    )
