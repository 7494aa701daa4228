"""Synapse cells below their write thresholds: what the torch solver's fixed conductances assume.

The torch solver holds every synapse conductance fixed. A real memristor (and the netlist's
``synapse`` model) keeps its state only while the voltage across it stays between its RESET and
SET thresholds (``vreset`` < v < ``vset``, :mod:`memspice.devices.synapse`); beyond them a read
writes the cell, and ngspice then drifts away from the torch solution.

Every cell of a differential crossbar sees, row side minus column side (:mod:`memspice.circuit`),
``u_i - V_j`` (G⁺) or ``-u_i - V_j`` (G⁻), where the column is tied to the membrane ``V_j`` (the
loading term). Over all cells of a layer at one instant the extremes are therefore

    highest = max_i |u_i| - min_j V_j,        lowest = -(max_i |u_i| + max_j V_j),

read on the grid samples (rows are linear between samples; a membrane's peak between two
samples is not seen). :func:`cell_voltages` computes them per layer from a solution,
:class:`CellMonitor` checks them over a run: crossing a threshold is a
:class:`~memspice.errors.WriteThresholdError`, or, when the user allows it, one
:class:`~memspice.errors.CellWriteWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from memspice.devices import SYNAPSE
from memspice.errors import CellWriteWarning, WriteThresholdError


@dataclass(frozen=True)
class CellVoltage:
    """The extreme voltages (V) across any synapse cell of crossbar ``layer`` (1-based) over a
    run, row side minus column side: ``highest`` (compare with ``vset``) and ``lowest`` (with
    ``vreset``)."""

    layer: int
    highest: float
    lowest: float

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def cell_voltages(rows: Sequence[torch.Tensor], membranes: Sequence[torch.Tensor]) -> list[CellVoltage]:
    """Per layer, the extreme cell voltages for row voltages ``rows[k]`` (V, ``(batch, n_steps + 1,
    n_in)``) and the membranes the columns tie to, ``membranes[k]`` (V, ``(batch, n_steps + 1,
    n_out)``), instant by instant (module docstring)."""
    out = []
    for k, (u, v) in enumerate(zip(rows, membranes)):
        drive = torch.maximum(u.amax(-1), u.amin(-1).neg_())  # max |u|, without a tensor of |u|
        out.append(CellVoltage(k + 1, float((drive - v.amin(-1)).max()), float(-(drive + v.amax(-1)).max())))
    return out


def write_thresholds() -> tuple[float, float]:
    """``(vreset, vset)`` (V) of the synapse memristor (±2 V)."""
    params = SYNAPSE.resolve()
    return params["vreset"], params["vset"]


class CellMonitor:
    """The extreme cell voltages per layer over many solutions (a training run, an evaluation).
    :meth:`observe` raises :class:`~memspice.errors.WriteThresholdError` the first time a cell
    crosses a write threshold, or, with ``allow_writes``, warns once and goes on."""

    def __init__(self, allow_writes: bool = False, context: str = "the torch solver") -> None:
        self.allow_writes, self.context = allow_writes, context
        self.vreset, self.vset = write_thresholds()
        self.layers: dict[int, CellVoltage] = {}
        self.warned = False

    def record(self, cells: Sequence[CellVoltage] | None) -> None:
        """Keep the extremes per layer, without judging them."""
        for cell in cells or []:
            seen = self.layers.get(cell.layer, cell)
            self.layers[cell.layer] = CellVoltage(cell.layer, max(seen.highest, cell.highest),
                                                  min(seen.lowest, cell.lowest))

    def observe(self, cells: Sequence[CellVoltage] | None) -> None:
        """Record ``cells`` and raise (or, allowed, warn once) when one reaches a write threshold."""
        self.record(cells)
        over = [c for c in cells or [] if c.highest >= self.vset or c.lowest <= self.vreset]
        if not over or self.warned:
            return
        message = (f"{self.context}: synapse cells reach their write thresholds ({self.vreset:g} V, "
                   f"+{self.vset:g} V): " + "; ".join(f"layer {c.layer}: {c.lowest:+.3f} V to {c.highest:+.3f} V"
                                                       for c in over)
                   + ". The torch solver holds conductances fixed; a chip (and ngspice with memristor synapses) "
                     "would rewrite them. Lower the input voltages (v_high)")
        if not self.allow_writes:
            raise WriteThresholdError(message + ", or allow it with --allow-cell-writes")
        warnings.warn(message, CellWriteWarning, stacklevel=2)
        self.warned = True

    @property
    def margin(self) -> float | None:
        """The smallest distance (V) from any cell voltage seen to its write threshold (negative:
        crossed; ``None`` before any solution)."""
        if not self.layers:
            return None
        return min(min(self.vset - c.highest, c.lowest - self.vreset) for c in self.layers.values())

    def to_json(self) -> list[dict]:
        return [self.layers[k].to_json() for k in sorted(self.layers)]
