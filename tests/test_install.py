"""memspice as a user installs it: a built wheel (not the editable checkout) imports every
subpackage and writes its files into the folder it runs in, not into its installation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import MODELS_DIR, REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, unpacked as pip installs a pure-Python wheel."""
    source, wheels = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheels")
    # a copy: setuptools leaves build/ in the tree it builds, and an old build/ would hide a missing file
    shutil.copytree(REPO / "memspice", source / "memspice", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("memspice-*.whl")
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


def run(site, cwd, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable checkout on sys.path
    return subprocess.run([sys.executable, "-m", "memspice", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_wheel_holds_every_module(installed, tmp_path):
    shipped = {p.relative_to(installed) for p in installed.glob("memspice/**/*.py")}
    assert shipped == {p.relative_to(REPO) for p in REPO.glob("memspice/**/*.py")}
    probe = ("import pkgutil, memspice; print(memspice.__file__); "
             "[__import__(m.name) for m in pkgutil.walk_packages(memspice.__path__, 'memspice.') "
             "if not m.name.endswith('__main__')]")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(installed))


@pytest.mark.ngspice
def test_commands_write_into_the_current_folder(installed, tmp_path):
    """`memspice models` and `memspice netlists` with no --out write models/ and netlists/ here, the
    same files as the repository's; a generated netlist then runs in ngspice, sandboxed, with the
    models it includes."""
    for command in ("models", "netlists"):
        done = run(installed, tmp_path, command)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(p.name for p in MODELS_DIR.iterdir()
                                                                            if p.suffix in (".lib", ".va"))
    assert run(installed, REPO, "models", "--check", "--out", str(tmp_path / "models")).returncode == 0
    done = run(installed, tmp_path, "simulate", "netlists/mif_step.cir", "--json")
    assert done.returncode == 0, done.stderr
    assert not list(installed.glob("**/models")) and not list(installed.glob("**/netlists"))


@pytest.mark.ngspice
def test_the_demo_runs_from_the_wheel(installed, tmp_path):
    """`memspice demo`, shortened, from the installed wheel in an empty folder: it trains, verifies in
    ngspice and leaves its run folder here, nothing in the installation."""
    done = run(installed, tmp_path, "demo", "--epochs", "1", "--samples", "2", "--workers", "1")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "runs" / "demo" / "verify.json").read_text())
    assert report["samples"] == 2 and report["agreement"] >= 0.5
    assert (tmp_path / "runs" / "demo" / "checkpoint.pt").is_file()
    assert not list(installed.glob("**/runs"))
