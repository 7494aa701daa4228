"""Atomic file writing (a temporary file in the same folder, then a rename, so nothing is lost),
checks that an output can be written before long work starts, and strict JSON."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

from memspice.errors import MemspiceError


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0o666 less the umask (read once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (a checkpoint's identity in reports)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, with the permissions any new file gets (the
    temporary file would be owner-only); the folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """``folder``, made if missing, after proving a file can be created in it (a quick check
    before long work, which would otherwise fail only at its end); MemspiceError says why not."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MemspiceError(f"cannot write into {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".memspice-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MemspiceError(f"cannot create a file in {folder}: {exc.strerror or exc}") from None
    return folder


def check_writable(path: str | os.PathLike) -> Path:
    """``path``, after proving that a file can be written there (its folder is made if missing);
    MemspiceError says why not: a folder in its place, a file in place of its folder, no
    permission, a read-only or virtual file system."""
    path = Path(path)
    if path.is_dir():
        raise MemspiceError(f"cannot write {path}: it is a folder; give a file name")
    check_writable_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def write_files(out_dir: str | os.PathLike, files: dict[str, str]) -> list[Path]:
    """Write each ``name -> text`` of ``files`` into ``out_dir`` atomically; returns the paths."""
    return [atomic_write_text(Path(out_dir) / name, text) for name, text in files.items()]


def stale_files(out_dir: str | os.PathLike, files: dict[str, str], suffixes: tuple[str, ...]) -> list[str]:
    """Names of files in ``out_dir`` that differ from ``files`` (``name -> text``): missing or
    edited ones, and files with one of ``suffixes`` that ``files`` does not hold any more."""
    out_dir = Path(out_dir)
    bad = [n for n, text in files.items() if not (out_dir / n).is_file() or (out_dir / n).read_text() != text]
    present = {p.name for p in out_dir.iterdir() if p.suffix in suffixes} if out_dir.is_dir() else set()
    return sorted(bad + sorted(present - set(files)))


def _finite_or_none(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def json_text(value: object, indent: int | None = None) -> str:
    """``value`` as standard JSON: NaN and infinities (a measure that does not exist, such as the
    inter-spike interval of a neuron that fired once) become ``null``, not the bare ``NaN`` that
    JSON parsers other than Python's reject."""
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False)
