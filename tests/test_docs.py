"""The documentation: the site builds with warnings as errors (every page in the navigation, every
link and anchor found, every API page's module importable), and the README stays short."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_the_docs_build_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "api" / "index.html").read_text()
    assert "MemristiveSNN" in api and "CellMonitor" in api  # the reference holds the docstrings


def test_the_readme_fits_a_few_screens():
    assert len((REPO / "README.md").read_bytes()) <= 12_500
