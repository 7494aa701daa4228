"""Non-volatile synapse memristor with write thresholds and a window (VTEAM-like).

Conduction is ohmic in a normalized state ``x`` in [0, 1]; the state moves only when the
branch voltage ``v = V(p) - V(n)`` exceeds a write threshold, so reads leave the weight alone::

    g     = gmin + (gmax - gmin)·x
    i     = g·v
    dx/dt = kset·max(v/vset - 1, 0)^aset·(1 - x²) - kreset·max(v/vreset - 1, 0)^areset·(1 - (1 - x)²)

Sources of the equations and defaults:

* threshold kinetics ``k·(v/v_th - 1)^a`` above threshold and exactly zero below: the VTEAM
  model, Kvatinsky et al., "VTEAM: A General Model for Voltage-Controlled Memristors",
  IEEE TCAS-II 62(8), 2015 (its typical exponents a = 3 are the defaults here);
* window: Biolek et al., "SPICE Model of Memristor with Nonlinear Dopant Drift",
  Radioengineering 18(2), 2009, with p = 1 and the direction folded into each term
  (``1 - x²`` for SET, ``1 - (1 - x)²`` for RESET), so the state stops at 0 and 1;
* conductance range 1 µS .. 100 µS: typical of HfOx/TaOx RRAM cells;
* write thresholds ±2 V: above the largest read voltage across a crossbar cell of memspice
  networks (row drive ≤ 1 V plus a membrane swing ≤ 0.5 V), so inference never writes.

The initial state ``x0`` is a parameter: it is the programmed weight.
"""

from __future__ import annotations

import sympy as sp

from memspice.devices.model import POSITIVE, Branch, Constraint, DeviceModel, Parameter, State, node_voltage

PARAMETERS = (
    Parameter("gmin", "S", 1e-6, "lowest conductance (x = 0)", **POSITIVE),
    Parameter("gmax", "S", 100e-6, "highest conductance (x = 1)", **POSITIVE),
    Parameter("vset", "V", 2.0, "SET (potentiating) write threshold", **POSITIVE),
    Parameter("vreset", "V", -2.0, "RESET (depressing) write threshold", upper=0.0, upper_inclusive=False),
    Parameter("kset", "1/s", 1e5, "SET rate coefficient", **POSITIVE),
    Parameter("kreset", "1/s", 1e5, "RESET rate coefficient", **POSITIVE),
    Parameter("aset", "", 3.0, "SET nonlinearity exponent (>= 1 keeps dx/dt smooth at threshold)", lower=1.0),
    Parameter("areset", "", 3.0, "RESET nonlinearity exponent", lower=1.0),
    Parameter("x0", "", 0.0, "initial (programmed) state", lower=0.0, upper=1.0),
)


def _build() -> DeviceModel:
    gmin, gmax, vset, vreset, kset, kreset, aset, areset, x0 = (p.symbol for p in PARAMETERS)
    v = node_voltage("p") - node_voltage("n")
    x = node_voltage("x")
    setting = kset * sp.Max(v / vset - 1, 0) ** aset * (1 - x**2)
    resetting = kreset * sp.Max(v / vreset - 1, 0) ** areset * (1 - (1 - x) ** 2)
    return DeviceModel(
        name="synapse",
        doc="Non-volatile synapse memristor: VTEAM-like write thresholds, Biolek window.",
        ports=("p", "n"),
        parameters=PARAMETERS,
        branches=(Branch("g", "p", "n", current=(gmin + (gmax - gmin) * x) * v, doc="ohmic read"),),
        states=(
            State("x", derivative=setting - resetting, initial=x0, lower=0.0, upper=1.0,
                  doc="normalized conductance state (weight)"),
        ),
        constraints=(Constraint(gmin < gmax, "the conductance range must be non-empty"),),
        reference="Kvatinsky et al., IEEE TCAS-II 2015 (VTEAM); Biolek et al., Radioengineering 2009.",
    )


SYNAPSE = _build()
