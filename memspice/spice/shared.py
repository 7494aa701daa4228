"""In-process ngspice through PySpice's shared-library interface (``libngspice``).

The shared library holds one simulator per process and is not thread-safe, so every run takes a
process-wide lock; batch work belongs in subprocesses (:mod:`memspice.spice.pool`). The library
is found by itself: ``NGSPICE_LIBRARY_PATH`` when set, otherwise the system's ``libngspice``
(Debian's ``libngspice.so.0``). Results come back as the same :class:`RawPlot` objects as the
subprocess runner's, with the same signal names (``v(node)``, ``i(source)``).

The in-process simulator cannot be sandboxed, so it gets the same default deny as the batch runner
(no control language, in the deck or its includes, unless ``allow_control``) and a private
working folder: the library is loaded from an empty one (it reads a ``.spiceinit`` from its
working folder), and each run changes the process's working folder to a fresh private one, where
relative ``.include`` paths resolve and anything ngspice writes lands, removed afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from memspice.errors import SpiceError
from memspice.spice.rawfile import RawPlot
from memspice.spice.runner import failure_lines
from memspice.spice.safety import netlist_files

INSTALL_HINT = "install it with `apt-get install -y libngspice0` or point NGSPICE_LIBRARY_PATH at libngspice.so"
_LOCK = threading.Lock()
_POLL_S = 0.01


def library_path() -> str:
    """Where libngspice is: ``$NGSPICE_LIBRARY_PATH``, else the system library's name."""
    configured = os.environ.get("NGSPICE_LIBRARY_PATH")
    if configured:
        if not Path(configured).is_file():
            raise SpiceError(f"NGSPICE_LIBRARY_PATH={configured!r} is not a file; {INSTALL_HINT}")
        return configured
    found = ctypes.util.find_library("ngspice")
    if found is None:
        raise SpiceError(f"the ngspice shared library (libngspice) is not installed; {INSTALL_HINT}")
    return found


_instance = None


def _ngspice():
    """The process's one PySpice ``NgSpiceShared``, loaded on first use."""
    global _instance
    if _instance is None:
        path = library_path()
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared

        class _NgSpice(NgSpiceShared):
            @staticmethod
            def _background_thread_running(is_running, ngspice_id, user_data):
                # PySpice 1.5's callback returns None where ngspice's C API expects an int.
                NgSpiceShared._background_thread_running(is_running, ngspice_id, user_data)
                return 0

        # PySpice logs ngspice's stderr and warns about every ngspice newer than it knows (39 works,
        # measured); memspice reports ngspice's messages in its SpiceError instead.
        logging.getLogger("PySpice.Spice.NgSpice.Shared").setLevel(logging.CRITICAL)
        _NgSpice.LIBRARY_PATH = path.replace("{", "{{").replace("}", "}}")  # PySpice .format()s it
        try:
            with _private_folder():  # no .spiceinit of the caller's folder
                _instance = _NgSpice.new_instance()
        except OSError as exc:
            raise SpiceError(f"cannot load the ngspice shared library {path!r}: {exc}; {INSTALL_HINT}") from None
    return _instance


def run_shared(
    netlist: str, timeout: float = 120.0, name: str = "circuit", allow_control: bool = False
) -> list[RawPlot]:
    """Simulate the netlist text in this process; returns the last analysis as a one-element
    list of :class:`RawPlot` (like :func:`memspice.spice.runner.run_netlist`). Raises
    :class:`SpiceError` with ngspice's message on failure, or when ``timeout`` s pass (the
    background simulation is halted). While it runs, the process's working folder is a private
    temporary folder (relative include paths resolve there: give absolute ones)."""
    with _LOCK, _private_folder() as folder:
        netlist_files(folder / f"{name}.cir", folder, allow_control, where=name, text=netlist)
        ng = _ngspice()
        try:
            return [_run(ng, netlist, timeout, name)]
        finally:
            _quietly(ng, "remcirc")
            _quietly(ng, "destroy all")


@contextlib.contextmanager
def _private_folder() -> Iterator[Path]:
    """Work in a new owner-only temporary folder, then go back and remove it."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="memspice-shared-") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(previous)


def _run(ng, netlist: str, timeout: float, name: str) -> RawPlot:
    from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError, NgSpiceCommandError

    try:
        ng.load_circuit(netlist)
    except (NgSpiceCircuitError, NgSpiceCommandError, NameError):
        pass  # ngspice's own lines below say what went wrong
    _raise_on_failure(ng, name, "loading the circuit")
    ng.clear_output()
    # ngSpice_running() and the bg_ commands are ngspice's C API (PySpice keeps the handle private):
    # a background run is what a timeout can halt.
    ng._ngspice_shared.ngSpice_Command(b"bg_run")
    deadline = time.monotonic() + timeout
    time.sleep(_POLL_S)
    while ng._ngspice_shared.ngSpice_running():
        if time.monotonic() > deadline:
            ng._ngspice_shared.ngSpice_Command(b"bg_halt")
            while ng._ngspice_shared.ngSpice_running():
                time.sleep(_POLL_S)
            raise SpiceError(f"ngspice (shared library) did not finish within {timeout:g} s and was halted",
                             netlist=name)
        time.sleep(_POLL_S)
    _raise_on_failure(ng, name, "the simulation")
    plot_name = ng.last_plot
    if plot_name == "const":
        raise SpiceError("ngspice (shared library) produced no analysis: does the netlist have a .tran card?",
                         netlist=name)
    return _to_raw_plot(ng.plot(None, plot_name), plot_name)


def _raise_on_failure(ng, name: str, stage: str) -> None:
    output = f"{ng.stdout}\n{ng.stderr}"
    failures = failure_lines(output)
    if failures:
        raise SpiceError(f"ngspice (shared library) failed in {stage}: {'; '.join(failures)}",
                         netlist=name, output=output)


def _to_raw_plot(plot, plot_name: str) -> RawPlot:
    variables, kinds = {}, {}
    for vector in plot.values():
        data = np.array(vector._data)
        if vector.simplified_name == "time":
            key, kind = "time", "time"
        elif vector.is_voltage_node:
            key, kind = f"v({vector.simplified_name.lower()})", "voltage"
        elif vector.is_branch_current:
            key, kind = f"i({vector.simplified_name.lower()})", "current"
        else:
            continue
        variables[key] = data
        kinds[key] = kind
    if "time" in variables:  # the raw file lists time first; so do we
        variables = {"time": variables.pop("time"), **variables}
    return RawPlot(title="", plotname=plot_name, flags="real", variables=variables, kinds=kinds)


def _quietly(ng, command: str) -> None:
    ng._ngspice_shared.ngSpice_Command(command.encode())
