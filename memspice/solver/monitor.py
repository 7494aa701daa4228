"""What a run checks in every solution it computes: the solver's local error against its tolerance
(:mod:`memspice.solver.accuracy`) and the synapse cells' voltages against their write thresholds
(:mod:`memspice.solver.cells`), each warned about (or refused) once per run."""

from __future__ import annotations

from memspice.solver.accuracy import AccuracyMonitor
from memspice.solver.cells import CellMonitor
from memspice.solver.transient import Solution


class SolutionMonitor:
    """``strict``: a local error above the tolerance is an error, not a warning; ``allow_cell_writes``:
    a cell voltage beyond a write threshold is a warning, not an error. ``context`` names the run
    in the messages."""

    def __init__(self, strict: bool = False, allow_cell_writes: bool = False,
                 context: str = "the torch solver") -> None:
        self.context = context
        self.accuracy = AccuracyMonitor(strict, context)
        self.cells = CellMonitor(allow_cell_writes, context)

    def record(self, solution: Solution) -> None:
        """Keep ``solution``'s figures without judging them (a part of a run whose monitor judges)."""
        self.accuracy.record(solution.errors)
        self.cells.record(solution.cells)

    def observe(self, solution: Solution) -> None:
        """Keep ``solution``'s figures; warn or raise the first time a limit is exceeded."""
        self.accuracy.observe(solution.errors)
        self.cells.observe(solution.cells)

    def to_json(self) -> dict:
        """The figures a report carries: ``error_ratio`` and ``local_error`` (per layer),
        ``cell_voltages`` (per crossbar) and ``cell_margin`` (V to the nearest write threshold)."""
        return {"error_ratio": self.accuracy.worst_ratio, "local_error": self.accuracy.to_json(),
                "cell_voltages": self.cells.to_json(), "cell_margin": self.cells.margin}


def summary_lines(report: dict) -> list[str]:
    """The lines a report's text shows for :meth:`SolutionMonitor.to_json`'s figures: the worst
    local error estimate and the cells' voltages (none for reports that predate them)."""
    lines = []
    errors = report.get("local_error")
    if errors:
        worst = max(errors, key=lambda e: e["ratio"])
        verdict = "within it" if worst["ratio"] <= 1 else f"EXCEEDED: try dt = {worst['suggested_dt']:.3g} s"
        lines.append(f"  solver     largest local error estimate {worst['ratio']:.3g}x the tolerance (layer "
                     f"{worst['layer']}, t = {worst['time']:.3g} s; {verdict})")
    cells = report.get("cell_voltages")
    if cells:
        low, high = min(c["lowest"] for c in cells), max(c["highest"] for c in cells)
        margin = report["cell_margin"]
        verdict = f"{margin:.3f} V below" if margin > 0 else "AT OR BEYOND"
        lines.append(f"  cells      synapse cell voltages from {low:+.3f} to {high:+.3f} V, {verdict} the nearest "
                     "write threshold")
    return lines
