"""Many ngspice jobs at once: one ``ngspice -b`` process per job, ``workers`` at a time.

Each job is a separate ngspice process with its own timeout, process group and temporary folder
(:func:`memspice.spice.runner.run_netlist`), so a job that hangs is killed with its children and
reported while the others go on; nothing is left behind. The threads here only wait on their
processes. An interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) starts no further job,
kills the running ones, hands every job that had finished to ``on_result`` and is raised again.
The same jobs run on a Dask cluster (:mod:`memspice.spice.cluster`) when one is given.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from tqdm import tqdm

from memspice.errors import ConfigError, MemspiceError, SpiceError
from memspice.netlist import text
from memspice.spice.rawfile import RawPlot
from memspice.spice.runner import run_netlist

if TYPE_CHECKING:
    from memspice.spice.cluster import Cluster

#: Where ngspice jobs run: that many at a time here (None: one per core), or on a Dask cluster.
Workers = Union[int, "Cluster", None]


@dataclass
class JobResult:
    """The outcome of one job: the task's value (a netlist job's plots), or the error that
    stopped it; wall time in s (the job's own, wherever it ran)."""

    name: str
    value: Any
    error: MemspiceError | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """One job per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def timed(task: Callable, name: str, shared: Any, args: tuple, cancel: threading.Event | None) -> JobResult:
    """``task(shared, *args, cancel=cancel)`` as a JobResult: its value, or the MemspiceError
    it raised (any other exception is a bug and propagates)."""
    start = time.perf_counter()
    try:
        return JobResult(name, task(shared, *args, cancel=cancel), None, time.perf_counter() - start)
    except MemspiceError as exc:
        return JobResult(name, None, exc, time.perf_counter() - start)


def run_tasks(
    task: Callable,
    jobs: Sequence[tuple[str, tuple]],
    workers: Workers = None,
    progress: bool = True,
    on_result: Callable[[JobResult], None] | None = None,
    shared: Any = None,
    desc: str = "ngspice",
) -> list[JobResult]:
    """Run ``task(shared, *args, cancel=...)`` for every ``(name, args)`` of ``jobs``; results in
    the order of ``jobs``. ``task`` waits on ngspice (or builds what it simulates); a job that
    raises a MemspiceError gives a result with that error, the others still run. ``on_result``
    is called with each result as its job ends (in this thread), e.g. to save it.

    ``workers``: how many jobs run at a time here (threads that wait on ngspice; default one per
    core), or a :class:`memspice.spice.cluster.Cluster` whose Dask workers run them, ``shared``
    sent to each worker once (``task`` must then be a module-level function and its arguments
    picklable)."""
    names = [text.name(name, "job name") for name, _ in jobs]
    if len(set(names)) != len(names):
        raise ConfigError("job names must be unique")
    if hasattr(workers, "run"):  # a Cluster
        return workers.run(task, jobs, shared, on_result=on_result, progress=progress, desc=desc)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer; got {workers!r}")

    cancel = threading.Event()
    results: dict[str, JobResult] = {}

    def take(result: JobResult) -> None:
        results[result.name] = result
        if on_result:
            on_result(result)

    executor = ThreadPoolExecutor(max_workers=workers)
    futures = [executor.submit(timed, task, name, shared, args, cancel) for name, args in jobs]
    try:
        with tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress, leave=False) as bar:
            for future in as_completed(futures):
                take(future.result())
                bar.update()
    except BaseException:  # Ctrl-C: stop everything, keep what finished
        cancel.set()
        executor.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if result.ok and result.name not in results:
                    take(result)
        raise
    executor.shutdown()
    return [results[name] for name in names]


def simulate_netlist(_shared: Any, netlist: str, timeout: float, name: str,
                     cancel: threading.Event | None = None) -> list[RawPlot]:
    """One netlist job of :func:`run_many`: its plots (module-level, so that a Dask worker can run it)."""
    return run_netlist(netlist, timeout=timeout, name=name, cancel=cancel)


def run_many(
    jobs: Sequence[tuple[str, str]],
    workers: Workers = None,
    timeout: float = 600.0,
    progress: bool = True,
    on_result: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run every ``(name, netlist text)`` of ``jobs`` (:func:`run_tasks`: ``workers`` local jobs
    at a time, or a Cluster); each result's value is the job's plots. A failing or timed-out job
    gives a result with its :class:`SpiceError`."""
    return run_tasks(simulate_netlist, [(name, (netlist, timeout, name)) for name, netlist in jobs], workers,
                     progress, on_result)


def raise_first_error(results: Sequence[JobResult]) -> None:
    """Raise the first failed job's error, naming how many jobs failed."""
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        raise SpiceError(f"{len(failed)} of {len(results)} ngspice jobs failed; {first.name}: {first.error}")
