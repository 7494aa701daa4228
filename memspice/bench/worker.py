"""``python -m memspice.bench.worker``: one training-throughput measurement in a fresh process
(its peak memory is then its own). Reads ``{"kind", "settings", "threads"}`` as JSON on stdin,
prints the result as one JSON line."""

from __future__ import annotations

import json
import sys

from memspice.bench.measure import BenchSettings, train_throughput


def main() -> None:
    job = json.loads(sys.stdin.read())
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in job["settings"].items()}
    print(json.dumps(train_throughput(job["kind"], BenchSettings(**values), int(job["threads"]))))


if __name__ == "__main__":
    main()
