"""``python -m memspice.bench.worker``: one training-throughput measurement in a fresh process
(its peak memory is then its own). Reads ``{"kind", "measure", "settings", "threads"}`` as JSON
on stdin, prints the result as one JSON line."""

from __future__ import annotations

import json
import sys

from memspice.bench.measure import BenchSettings, measure_training


def main() -> None:
    job = json.loads(sys.stdin.read())
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in job["settings"].items()}
    print(json.dumps(measure_training(job["kind"], job["measure"], BenchSettings(**values), int(job["threads"]))))


if __name__ == "__main__":
    main()
