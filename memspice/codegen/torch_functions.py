"""Torch functions generated from a device model: batched, differentiable, any float dtype.

The symbolic equations are turned into torch code by ``sympy.lambdify`` (with common
subexpressions shared), so the torch form is derived from the definition, never restated.
Shapes: ``v`` is ``(..., n_ports)`` port voltages against ground (V), ``x`` is
``(..., n_states)``; parameters are floats (validated) or tensors broadcastable to ``v[..., 0]``
(for training; they are not range-checked).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import sympy as sp
import torch

from memspice.devices.model import DeviceModel
from memspice.errors import ConfigError

ParamValues = Mapping[str, "float | torch.Tensor"]


def _maximum(*args):
    out = args[0]
    for a in args[1:]:
        out = torch.maximum(torch.as_tensor(out), torch.as_tensor(a))
    return out


def _minimum(*args):
    out = args[0]
    for a in args[1:]:
        out = torch.minimum(torch.as_tensor(out), torch.as_tensor(a))
    return out


def _power(base, exponent):
    return base**exponent  # torch.pow refuses two Python numbers (parameters given as floats)


_OVERRIDES = {"max": _maximum, "min": _minimum, "Max": _maximum, "Min": _minimum, "pow": _power}


class DeviceEvaluation(NamedTuple):
    currents: torch.Tensor  #: (..., n_ports) resistive current into the device at each port, A
    charges: torch.Tensor  #: (..., n_ports) charge behind each port, C
    derivatives: torch.Tensor  #: (..., n_states) state derivatives, 1/s


class DeviceLinearization(NamedTuple):
    """A device's equations and their Jacobians at one point, for implicit integrators;
    component axes first, then the batch shape ``...``."""

    currents: torch.Tensor  #: (n_ports, ...) A
    derivatives: torch.Tensor  #: (n_states, ...) 1/s
    capacitance: torch.Tensor  #: (n_ports, n_ports, ...) dQ/dv, F
    di_dv: torch.Tensor  #: (n_ports, n_ports, ...) S
    di_dx: torch.Tensor  #: (n_ports, n_states, ...) A
    df_dv: torch.Tensor  #: (n_states, n_ports, ...) 1/(V s)
    df_dx: torch.Tensor  #: (n_states, n_states, ...) 1/s


class TorchDevice:
    """The torch form of a :class:`~memspice.devices.model.DeviceModel`."""

    def __init__(self, model: DeviceModel) -> None:
        self.model = model
        args = [*model.port_voltages, *model.state_symbols, *model.parameter_symbols]
        self._n_ports = len(model.ports)
        self._n_states = len(model.states)
        outputs = [*model.port_currents(), *model.port_charges(), *model.state_derivatives()]
        self._fn = sp.lambdify(args, outputs, modules=[_OVERRIDES, "torch"], cse=True)
        self._initial = sp.lambdify(
            list(model.parameter_symbols), [sp.sympify(s.initial) for s in model.states], modules="math"
        )

        self._args = args

    @functools.cached_property
    def linear_function(self):
        """The lambdified currents, derivatives and Jacobians behind :meth:`linearize_ordered`
        (built on first use: the symbolic Jacobians take a moment)."""
        model = self.model
        currents, derivs = model.port_currents(), model.state_derivatives()
        ports, states = model.port_voltages, model.state_symbols
        outputs = self._residual_expressions()
        outputs += [sp.diff(i, p) for i in currents for p in ports]
        outputs += [sp.diff(i, s) for i in currents for s in states]
        outputs += [sp.diff(f, p) for f in derivs for p in ports]
        outputs += [sp.diff(f, s) for f in derivs for s in states]
        return sp.lambdify(self._args, outputs, modules=[_OVERRIDES, "torch"], cse=True)

    @functools.cached_property
    def residual_function(self):
        """The lambdified currents, state derivatives and capacitances behind
        :meth:`residual_ordered` (a Newton residual's needs, without the Jacobians)."""
        return sp.lambdify(self._args, self._residual_expressions(), modules=[_OVERRIDES, "torch"], cse=True)

    def _residual_expressions(self) -> list:
        """Currents, state derivatives and ``dQ/dv``: the first outputs of both generated
        functions (:meth:`linearize_ordered` and :meth:`residual_ordered` read them alike)."""
        model = self.model
        capacitances = [sp.diff(q, p) for q in model.port_charges() for p in model.port_voltages]
        return [*model.port_currents(), *model.state_derivatives(), *capacitances]

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.model.parameters)

    def parameters(self, params: ParamValues | None = None) -> dict[str, float | torch.Tensor]:
        """Defaults updated by ``params``; floats are validated, tensors passed through."""
        params = dict(params or {})
        for name in params:
            self.model.parameter(name)  # unknown names fail here, tensors included
        floats = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
        values: dict[str, float | torch.Tensor] = dict(self.model.resolve(floats))
        values.update({k: v for k, v in params.items() if isinstance(v, torch.Tensor)})
        return values

    def evaluate(self, v: torch.Tensor, x: torch.Tensor, params: ParamValues | None = None) -> DeviceEvaluation:
        """Port currents, port charges and state derivatives at ``(v, x)``."""
        if v.shape[-1] != self._n_ports or x.shape[-1] != self._n_states:
            raise ConfigError(
                f"{self.model.name}: expected v (..., {self._n_ports}) and x (..., {self._n_states}), "
                f"got {tuple(v.shape)} and {tuple(x.shape)}"
            )
        return self.evaluate_ordered(v, x, self.ordered(params))

    def ordered(self, params: ParamValues | None = None) -> list[float | torch.Tensor]:
        """Parameter values in the generated functions' order (validated once, for loops that
        call :meth:`evaluate_ordered` / :meth:`linearize_ordered` every time step)."""
        values = self.parameters(params)
        return [values[name] for name in self.parameter_names]

    def evaluate_ordered(self, v: torch.Tensor, x: torch.Tensor, ordered: list) -> DeviceEvaluation:
        """:meth:`evaluate` with parameters from :meth:`ordered`."""
        batch, full = _broadcast(self._fn, v.unbind(-1), x.unbind(-1), ordered)
        n, m = self._n_ports, self._n_states
        return DeviceEvaluation(
            currents=torch.stack(full[:n], -1),
            charges=torch.stack(full[n : 2 * n], -1),
            derivatives=torch.stack(full[2 * n : 2 * n + m], -1) if m else v.new_zeros((*batch, 0)),
        )

    def linearize_ordered(self, ports: Sequence[torch.Tensor], states: Sequence[torch.Tensor],
                          ordered: list) -> DeviceLinearization:
        """Currents, state derivatives and their Jacobians (symbolic derivatives of the model's
        expressions, lambdified like :meth:`evaluate`) at the port voltages ``ports`` and states
        ``states``, one tensor per component, with parameters from :meth:`ordered`. The results
        have their component axes *first* (the layout of the solver's elementwise linear algebra:
        no transposes on its hot path)."""
        model, n, m = self.model, self._n_ports, self._n_states
        if len(ports) != n or len(states) != m:
            raise ConfigError(f"{model.name}: expected {n} port voltages and {m} states, got {len(ports)} and "
                             f"{len(states)}")
        batch, full = _broadcast(self.linear_function, ports, states, ordered)
        shapes = [(n,), (m,), (n, n), (n, n), (n, m), (m, n), (m, m)]  # DeviceLinearization's fields in order
        return DeviceLinearization(*_components_first(full, shapes, batch, ports[0]))

    def residual_ordered(self, ports: Sequence[torch.Tensor], states: Sequence[torch.Tensor],
                         ordered: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``currents`` ``(n_ports, ...)``, ``derivatives`` ``(n_states, ...)`` and ``capacitance``
        ``(n_ports, n_ports, ...)`` of :meth:`linearize_ordered` alone: cheaper where the
        Jacobians are not needed (the solver's differentiable step)."""
        n, m = self._n_ports, self._n_states
        batch, full = _broadcast(self.residual_function, ports, states, ordered)
        currents, derivatives, capacitance = _components_first(full, [(n,), (m,), (n, n)], batch, ports[0])
        return currents, derivatives, capacitance

    def initial_states(self, params: Mapping[str, float] | None = None) -> list[float]:
        """Initial value of each state for the (validated) parameters."""
        values = self.model.resolve(params)
        return [float(x) for x in self._initial(*(values[n] for n in self.parameter_names))]


def _broadcast(fn, ports: Sequence[torch.Tensor], states: Sequence[torch.Tensor],
               ordered: list) -> tuple[torch.Size, list[torch.Tensor]]:
    """Call a lambdified function on one tensor per component; every output as a tensor of the
    common batch shape (constants and parameter-only expressions come back as floats)."""
    outs = fn(*ports, *states, *ordered)
    tensors = [*ports, *states]
    batch = torch.broadcast_shapes(*(t.shape for t in tensors), *(torch.as_tensor(p).shape for p in ordered))
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    device = tensors[0].device
    return batch, [torch.as_tensor(o, dtype=dtype, device=device).expand(batch) for o in outs]


def _components_first(full: list[torch.Tensor], shapes: list[tuple[int, ...]], batch: torch.Size,
                      like: torch.Tensor) -> list[torch.Tensor]:
    """Consecutive runs of the flat outputs ``full``, one per entry of ``shapes``, each stacked
    to ``(*shape, *batch)`` (an empty shape gives an empty tensor)."""
    parts, k = [], 0
    for shape in shapes:
        count = math.prod(shape)
        parts.append(torch.stack(full[k : k + count]).reshape(*shape, *batch) if count
                     else like.new_zeros((*shape, *batch)))
        k += count
    return parts


_CACHE: dict[str, TorchDevice] = {}


def torch_device(model: DeviceModel) -> TorchDevice:
    """The (cached) torch form of ``model``."""
    if model.name not in _CACHE or _CACHE[model.name].model is not model:
        _CACHE[model.name] = TorchDevice(model)
    return _CACHE[model.name]


