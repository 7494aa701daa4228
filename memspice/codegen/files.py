"""The generated model files (``models/*.lib``, ``models/*.va``): writing them and checking them."""

from __future__ import annotations

from pathlib import Path

from memspice.codegen import spice, verilog_a
from memspice.devices import MODELS
from memspice.fileio import stale_files, write_files

#: Where ``memspice models`` writes: ``models/`` in the current folder (the repository's, run from its root).
DEFAULT_DIR = Path("models")


def generated() -> dict[str, str]:
    """File name -> content, for every model: one ngspice library and one Verilog-A module each."""
    files = {}
    for model in MODELS.values():
        files[f"{model.name}.lib"] = spice.library(model)
        files[f"{model.name}.va"] = verilog_a.module(model)
    return files


def write(out_dir: str | Path = DEFAULT_DIR) -> list[Path]:
    """Write every generated file into ``out_dir`` (atomically); returns the paths."""
    return write_files(out_dir, generated())


def stale(out_dir: str | Path = DEFAULT_DIR) -> list[str]:
    """Files in ``out_dir`` that differ from what the definitions generate (see :func:`stale_files`)."""
    return stale_files(out_dir, generated(), (".lib", ".va"))
