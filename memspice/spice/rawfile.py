"""Reader for ngspice raw files (binary and ASCII), strict about truncation and corruption.

A raw file holds one or more plots, each a header (title, plot name, flags, variable list,
point count) followed by the data. A file cut short or malformed raises :class:`RawFileError`:
a wrong array is never returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memspice.errors import RawFileError


@dataclass
class RawPlot:
    """One analysis: ``variables`` in file order, each a 1-D array of ``n_points`` values."""

    title: str
    plotname: str
    flags: str
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  #: name -> 'time', 'voltage', 'current'...

    @property
    def n_points(self) -> int:
        return len(next(iter(self.variables.values()))) if self.variables else 0


def read_raw(path: str | os.PathLike) -> list[RawPlot]:
    """All plots of the raw file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RawFileError(f"cannot read raw file {path}: {exc.strerror}") from exc
    if not data:
        raise RawFileError(f"raw file {path} is empty (did ngspice stop before writing it?)")
    plots, pos = [], 0
    while pos < len(data):
        plot, pos = _read_plot(data, pos, path)
        plots.append(plot)
        while pos < len(data) and data[pos : pos + 1] in (b"\n", b"\r", b" "):
            pos += 1
    return plots


def _read_plot(data: bytes, pos: int, path: Path) -> tuple[RawPlot, int]:
    header: dict[str, str] = {}
    names: list[str] = []
    kinds: list[str] = []
    in_vars = False
    n_vars = n_points = None
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise RawFileError(f"raw file {path} is truncated inside a header")
        line = data[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if in_vars and n_vars is not None and len(names) < n_vars:
            parts = line.split()
            if len(parts) < 3 or not parts[0].isdigit() or int(parts[0]) != len(names):
                raise RawFileError(f"raw file {path}: malformed variable line {line!r}")
            names.append(parts[1])
            kinds.append(parts[2])
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("binary", "values"):
            break
        header[key] = value.strip()
        if key == "no. variables":
            n_vars = _int(value, "No. Variables", path)
        elif key == "no. points":
            n_points = _int(value, "No. Points", path)
        elif key == "variables":
            in_vars = True
    if n_vars is None or n_points is None or len(names) != n_vars:
        raise RawFileError(f"raw file {path}: header lacks the variable list or point count")
    is_complex = "complex" in header.get("flags", "")
    width = 2 if is_complex else 1
    if key == "binary":
        count = n_points * n_vars * width
        nbytes = 8 * count
        if len(data) - pos < nbytes:
            raise RawFileError(
                f"raw file {path} is truncated: {n_points} points of {n_vars} variables need "
                f"{nbytes} bytes, {len(data) - pos} present"
            )
        values = np.frombuffer(data, dtype="<f8", count=count, offset=pos).copy()
        pos += nbytes
    else:
        values, pos = _read_ascii(data, pos, n_points, n_vars, width, path)
    if is_complex:
        values = values.view(np.complex128)
    table = values.reshape(n_points, n_vars)
    plot = RawPlot(header.get("title", ""), header.get("plotname", ""), header.get("flags", ""))
    for i, (name, kind) in enumerate(zip(names, kinds)):
        plot.variables[name.lower()] = table[:, i].copy()
        plot.kinds[name.lower()] = kind
    return plot, pos


def _read_ascii(data: bytes, pos: int, n_points: int, n_vars: int, width: int, path: Path):
    out = np.empty(n_points * n_vars * width)
    k = 0
    for p in range(n_points):
        for v in range(n_vars):
            end = data.find(b"\n", pos)
            if end < 0:
                raise RawFileError(f"raw file {path} is truncated at point {p} of {n_points}")
            tokens = data[pos:end].decode("latin-1").split()
            pos = end + 1
            if v == 0:
                tokens = tokens[1:]  # the point index
            try:
                nums = [float(t) for t in ",".join(tokens).split(",") if t]
            except ValueError:
                raise RawFileError(f"raw file {path}: bad number at point {p}, variable {v}") from None
            if len(nums) != width:
                raise RawFileError(f"raw file {path}: expected {width} value(s) at point {p}, variable {v}")
            out[k : k + width] = nums
            k += width
    return out, pos


def _int(text: str, what: str, path: Path) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise RawFileError(f"raw file {path}: {what} is not an integer: {text.strip()!r}") from None
    if value < 0:
        raise RawFileError(f"raw file {path}: {what} is negative: {value}")
    return value
