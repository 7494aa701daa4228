"""Synapse cells against their write thresholds: the extremes the solver reports are those of every
cell of the netlist's crossbars, and crossing a threshold stops a run unless the user allows it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from memspice.data import make_encoder
from memspice.errors import CellWriteWarning, WriteThresholdError
from memspice.nn import MemristiveSNN, Readout
from memspice.solver.cells import CellMonitor, CellVoltage, cell_voltages
from memspice.train.loop import evaluate


def every_cell(rows: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
    """Row side minus column side of every G⁺ (u - V) and G⁻ (-u - V) cell, the netlist's way."""
    u, m = rows.unsqueeze(-1), v.unsqueeze(-2)  # (batch, steps, n_in, 1), (batch, steps, 1, n_out)
    cells = torch.cat([u - m, -u - m], dim=-1)
    return float(cells.max()), float(cells.min())


def test_the_extremes_are_those_of_every_cell():
    generator = torch.Generator().manual_seed(1)
    rows = 3 * torch.rand(4, 7, 5, generator=generator) - 1.5
    v = torch.rand(4, 7, 3, generator=generator) - 0.4
    (found,) = cell_voltages([rows], [v])
    assert (found.highest, found.lowest) == pytest.approx(every_cell(rows, v), abs=1e-6)


def test_a_network_solution_reports_every_crossbar():
    model = MemristiveSNN((6, 4, 3), solver=200e-9)
    inputs = make_encoder("direct", v_low=0.0, v_high=1.5)(torch.rand(3, 6), 30)
    with torch.no_grad():
        solution = model(inputs)
    rows = [inputs, model.buffer_gain * solution.v[0]]
    assert [c.layer for c in solution.cells] == [1, 2]
    for cell, u, v in zip(solution.cells, rows, solution.v):
        assert (cell.highest, cell.lowest) == pytest.approx(every_cell(u, v), abs=1e-6)


def test_the_monitor_stops_at_a_write_threshold_unless_allowed():
    inside, beyond = [CellVoltage(1, 1.8, -1.9)], [CellVoltage(1, 1.2, -2.07), CellVoltage(2, 1.0, -1.5)]
    monitor = CellMonitor()
    monitor.observe(inside)
    assert monitor.margin == pytest.approx(0.1)
    with pytest.raises(WriteThresholdError, match=r"layer 1: -2\.070 V.*--allow-cell-writes"):
        monitor.observe(beyond)
    allowed = CellMonitor(allow_writes=True)
    with pytest.warns(CellWriteWarning, match="write thresholds"):
        allowed.observe(beyond)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        allowed.observe(beyond)  # once per run
    assert allowed.margin == pytest.approx(-0.07)
    assert allowed.to_json() == [{"layer": 1, "highest": 1.2, "lowest": -2.07},
                                 {"layer": 2, "highest": 1.0, "lowest": -1.5}]


@pytest.mark.parametrize("v_high, crosses", [(1.0, False), (1.95, True)])
def test_evaluation_refuses_inputs_that_would_write_the_cells(v_high, crosses):
    """A white pixel at 1.95 V passes the encoder's |v| < 2 V, but a G⁻ cell sees -u - V: with the
    membrane above 0 V it is beyond the RESET threshold."""
    model = MemristiveSNN((8, 4))
    encoder = make_encoder("direct", v_low=0.0, v_high=v_high)
    x, y = np.ones((4, 8), dtype=np.float32), np.zeros(4, dtype=np.int64)
    args = (model, Readout("membrane-mean"), encoder, x, y, 30, 4, torch.float32)
    if crosses:
        with pytest.raises(WriteThresholdError, match="reach their write thresholds"):
            evaluate(*args)
    else:
        result = evaluate(*args)
        assert 0 < result["cell_margin"] < 2 and result["cell_voltages"][0]["lowest"] < -v_high
