"""Resistive wires: a crossbar side with line resistance as the exact linear multiport at its ports.

Layout (the netlister writes the same circuit, :func:`memspice.netlist.circuits.network_netlist`):
a layer's cells are split into tiles of at most ``tile × tile`` cells. In each tile, row ``i`` is
a wire driven at its first column by the row's source, with one resistor ``r`` (Ω) before each
cell; column ``j`` is a wire from its first row down to its last, with one resistor ``r`` after
each cell, the last one into the membrane of neuron ``j``. Every tile's columns meet at their
neuron. A cell joins its row wire and its column wire.

The network of wires and cells is linear, so for given row voltages ``u`` (V) and membrane
voltages ``V`` (V) its currents into the membranes are exactly

    I = u @ P - V @ Q.T

with ``P`` ``(n_in, n_out)`` and ``Q`` ``(n_out, n_out)`` in S, found once per chip by solving the
tile's nodal equations (sparse LU) for every port. Without wires ``P = G`` and ``Q`` is the
diagonal of column sums: the ideal crossbar's equation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg


def tiles(n: int, tile: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` of each tile along an axis of ``n`` cells (one tile when ``tile`` is None)."""
    step = tile or n
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def side_ports(g: np.ndarray, r: float, tile: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(P, Q)`` (S) of one crossbar side of conductances ``g`` (S, ``(n_in, n_out)``) with ``r``
    (Ω, > 0) per wire segment, in tiles of ``tile`` (module docstring)."""
    g = np.asarray(g, dtype=float)
    n_in, n_out = g.shape
    transfer, load = np.zeros((n_in, n_out)), np.zeros((n_out, n_out))
    for r0, r1 in tiles(n_in, tile):
        for c0, c1 in tiles(n_out, tile):
            p, q = _tile_ports(g[r0:r1, c0:c1], 1.0 / r)
            transfer[r0:r1, c0:c1] += p
            load[c0:c1, c0:c1] += q
    return transfer, load


def _tile_ports(g: np.ndarray, gw: float) -> tuple[np.ndarray, np.ndarray]:
    """One tile: ``g`` ``(m, p)`` cells, wire segments of conductance ``gw`` (S)."""
    m, p = g.shape
    cells = m * p
    row = np.arange(cells).reshape(m, p)  # the cell's node on its row wire
    col = cells + row  # the cell's node on its column wire
    rows, cols, values = [], [], []

    def conductance(a: np.ndarray, b: np.ndarray | None, value) -> None:
        """A conductance between nodes ``a`` and ``b`` (``None``: a port, on the right-hand side)."""
        value = np.broadcast_to(value, a.shape).ravel()
        a = a.ravel()
        rows.append(a), cols.append(a), values.append(value)
        if b is not None:
            b = b.ravel()
            rows.extend((b, a, b)), cols.extend((b, b, a)), values.extend((value, -value, -value))

    conductance(row, col, g)  # the cells
    conductance(row[:, 1:], row[:, :-1], gw)  # row wires between cells
    conductance(row[:, 0], None, gw)  # row drivers to the first cell
    conductance(col[1:, :], col[:-1, :], gw)  # column wires between cells
    conductance(col[-1, :], None, gw)  # the last cell to the membrane
    matrix = sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(2 * cells, 2 * cells))
    # symmetric positive definite: a symmetric ordering, no pivoting
    lu = sparse_linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                            options={"SymmetricMode": True})
    # Solved for the node voltages' departures from the ideal crossbar's (every row node at its
    # driver's voltage, every column node at its membrane's): those are driven by the cells' ideal
    # currents alone and are small, so the currents they give lose no digits to cancellation. A port
    # at 1 V drives them: row driver i with g_ij out of row i's nodes into its columns', membrane j
    # the opposite along column j. The output I_j = gw (c_last,j - V_j) is gw times the departure at
    # column j's last node, found for every port at once from the adjoint solutions y_j (K is
    # symmetric): I_j = gw y_j . rhs.
    unit = np.zeros((2 * cells, p))
    unit[col[-1, :], np.arange(p)] = 1.0
    adjoint = lu.solve(unit)
    across = adjoint[col] - adjoint[row]  # (m, p, p): cell (i, k)'s column node minus row node, per output j
    transfer = gw * np.einsum("ik,ikj->ij", g, across)
    load = gw * np.einsum("ik,ikj->jk", g, across)
    return transfer, load
