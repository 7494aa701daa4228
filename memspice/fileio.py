"""Atomic file writing: a temporary file in the same folder, then a rename, so nothing is lost."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
