"""models/ holds exactly what the definitions generate; `memspice models --check` guards it."""

from __future__ import annotations

from conftest import memspice

from memspice.codegen import files
from memspice.devices import MODELS


def test_committed_models_are_in_sync():
    result = memspice("models", "--check")
    assert result.returncode == 0, result.stderr
    assert "match their definitions" in result.stdout


def test_check_names_edited_missing_and_foreign_files(tmp_path):
    assert memspice("models", "--out", str(tmp_path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files.generated())
    assert memspice("models", "--out", str(tmp_path), "--check").returncode == 0

    lib = tmp_path / "mif.lib"
    edited = lib.read_text().replace("cm=1.6e-11", "cm=2e-11")
    assert edited != lib.read_text()
    lib.write_text(edited)
    (tmp_path / "synapse.va").unlink()
    (tmp_path / "old_model.lib").write_text("* a model nobody generates any more\n")
    result = memspice("models", "--out", str(tmp_path), "--check")
    assert result.returncode == 1
    for name in ("mif.lib", "synapse.va", "old_model.lib"):
        assert name in result.stderr
    assert "threshold_switch" not in result.stderr


def test_one_lib_and_one_va_per_model():
    assert set(files.generated()) == {f"{m}.{ext}" for m in MODELS for ext in ("lib", "va")}
    assert ".subckt mif mem params:" in files.generated()["mif.lib"]
