"""Relaxation-oscillator neuron: one volatile threshold switch (NbOx/Mott style) across the membrane.

The second neuron model, and the worked example of bringing your own device: it is written the
way a user writes one (docs/devices.md), from the generic threshold switch, and everything that
takes a neuron takes it (the emitters, ``memspice validate --neuron``, step-wise layers, their
netlists).

Membrane node ``mem`` with capacitor ``cm`` and leak ``gl`` to ground; the switch M connects
``mem`` to a source ``ereset`` (the level it discharges towards; not ``e``, which ngspice's
expressions read as Euler's number). With the input current ``I_in``::

    cm·dV/dt = I_in - g·(V - ereset) - gl·V

The input charges the membrane until it reaches ``th``; the switch turns ON and discharges it
towards ``ereset`` until it falls below ``hold``, where the switch turns OFF again: a sawtooth whose
rate grows with the input (the Pearson–Anson relaxation oscillator of Mott-switch neurons, e.g.
Pickett et al., Nature Materials 2013, with one switch instead of two). Every fast edge is a
discharge, so the membrane crosses the spike threshold on the way up once per cycle. The
input must stay below ``gon·(hold - ereset)`` (here 10 µA): above it the ON switch cannot pull the
membrane below ``hold`` and the neuron stays ON (blocks).
"""

from __future__ import annotations

from dataclasses import replace

from memspice.devices.model import (
    POSITIVE,
    Branch,
    Constraint,
    DeviceModel,
    Parameter,
    Source,
    SpikeEvent,
    instantiate,
    node_voltage,
)
from memspice.devices.threshold_switch import THRESHOLD_SWITCH

#: The switch's defaults, thresholds on the membrane voltage (a discharge of ~0.16 µs through
#: gon into cm, resolved by the default 200 ns step of the Radau solver).
SWITCH = {"gon": 50e-6, "goff": 1e-9, "th": 0.55, "hold": 0.20, "w": 0.01, "ton": 0.2e-6, "toff": 0.4e-6}

PARAMETERS = (
    Parameter("cm", "F", 16e-12, "membrane capacitance", **POSITIVE),
    Parameter("gl", "S", 1e-6, "membrane leak conductance", lower=0.0),
    Parameter("ereset", "V", 0.0, "source in series with the switch (the level it discharges towards)"),
    *(replace(spec, default=SWITCH[spec.name], doc="switch M: " + spec.doc.replace("branch", "membrane"))
      for spec in THRESHOLD_SWITCH.parameters),
)


def _build() -> DeviceModel:
    sym = {p.name: p.symbol for p in PARAMETERS}
    mapping = {name: sym[name] for name in SWITCH}
    mapping["th"] = sym["th"] - sym["ereset"]  # membrane threshold -> the switch's branch voltage
    mapping["hold"] = sym["hold"] - sym["ereset"]
    switch = instantiate(THRESHOLD_SWITCH, "m", {"p": "mem", "n": "ne"}, mapping, {"x": "x"})
    return DeviceModel(
        name="relaxation_neuron",
        doc="Relaxation-oscillator neuron: membrane Cm, leak gL, one threshold switch M to the source ereset.",
        ports=("mem",),
        parameters=PARAMETERS,
        branches=(
            Branch("cm", "mem", "0", capacitance=sym["cm"], doc="membrane capacitor"),
            Branch("gl", "mem", "0", current=sym["gl"] * node_voltage("mem"), doc="membrane leak"),
            *switch.branches,
        ),
        states=switch.states,
        sources=(Source("ereset", "ne", sym["ereset"], doc="switch series source"),),
        constraints=(Constraint(sym["hold"] < sym["th"], "hold must lie below th"),),
        reference="Pickett, Medeiros-Ribeiro and Williams, Nature Materials 12, 114 (2013) (Mott-switch "
                  "neuristor); one switch, thresholds after the MIF defaults of this package.",
        spike=SpikeEvent("x", 0.5, "the switch turns on: the discharge"),
    )


RELAXATION_NEURON = _build()
