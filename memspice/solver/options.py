"""How the torch solver integrates, as one object (after diffrax's solver objects and torchdiffeq's
``options``): :func:`~memspice.solver.simulate_network`, :func:`~memspice.solver.simulate_neurons`,
:class:`~memspice.nn.MemristiveSNN`, :class:`~memspice.nn.MemristiveLayer`, ``TrainConfig.solver``
and the command line's solver options all take a :class:`SolverOptions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from memspice.defaults import DT, METHOD
from memspice.errors import ConfigError
from memspice.solver.accuracy import ADAPTIVE_TOLERANCE, Tolerance
from memspice.solver.integrators import NewtonOptions
from memspice.solver.methods import adaptive_methods, method_class


@dataclass(frozen=True)
class SolverOptions:
    """The solver's settings, checked together when made (one :class:`ConfigError` naming the
    option, its value and what is allowed).

    * ``dt`` (s): the grid ``t_n = n·dt`` the solution is given on, and the step taken on it;
    * ``method``: a registered integration method (:data:`memspice.solver.methods.METHODS`);
    * ``newton``: the implicit methods' Newton iterations (:class:`NewtonOptions`: tolerances,
      iterations, limiting, substeps on failure);
    * ``tolerance``: the local error every step is checked against
      (:mod:`memspice.solver.accuracy`; ``None``: no estimate);
    * ``adaptive``: error-controlled substeps within each step of ``dt`` (``True``: held to
      :data:`~memspice.solver.accuracy.ADAPTIVE_TOLERANCE`, or to the :class:`Tolerance` given;
      methods with an embedded estimate only);
    * ``checkpoint_every`` (steps): recompute the forward pass in chunks of this many steps in
      backward, trading time for memory;
    * ``fused``: each Newton iteration and each step's gradient as one compiled (inductor)
      kernel (:mod:`memspice.solver.fused`): the same numerics, faster once compiled.
    """

    dt: float = DT
    method: str = METHOD
    newton: NewtonOptions = field(default_factory=NewtonOptions)
    tolerance: Tolerance | None = field(default_factory=Tolerance)
    adaptive: bool | Tolerance = False
    checkpoint_every: int | None = None
    fused: bool = False

    def __post_init__(self) -> None:
        dt = self.dt
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or not dt > 0:
            raise ConfigError(f"dt must be a finite number > 0 s; got {dt!r}")
        object.__setattr__(self, "dt", float(dt))
        method_class(self.method)  # an unknown name is a ConfigError that lists the methods
        if not isinstance(self.newton, NewtonOptions):
            raise ConfigError(f"newton must be a NewtonOptions; got {self.newton!r}")
        if self.tolerance is not None and not isinstance(self.tolerance, Tolerance):
            raise ConfigError(f"tolerance must be a Tolerance or None; got {self.tolerance!r}")
        if not isinstance(self.adaptive, (bool, Tolerance)):
            raise ConfigError(f"adaptive must be True, False or a Tolerance; got {self.adaptive!r}")
        every = self.checkpoint_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ConfigError(f"checkpoint_every must be a positive number of steps or None; got {every!r}")
        if not isinstance(self.fused, bool):
            raise ConfigError(f"fused must be True or False; got {self.fused!r}")
        if self.adaptive is not False:
            if not method_class(self.method).adaptive:
                raise ConfigError(f"adaptive steps need a method with an embedded error estimate "
                                  f"({', '.join(adaptive_methods())}); got {self.method!r}")
            if every:
                raise ConfigError("adaptive steps do not combine with checkpoint_every (a recomputed chunk would "
                                  "choose its substeps again)")

    @property
    def step_tolerance(self) -> Tolerance | None:
        """The tolerance the steps estimate their error against: an adaptive run's own, else ``tolerance``."""
        if self.adaptive is False:
            return self.tolerance
        return ADAPTIVE_TOLERANCE if self.adaptive is True else self.adaptive

    def replace(self, **changes) -> SolverOptions:
        """A copy with ``changes`` (checked again)."""
        return replace(self, **changes)


def solver_options(solver: SolverOptions | float) -> SolverOptions:
    """``solver`` itself, or for a bare number the default options on that step ``dt`` (s)."""
    if isinstance(solver, SolverOptions):
        return solver
    if isinstance(solver, (int, float)) and not isinstance(solver, bool):
        return SolverOptions(dt=solver)
    raise ConfigError(f"solver must be a SolverOptions or a step dt in s; got {solver!r}")
