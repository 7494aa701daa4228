"""How far a fixed-grid solution can be trusted: local error estimates against a tolerance.

Every step of :class:`~memspice.solver.integrators.Stepper` estimates its local error (the error
one step makes from an exact start) per neuron and component, the way variable-step codes do:

* ``radau5``, ``radau3``: the embedded formula of Hairer and Wanner's RADAU5 (Solving ODEs II,
  IV.8): an order-``s`` method on the same stages plus ``γ₀·dt·f(y_n)``; its difference to the
  collocation solution, filtered by ``(M - γ₀·dt·J)⁻¹`` so that stiff components that the
  L-stable method damps correctly do not read as errors. ``O(dt^(s+1))``.
* ``trap``, ``euler``: the predictor difference (Milne's device): the polynomial through the last
  grid points extrapolated to the step's end, against the corrected value, scaled by the two
  error constants. ``O(dt^3)``, ``O(dt^2)``; no estimate on the first steps of a run.

The estimate is divided by a :class:`Tolerance` per component (``v`` in V, states unitless) and
the largest ratio per layer is reported (:class:`LayerError`) with where it occurred and the dt
that would meet the tolerance. :func:`check_accuracy` warns (:class:`~memspice.errors.AccuracyWarning`)
or, strictly, raises (:class:`~memspice.errors.AccuracyError`); :class:`AccuracyMonitor` does it
once per run over many batches. docs/solver.md compares the estimate with ngspice's answer.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from memspice.errors import AccuracyError, AccuracyWarning, ConfigError

#: suggested dt = dt · max(SMALLEST_FACTOR, SAFETY · ratio^(-1/order)): the margin and the
#: largest cut of one step-size change in RADAU5 (far outside the asymptotic range the power law
#: overshoots; a rerun at the suggestion says again if it is not enough)
SAFETY, SMALLEST_FACTOR = 0.8, 0.2


@dataclass(frozen=True)
class Tolerance:
    """The local error a step may make: ``v`` (V) on the membrane, ``x`` on each device state
    (states are fractions in [0, 1]). The defaults warn on grids that miss spikes or move them
    by more than a few % of the inter-spike interval (docs/solver.md: the measurements)."""

    v: float = 0.03
    x: float = 0.1

    def __post_init__(self) -> None:
        for name in ("v", "x"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"tolerance {name} must be a number > 0; got {value!r}")


#: What adaptive steps hold every step's estimate to (:func:`memspice.solver.simulate_neurons`):
#: tighter than :class:`Tolerance`'s defaults, which only say when a fixed grid is too coarse. With
#: it the KANG2021 neuron under validate's 2 µA step keeps ngspice's 16 spikes within 0.29 % (200 ns
#: grid) and 0.18 % (100 ns) of the interval, the default neuron's 20 within 0.21 %; the default
#: tolerance missed a spike at 100 ns (docs/solver.md).
ADAPTIVE_TOLERANCE = Tolerance(v=0.003, x=0.01)


@dataclass(frozen=True)
class LayerError:
    """The largest local error estimate of one layer over a run, in units of the tolerance
    (``ratio`` ≤ 1: within it), and where: the step's end ``time`` (s), grid ``step``, batch item,
    neuron and component (``"v"`` or a state's name). ``dt`` (s) is the step that made it and
    ``order`` the estimate's power of dt."""

    layer: int
    ratio: float
    time: float
    step: int
    batch_item: int
    neuron: int
    component: str
    dt: float
    order: int

    @property
    def suggested_dt(self) -> float:
        """A step (s) to try next: one that brings this estimate within the tolerance if the
        error follows its order, at most 5x smaller than ``dt``."""
        if not self.ratio > 1:
            return self.dt
        return self.dt * max(SMALLEST_FACTOR, SAFETY * self.ratio ** (-1.0 / self.order))

    def describe(self) -> str:
        return (f"layer {self.layer}: local error {self.ratio:.3g}x the tolerance at t = {self.time:.6g} s "
                f"(neuron {self.neuron}, batch item {self.batch_item}, {self.component}) with dt = {self.dt:.3g} s; "
                f"try dt = {self.suggested_dt:.3g} s")

    def to_json(self) -> dict:
        return {**asdict(self), "suggested_dt": self.suggested_dt}


def worst(errors: list[LayerError]) -> LayerError | None:
    """The layer error with the largest ratio (``None`` for none)."""
    return max(errors, key=lambda e: e.ratio, default=None)


def check_accuracy(errors: list[LayerError], strict: bool = False, context: str = "the torch solver") -> bool:
    """Warn (or, ``strict``, raise :class:`~memspice.errors.AccuracyError`) when any layer's
    estimate exceeds its tolerance, naming the layer, the time and a dt that would do;
    returns whether it did."""
    over = [e for e in errors if e.ratio > 1]
    if not over:
        return False
    message = (f"{context}: the time grid is too coarse for these dynamics; "
               + "; ".join(e.describe() for e in over)
               + ". Spike times and counts may differ from ngspice's (memspice validate compares them)")
    if strict:
        raise AccuracyError(message)
    warnings.warn(message, AccuracyWarning, stacklevel=3)
    return True


class AccuracyMonitor:
    """The worst local error per layer over many solutions (a training run, an evaluation):
    :meth:`observe` each solution; it warns the first time a tolerance is exceeded (or raises,
    ``strict``), once per monitor."""

    def __init__(self, strict: bool = False, context: str = "the torch solver") -> None:
        self.strict, self.context = strict, context
        self.layers: dict[int, LayerError] = {}
        self.warned = False

    def record(self, errors: list[LayerError] | None) -> None:
        """Keep the worst estimate per layer, without judging it."""
        for error in errors or []:
            if error.layer not in self.layers or error.ratio > self.layers[error.layer].ratio:
                self.layers[error.layer] = error

    def observe(self, errors: list[LayerError] | None) -> None:
        """Record ``errors`` and warn (or raise) the first time one exceeds its tolerance."""
        self.record(errors)
        if not self.warned and any(e.ratio > 1 for e in errors or []):
            self.warned = check_accuracy(errors, self.strict, self.context)

    @property
    def worst_ratio(self) -> float | None:
        """The largest ratio seen (``None`` before any estimate)."""
        found = worst(list(self.layers.values()))
        return found.ratio if found else None

    def to_json(self) -> list[dict]:
        return [self.layers[k].to_json() for k in sorted(self.layers)]
