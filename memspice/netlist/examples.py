"""Example circuits of the reference devices, as complete, self-contained ngspice netlists."""

from __future__ import annotations

from collections.abc import Mapping

from memspice.codegen import spice
from memspice.devices import MIF

#: ngspice settings of ground-truth runs (design.md): tight tolerances, gear integration.
GROUND_TRUTH_OPTIONS = ".options method=gear reltol=1e-6"


def mif_step(
    amplitude: float = 2e-6,
    start: float = 10e-6,
    stop: float = 110e-6,
    t_end: float = 120e-6,
    step: float = 2e-9,
    max_step: float = 5e-9,
    rise: float = 1e-9,
    params: Mapping[str, float] | None = None,
) -> str:
    """The default MIF neuron under a current step (design.md): ``amplitude`` (A) into the
    membrane from ``start`` to ``stop`` (s), simulated to ``t_end`` with ``.tran step t_end 0
    max_step uic``. ``params`` override the neuron's parameters (validated)."""
    values = MIF.resolve(params)
    overrides = " ".join(f"{k}={v!r}" for k, v in values.items() if v != MIF.parameter(k).default)
    pwl = f"0 0 {start!r} 0 {start + rise!r} {amplitude!r} {stop!r} {amplitude!r} {stop + rise!r} 0"
    return "\n".join(
        [
            f"* MIF neuron under a {amplitude:g} A step from {start:g} s to {stop:g} s",
            spice.subckt(MIF).rstrip(),
            f"Xneuron mem mif {overrides}".rstrip(),
            f"Iin 0 mem PWL({pwl})",
            GROUND_TRUTH_OPTIONS,
            f".tran {step!r} {t_end!r} 0 {max_step!r} uic",
            ".end",
            "",
        ]
    )
