"""The emitted SPICE expressions, evaluated by ngspice itself, match the torch functions.

One ``.op`` per model: 100 instances of the subcircuit with their ports and state nodes pinned
by voltage sources. A source's branch current is then exactly what the B-sources draw:
``i(V_port) = -(current into the device)`` and ``i(V_state) = dx/dt``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, random_points, torch_reference

from memspice.codegen import spice
from memspice.devices import MODELS
from memspice.spice.runner import run_netlist


def bench(model, v, x, params) -> str:
    lines = [f"* pointwise bench for {model.name}", spice.subckt(model, expose_states=True).rstrip()]
    for k in range(len(v)):
        nodes = [f"p{k}_{p}" for p in model.ports] + [f"s{k}_{s}" for s in model.state_nodes]
        values = [*v[k], *x[k]]
        lines += [f"Vpin{k}_{i} {node} 0 DC {float(value)!r}" for i, (node, value) in enumerate(zip(nodes, values))]
        overrides = " ".join(f"{name}={value!r}" for name, value in params[k].items())
        lines.append(f"X{k} {' '.join(nodes)} {model.name} {overrides}")
    lines += [".op", ".end", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.ngspice
def test_spice_matches_torch(name):
    model = MODELS[name]
    v, x, params = random_points(model, seed=2)
    op = run_netlist(bench(model, v, x, params), name=f"bench_{name}")[-1]
    assert op.plotname.lower().startswith("operating point")
    n, m = len(model.ports), len(model.states)
    pinned = np.array([[op.variables[f"i(vpin{k}_{i})"][0] for i in range(n + m)] for k in range(len(v))])
    currents, _, rates = torch_reference(model, v, x, params)
    assert_close(-pinned[:, :n], currents, 1e-9, f"{name}: port currents")
    assert_close(pinned[:, n:], rates, 1e-9, f"{name}: state derivatives")
