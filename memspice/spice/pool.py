"""Many ngspice jobs at once: one ``ngspice -b`` process per job, ``workers`` at a time.

Each job is a separate ngspice process with its own timeout, process group and temporary folder
(:func:`memspice.spice.runner.run_netlist`), so a job that hangs is killed with its children and
reported while the others go on; nothing is left behind. The threads here only wait on their
processes. An interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) starts no further job,
kills the running ones, hands every job that had finished to ``on_result`` and is raised again.
To spread verification over several machines, split the job list and run one share per machine:
jobs are independent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from tqdm import tqdm

from memspice.errors import MemspiceError, SpiceError
from memspice.netlist import text
from memspice.spice.rawfile import RawPlot
from memspice.spice.runner import run_netlist


@dataclass
class JobResult:
    """The outcome of one job: its plots, or the error that stopped it; wall time in s."""

    name: str
    plots: list[RawPlot] | None
    error: MemspiceError | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """One job per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_many(
    jobs: Sequence[tuple[str, str]],
    workers: int | None = None,
    timeout: float = 600.0,
    progress: bool = True,
    on_result: Callable[[JobResult], None] | None = None,
) -> list[JobResult]:
    """Run every ``(name, netlist text)`` of ``jobs``; results in the order of ``jobs``. A failing
    or timed-out job gives a result with its :class:`SpiceError`, the others still run.
    ``on_result`` is called with each result as its job ends (in this thread), e.g. to save it."""
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
    names = [text.name(name, "job name") for name, _ in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")

    cancel = threading.Event()

    def one(name: str, netlist: str) -> JobResult:
        start = time.perf_counter()
        try:
            plots = run_netlist(netlist, timeout=timeout, name=name, cancel=cancel)
            return JobResult(name, plots, None, time.perf_counter() - start)
        except MemspiceError as exc:
            return JobResult(name, None, exc, time.perf_counter() - start)

    results: dict[str, JobResult] = {}

    def take(result: JobResult) -> None:
        results[result.name] = result
        if on_result:
            on_result(result)

    executor = ThreadPoolExecutor(max_workers=workers)
    futures = [executor.submit(one, name, netlist) for name, netlist in jobs]
    try:
        with tqdm(total=len(jobs), desc="ngspice", unit="job", disable=not progress, leave=False) as bar:
            for future in as_completed(futures):
                take(future.result())
                bar.update()
    except BaseException:  # Ctrl-C: stop everything, keep what finished
        cancel.set()
        executor.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if future.done() and not future.cancelled():
                result = future.result()
                if result.ok and result.name not in results:
                    take(result)
        raise
    executor.shutdown()
    return [results[name] for name in names]


def raise_first_error(results: Sequence[JobResult]) -> None:
    """Raise the first failed job's error, naming how many jobs failed."""
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        raise SpiceError(f"{len(failed)} of {len(results)} ngspice jobs failed; {first.name}: {first.error}")
