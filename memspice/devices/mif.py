"""Memristive integrate-and-fire (MIF) neuron: a composite of two threshold switches.

Membrane node ``mem`` with capacitor ``cm`` and leak ``gl`` to ground. Switch M1 (depolarizing)
connects ``mem`` to a source ``e1``; switch M2 (repolarizing, hyperpolarizing) connects ``mem``
to a source ``e2``. With the input current ``I_in`` into ``mem``::

    cm·dV/dt = I_in - g1·(V - e1) - g2·(V - e2) - gl·V

Each switch is an instance of :data:`~memspice.devices.threshold_switch.THRESHOLD_SWITCH`; its
thresholds here are given on the membrane voltage (``th1``, ``hold1``...), so the switch sees
``th = th1 - e1`` on its own branch voltage ``V - e1``. Spikes need no comparator and no reset:
M1's fast positive feedback depolarizes, M2 repolarizes and hyperpolarizes.

Two parameter sets:

* the defaults, re-timed for training: the switches take a few hundred ns and the spike about a
  sixth of the inter-spike interval, so that a fixed step of 200 ns (25 steps per interval at
  2 µA) follows ngspice's spike times within 1 % of the interval (docs/solver.md has the
  measurements and the search that found them);
* :data:`KANG2021`, the reference neuron of Kang et al. (IEEE TCAS-I 2021),
  verified in ngspice: 100 ns spikes in a 6.5 µs interval, which a fixed-step solver needs
  ~1000 steps per interval to follow.

Both have depolarization (M1), repolarization and hyperpolarization (M2) and a monotonic f–I
curve over more than a 30x range of input current (``memspice characterize mif``).
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

# Per-switch defaults: thresholds on the membrane voltage.
SWITCH_DEFAULTS = {
    1: {"gon": 36e-6, "goff": 1e-9, "th": 0.40, "hold": 0.22, "w": 0.06, "ton": 0.11e-6, "toff": 0.18e-6},
    2: {"gon": 100e-6, "goff": 1e-9, "th": 0.55, "hold": 0.02, "w": 0.05, "ton": 0.6e-6, "toff": 0.5e-6},
}

#: The reference neuron of Kang et al. 2021, as overrides of the defaults.
KANG2021 = {
    "cm": 10e-12, "e2": -0.3,
    "gon1": 20e-6, "hold1": 0.20, "w1": 0.02, "ton1": 0.1e-6, "toff1": 0.3e-6,
    "gon2": 200e-6, "th2": 0.50, "hold2": 0.00, "w2": 0.02, "ton2": 0.1e-6, "toff2": 1.0e-6,
}
#: Named parameter sets (overrides of the defaults), as ``--preset`` offers them.
PRESETS = {"default": {}, "kang2021": KANG2021}
ROLE = {1: "depolarizing switch M1", 2: "repolarizing switch M2"}


def _switch_parameters(k: int) -> tuple[Parameter, ...]:
    out = []
    for spec in THRESHOLD_SWITCH.parameters:
        doc = spec.doc.replace("branch voltage", "membrane voltage")
        default = SWITCH_DEFAULTS[k][spec.name]
        out.append(replace(spec, name=f"{spec.name}{k}", default=default, doc=f"{ROLE[k]}: {doc}"))
    return tuple(out)


PARAMETERS = (
    Parameter("cm", "F", 16e-12, "membrane capacitance", **POSITIVE),
    Parameter("gl", "S", 1e-6, "membrane leak conductance", lower=0.0),
    Parameter("e1", "V", 1.0, "source in series with M1 (depolarizing reversal voltage)"),
    Parameter("e2", "V", -0.5, "source in series with M2 (hyperpolarizing reversal voltage)"),
    *_switch_parameters(1),
    *_switch_parameters(2),
)


def _build() -> DeviceModel:
    sym = {p.name: p.symbol for p in PARAMETERS}
    v = node_voltage("mem")
    switches = []
    for k in (1, 2):
        mapping = {name: sym[f"{name}{k}"] for name in SWITCH_DEFAULTS[k]}
        e = sym[f"e{k}"]
        mapping["th"] = mapping["th"] - e  # membrane threshold -> switch branch voltage
        mapping["hold"] = mapping["hold"] - e
        switches.append(
            instantiate(THRESHOLD_SWITCH, f"m{k}", {"p": "mem", "n": f"ne{k}"}, mapping, {"x": f"x{k}"})
        )
    return DeviceModel(
        name="mif",
        doc="Memristive integrate-and-fire neuron: membrane Cm, leak gL, switches M1 (to e1) and M2 (to e2).",
        ports=("mem",),
        parameters=PARAMETERS,
        branches=(
            Branch("cm", "mem", "0", capacitance=sym["cm"], doc="membrane capacitor"),
            Branch("gl", "mem", "0", current=sym["gl"] * v, doc="membrane leak"),
            *switches[0].branches,
            *switches[1].branches,
        ),
        states=(*switches[0].states, *switches[1].states),
        sources=(
            Source("e1", "ne1", sym["e1"], doc="M1 series source"),
            Source("e2", "ne2", sym["e2"], doc="M2 series source"),
        ),
        constraints=(
            Constraint(sym["hold1"] < sym["th1"], "M1 hold must lie below its threshold"),
            Constraint(sym["hold2"] < sym["th2"], "M2 hold must lie below its threshold"),
        ),
        reference="Kang et al., IEEE TCAS-I 2021 (parameter set KANG2021); defaults re-timed "
                  "for fixed-step training (docs/solver.md).",
        spike=SpikeEvent("x1", 0.5, "the depolarizing switch M1 turns on"),
    )


MIF = _build()
