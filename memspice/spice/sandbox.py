"""Least privilege for ngspice: each batch process runs inside a bubblewrap sandbox when it can.

Inside, ngspice sees the system read-only (``/usr`` and the loader's cache, nothing of ``/etc``,
``/home``, ``/root`` or the user's files), the netlist's own folder and memspice's ``models/``
read-only, its run folder as the only writable path, a private ``/tmp``, no network, no other
process, no capabilities and a clean environment; it dies with its parent. A netlist can thus
read, through ``.include``, only files of its own folder (keep an untrusted netlist in a folder
of its own) and the models.

The mode comes from ``$MEMSPICE_SANDBOX`` (the CLI's ``--sandbox`` sets it, so worker processes
inherit it): ``auto`` (default) uses the sandbox when bubblewrap works here — containers may
forbid the namespaces it needs — and runs ngspice without it otherwise; ``require`` refuses to
run ngspice without it; ``off`` never uses it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from memspice.errors import SpiceError

MODES = ("auto", "require", "off")
ENV_VAR = "MEMSPICE_SANDBOX"
INSTALL_HINT = "install bubblewrap (`apt-get install -y bubblewrap`)"
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # /usr-merged Debian: links into /usr


def mode() -> str:
    """The sandbox mode asked for: ``$MEMSPICE_SANDBOX``, ``auto`` when unset."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise SpiceError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a sandbox mode; allowed: {', '.join(MODES)}")
    return value


def _system_args() -> list[str]:
    """What every sandbox shows: the system read-only, /proc, /dev, a private /tmp."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"):
        if Path(name).exists():
            args += ["--ro-bind", name, name]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def _base_args(bwrap: str) -> list[str]:
    return [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
            *_system_args()]


@functools.lru_cache(maxsize=None)
def probe() -> str | None:
    """None when bubblewrap can run a program here; otherwise why not (once per process)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap is not installed; {INSTALL_HINT}"
    try:
        done = subprocess.run([*_base_args(bwrap), "true"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap did not start: {exc}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {(done.stderr.strip() or 'no message').splitlines()[-1]}"
    return None


def active() -> bool:
    """Whether the next ngspice process runs sandboxed; raises SpiceError when ``require`` is
    asked for and the sandbox does not work here."""
    wanted = mode()
    if wanted == "off":
        return False
    why_not = probe()
    if why_not and wanted == "require":
        raise SpiceError(f"the ngspice sandbox is required ({ENV_VAR}=require, --sandbox require) but {why_not}")
    return why_not is None


def describe() -> str:
    """One line that says how ngspice runs in this process."""
    wanted = mode()
    if wanted == "off":
        return f"ngspice runs without a sandbox ({ENV_VAR}=off / --sandbox off)"
    if active():
        return ("ngspice runs sandboxed (bubblewrap: the system, the netlist's folder and the models read-only, "
                "writes only to its run folder, no network)")
    return f"ngspice runs without a sandbox: {probe()}"


def readable_folders(netlist: Path, ngspice: Path) -> list[Path]:
    """The folders the sandbox shows ngspice read-only for ``netlist``: its own, the generated
    models (``memspice models``' folder, ``models/`` of the current folder, which netlists written
    by ``memspice netlists`` include), and the installation of an ngspice that lives outside ``/usr``."""
    from memspice.codegen.files import DEFAULT_DIR as MODELS_DIR

    folders = [netlist.resolve().parent]
    if MODELS_DIR.is_dir():
        folders.append(MODELS_DIR.resolve())
    ngspice = ngspice.resolve()
    if not ngspice.is_relative_to("/usr"):
        folders.append(ngspice.parent.parent)
    return folders


def wrap(argv: Sequence[str], run_dir: Path, read_only: Iterable[Path], env: dict[str, str]) -> list[str]:
    """``argv`` as run in the sandbox with ``run_dir`` writable and the folders ``read_only``
    visible read-only; ``env`` is its whole environment."""
    run_dir = run_dir.resolve()
    folders = sorted({p.resolve() for p in read_only}, key=lambda p: len(p.parts))
    binds: list[str] = []
    for folder in folders:
        if folder != run_dir and run_dir not in folder.parents:  # the run folder is bound writable below
            binds += ["--ro-bind", str(folder), str(folder)]
    variables = [arg for name, value in env.items() for arg in ("--setenv", name, value)]
    return [*_base_args(shutil.which("bwrap") or "bwrap"), *binds, "--bind", str(run_dir), str(run_dir),
            "--chdir", str(run_dir), *variables, "--", *argv]
