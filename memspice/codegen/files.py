"""The generated model files (``models/*.lib``, ``models/*.va``): writing them and checking them."""

from __future__ import annotations

from pathlib import Path

from memspice.codegen import spice, verilog_a
from memspice.devices import MODELS
from memspice.fileio import atomic_write_text

#: The repository's models/ folder.
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "models"


def generated() -> dict[str, str]:
    """File name -> content, for every model: one ngspice library and one Verilog-A module each."""
    files = {}
    for model in MODELS.values():
        files[f"{model.name}.lib"] = spice.library(model)
        files[f"{model.name}.va"] = verilog_a.module(model)
    return files


def write(out_dir: str | Path = DEFAULT_DIR) -> list[Path]:
    """Write every generated file into ``out_dir`` (atomically); returns the paths."""
    return [atomic_write_text(Path(out_dir) / name, text) for name, text in generated().items()]


def stale(out_dir: str | Path = DEFAULT_DIR) -> list[str]:
    """Names of the files in ``out_dir`` that differ from what the definitions generate: missing
    or edited generated files, and ``.lib``/``.va`` files no model generates any more."""
    out_dir = Path(out_dir)
    expected = generated()
    bad = [n for n, text in expected.items() if not (out_dir / n).is_file() or (out_dir / n).read_text() != text]
    present = {p.name for p in out_dir.glob("*.lib")} | {p.name for p in out_dir.glob("*.va")}
    return sorted(bad + sorted(present - set(expected)))
