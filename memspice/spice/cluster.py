"""Dask distributed as the engine for many ngspice jobs (the optional extra ``memspice[cluster]``).

``Cluster("local:4")`` starts a LocalCluster of 4 single-threaded worker processes on this
machine; ``Cluster("tcp://HOST:8786")`` uses a scheduler that is already running (started by hand
with ``dask scheduler`` / ``dask worker``, or by dask-jobqueue on Slurm, dask-kubernetes, SSH...).
Jobs go to whichever worker is free; a job whose worker dies is run again on another one by the
scheduler (up to ``distributed.scheduler.allowed-failures`` times); what every job shares (a
trained network) is a task of its own, so a worker that dies with it costs a recomputation, not
the run (scattered data would be lost with it: Dask's memory manager keeps one replica). ngspice
runs on the workers, under each worker's own sandbox and timeout (:mod:`memspice.spice.runner`);
with the bubblewrap sandbox it dies with its worker.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from memspice.errors import MemspiceError, SpiceError
from memspice.spice.pool import JobResult, timed

_LOCAL = re.compile(r"local(?::([1-9][0-9]*))?")
_ADDRESS = re.compile(r"(tcp|tls|inproc|ucx|ws|wss)://\S+")


def check_spec(spec: str) -> str:
    """``spec`` if it names a cluster: ``local``, ``local:N`` (N worker processes) or a scheduler
    address (``tcp://HOST:PORT``, ``tls://...``); else a MemspiceError saying what is allowed."""
    if not isinstance(spec, str) or not (_LOCAL.fullmatch(spec) or _ADDRESS.fullmatch(spec)):
        raise MemspiceError(f"cluster {spec!r}: expected local, local:N (N worker processes) or a Dask scheduler "
                            "address such as tcp://HOST:8786")
    return spec


class Cluster:
    """A Dask client on a local or existing cluster, as a context manager (a local cluster is
    shut down, its workers with it, on exit)."""

    def __init__(self, spec: str, timeout: float = 30.0):
        self.spec = check_spec(spec)
        self.timeout = timeout
        self.client = None
        self._local = None

    def __enter__(self) -> Cluster:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise MemspiceError("running ngspice on a Dask cluster needs Dask distributed: "
                                "pip install 'memspice[cluster]'") from None
        local = _LOCAL.fullmatch(self.spec)
        try:
            if local:
                workers = int(local.group(1) or 0) or None  # None: Dask's default, one per core
                self._local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
                self.client = Client(self._local, timeout=self.timeout)
            else:
                self.client = Client(self.spec, timeout=self.timeout)
        except OSError as exc:
            self.__exit__(None, None, None)
            raise MemspiceError(f"cluster {self.spec}: cannot connect to the Dask scheduler ({exc})") from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.client is not None:
            self.client.close()
        if self._local is not None:
            self._local.close()
        self.client = self._local = None

    def workers(self) -> int:
        """How many workers the scheduler has now."""
        return len(self.client.scheduler_info()["workers"])

    def run(self, task: Callable, jobs: Sequence[tuple[str, tuple]], shared: Any = None,
            on_result: Callable[[JobResult], None] | None = None, progress: bool = True,
            desc: str = "ngspice") -> list[JobResult]:
        """:func:`memspice.spice.pool.run_tasks` on this cluster: ``task(shared, *args)`` per job,
        results in the order of ``jobs``. An interrupt cancels the jobs not yet finished, hands
        the finished ones to ``on_result`` and is raised again."""
        if self.client is None:
            raise RuntimeError("use the Cluster as a context manager: with Cluster(spec) as cluster: ...")
        run = uuid.uuid4().hex[:8]
        if shared is not None:
            shared = self.client.submit(_hold, shared, key=f"shared-{run}", pure=False)
        futures = {self.client.submit(timed, task, name, shared, args, None, key=f"{name}-{run}", pure=False): name
                   for name, args in jobs}
        results: dict[str, JobResult] = {}

        def take(future) -> None:
            result = _result(future, futures[future])
            results[result.name] = result
            if on_result:
                on_result(result)

        from distributed import as_completed

        try:
            with tqdm(total=len(futures), desc=desc, unit="job", disable=not progress, leave=False) as bar:
                for future in as_completed(futures):
                    take(future)
                    bar.update()
        except BaseException:
            self.client.cancel(list(futures), force=True)
            for future, name in futures.items():
                if future.status == "finished" and name not in results:
                    take(future)
            raise
        return [results[name] for _, name in futures.items()]


def _hold(value: Any) -> Any:
    """``value``: as a task, what the jobs share can be rebuilt from the graph when its worker dies."""
    return value


def _result(future, name: str) -> JobResult:
    """A finished future's JobResult; a job that killed its workers is one failed job, any
    other exception (a bug in the task) is raised."""
    from distributed.scheduler import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        return JobResult(name, None, SpiceError(f"the Dask workers running it died each time it ran ({exc})"), 0.0)
