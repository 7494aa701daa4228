"""Volatile hysteretic threshold-switching memristor (Chua's generic memristor form).

The state ``x`` in [0, 1] relaxes towards a logistic target that depends on the device's own
branch voltage ``v = V(p) - V(n)``; the ``(th - hold)·x`` term makes it hysteretic: an OFF device
switches ON above ``th`` and an ON device stays ON down to ``hold``::

    g     = goff + (gon - goff)·x
    i     = g·v
    x_inf = σ((v - th + (th - hold)·x) / w)
    dx/dt = (x_inf - x)·(x_inf/ton + (1 - x_inf)/toff)

Defaults are those of the depolarizing switch M1 of the reference MIF neuron (Kang et al., IEEE TCAS-I 2021)
(:data:`memspice.devices.mif.KANG2021`), with thresholds on
the branch voltage.
"""

from __future__ import annotations

from memspice.devices.model import POSITIVE, Branch, Constraint, DeviceModel, Parameter, State, logistic, node_voltage

PARAMETERS = (
    Parameter("gon", "S", 20e-6, "conductance in the ON state (x = 1)", **POSITIVE),
    Parameter("goff", "S", 1e-9, "conductance in the OFF state (x = 0)", **POSITIVE),
    Parameter("th", "V", 0.40, "branch voltage above which an OFF device switches ON"),
    Parameter("hold", "V", 0.20, "branch voltage below which an ON device switches OFF"),
    Parameter("w", "V", 0.02, "width of the logistic switching transition", **POSITIVE),
    Parameter("ton", "s", 0.1e-6, "time constant of switching ON", **POSITIVE),
    Parameter("toff", "s", 0.3e-6, "time constant of switching OFF", **POSITIVE),
)


def _build() -> DeviceModel:
    gon, goff, th, hold, w, ton, toff = (p.symbol for p in PARAMETERS)
    v = node_voltage("p") - node_voltage("n")
    x = node_voltage("x")
    x_inf = logistic((v - th + (th - hold) * x) / w)
    return DeviceModel(
        name="threshold_switch",
        doc="Volatile hysteretic threshold-switching memristor (generic memristor, smooth switch).",
        ports=("p", "n"),
        parameters=PARAMETERS,
        branches=(Branch("sw", "p", "n", current=(goff + (gon - goff) * x) * v, doc="memristive conduction"),),
        states=(
            State(
                "x",
                derivative=(x_inf - x) * (x_inf / ton + (1 - x_inf) / toff),
                initial=0,
                lower=0.0,
                upper=1.0,
                doc="normalized conductance state (0 = OFF, 1 = ON)",
            ),
        ),
        constraints=(Constraint(hold < th, "hold must lie below th for hysteresis"),),
        reference="Chua, 'Memristor, Hodgkin-Huxley, and edge of chaos', Nanotechnology 2013 "
        "(generic memristor); Kang et al., IEEE TCAS-I 2021 (MIF neuron).",
    )


THRESHOLD_SWITCH = _build()
