"""Shared helpers: random operating points of a device model, within its valid ranges."""

from __future__ import annotations

import ctypes
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memspice.devices import MODELS, DeviceModel
from memspice.errors import ParameterError

#: The repository: its generated models/ and netlists/ (the commands write into the current folder).
REPO = Path(__file__).resolve().parent.parent
MODELS_DIR, NETLISTS_DIR = REPO / "models", REPO / "netlists"

# Port-voltage ranges (V) that cover each model's interesting regions: both switching branches
# of the threshold switch, reads and writes of the synapse, the whole spike of the neuron.
VOLTAGE_RANGE = {"threshold_switch": (-1.0, 1.5), "synapse": (-3.5, 3.5), "mif": (-0.5, 1.0),
                 "relaxation_neuron": (-0.5, 1.0)}
N_POINTS = 100


def random_parameters(model: DeviceModel, rng: np.random.Generator) -> dict[str, float]:
    """Parameters drawn around the defaults (×e^±0.5, or ±0.1 V-sized shifts), all valid."""
    for _ in range(1000):
        values = {}
        for p in model.parameters:
            if p.default != 0 and (p.lower >= 0 or p.upper <= 0):
                value = p.default * math.exp(rng.uniform(-0.5, 0.5))
            else:
                value = p.default + rng.uniform(-0.1, 0.1)
            values[p.name] = min(max(value, p.lower), p.upper)
        try:
            return model.resolve(values)
        except ParameterError:
            continue
    raise RuntimeError(f"could not draw valid parameters for {model.name}")


def random_points(model: DeviceModel, n: int = N_POINTS, seed: int = 0,
                  voltage_range: tuple[float, float] | None = None):
    """``n`` operating points: (port voltages (n, ports), states (n, states), parameter dicts);
    the port voltages in ``voltage_range`` (V; default: the shipped model's :data:`VOLTAGE_RANGE`)."""
    rng = np.random.default_rng(seed)
    lo, hi = voltage_range or VOLTAGE_RANGE[model.name]
    v = rng.uniform(lo, hi, size=(n, len(model.ports)))
    x = np.stack([rng.uniform(s.lower, s.upper, size=n) for s in model.states], axis=-1)
    params = [random_parameters(model, rng) for _ in range(n)]
    return v, x, params


def _missing_simulators() -> dict[str, str]:
    """The ngspice markers whose simulator this machine lacks, with the reason to skip."""
    from memspice.spice.shared import INSTALL_HINT, library_path

    missing = {}
    if shutil.which("ngspice") is None:
        missing["ngspice"] = "ngspice is not installed: apt-get install -y ngspice (or make setup)"
    try:
        ctypes.CDLL(library_path())
    except Exception:  # not installed, or not a loadable library: the runner says which
        missing["libngspice"] = f"libngspice does not load: {INSTALL_HINT}"
    return missing


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``ngspice`` or ``libngspice`` skip, saying why, where that simulator is absent."""
    missing = _missing_simulators()
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Copies of failing netlists go to the session's temporary folder, not the user's cache
    (the environment reaches `memspice` subprocesses too)."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


@pytest.fixture(params=sorted(MODELS))
def model(request) -> DeviceModel:
    return MODELS[request.param]


def torch_reference(model: DeviceModel, v: np.ndarray, x: np.ndarray, params: list[dict[str, float]]):
    """Currents, charges and derivatives from the torch functions, one point at a time (float64)."""
    import torch

    from memspice.codegen.torch_functions import torch_device

    dev = torch_device(model)
    out = [dev.evaluate(torch.tensor(v[k]), torch.tensor(x[k]), params[k]) for k in range(len(v))]
    return tuple(np.stack([getattr(o, f).numpy() for o in out]) for f in ("currents", "charges", "derivatives"))


def assert_close(actual, expected, rtol: float, what: str) -> None:
    """Elementwise |a - e| <= rtol·|e| + rtol·1e-6·max|e| (a floor for values near zero)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    floor = rtol * 1e-6 * np.max(np.abs(expected)) if expected.size else 0.0
    err = np.abs(actual - expected)
    bad = err > rtol * np.abs(expected) + floor
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} values differ; worst at {np.unravel_index(np.argmax(err), err.shape)}: "
        f"{actual.flat[np.argmax(err)]!r} vs {expected.flat[np.argmax(err)]!r}"
    )


def memspice_stops(*args: str) -> subprocess.CompletedProcess:
    """`memspice ARGS` run in this process, for commands that stop at their input checks: the same
    exit status, output and error message as :func:`memspice`, without a new interpreter and
    torch for each (seconds per call). What the command changes in the process (torch's threads,
    the warning printer, the SIGTERM handler) is put back."""
    import contextlib
    import io
    import signal
    import warnings

    import torch

    from memspice import cli

    out, err = io.StringIO(), io.StringIO()
    threads, show, sigterm = torch.get_num_threads(), warnings.showwarning, signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        torch.set_num_threads(threads)
        warnings.showwarning = show
        signal.signal(signal.SIGTERM, sigterm)
    return subprocess.CompletedProcess(["memspice", *args], code or 0, out.getvalue(), err.getvalue())


def memspice(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the `memspice` command as a user would (in the folder ``cwd``); returns the completed process."""
    return subprocess.run([sys.executable, "-m", "memspice", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def default_sigint() -> None:
    """For ``preexec_fn``, in a child before it execs: Ctrl-C's default action, as a terminal's
    foreground job has it. A process that starts with SIGINT ignored keeps it ignored (Python
    installs no handler then), and a pytest worker may hand an ignored SIGINT on to its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
