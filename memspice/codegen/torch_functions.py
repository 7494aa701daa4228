"""Torch functions generated from a device model: batched, differentiable, any float dtype.

The symbolic equations are turned into torch code by ``sympy.lambdify`` (with common
subexpressions shared), so the torch form is derived from the definition, never restated.
Shapes: ``v`` is ``(..., n_ports)`` port voltages against ground (V), ``x`` is
``(..., n_states)``; parameters are floats (validated) or tensors broadcastable to ``v[..., 0]``
(for training; they are not range-checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import sympy as sp
import torch

from memspice.devices.model import DeviceModel

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


_OVERRIDES = {"max": _maximum, "min": _minimum, "Max": _maximum, "Min": _minimum}


class DeviceEvaluation(NamedTuple):
    currents: torch.Tensor  #: (..., n_ports) resistive current into the device at each port, A
    charges: torch.Tensor  #: (..., n_ports) charge behind each port, C
    derivatives: torch.Tensor  #: (..., n_states) state derivatives, 1/s


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
            raise ValueError(
                f"{self.model.name}: expected v (..., {self._n_ports}) and x (..., {self._n_states}), "
                f"got {tuple(v.shape)} and {tuple(x.shape)}"
            )
        values = self.parameters(params)
        ordered = [values[name] for name in self.parameter_names]
        outs = self._fn(*v.unbind(-1), *x.unbind(-1), *ordered)
        batch = torch.broadcast_shapes(v.shape[:-1], x.shape[:-1], *(torch.as_tensor(p).shape for p in ordered))
        dtype = torch.promote_types(v.dtype, x.dtype)
        full = [torch.as_tensor(o, dtype=dtype, device=v.device).expand(batch) for o in outs]
        n, m = self._n_ports, self._n_states
        return DeviceEvaluation(
            currents=torch.stack(full[:n], -1),
            charges=torch.stack(full[n : 2 * n], -1),
            derivatives=torch.stack(full[2 * n : 2 * n + m], -1) if m else v.new_zeros((*batch, 0)),
        )

    def initial_states(self, params: Mapping[str, float] | None = None) -> list[float]:
        """Initial value of each state for the (validated) parameters."""
        values = self.model.resolve(params)
        return [float(x) for x in self._initial(*(values[n] for n in self.parameter_names))]


_CACHE: dict[str, TorchDevice] = {}


def torch_device(model: DeviceModel) -> TorchDevice:
    """The (cached) torch form of ``model``."""
    if model.name not in _CACHE or _CACHE[model.name].model is not model:
        _CACHE[model.name] = TorchDevice(model)
    return _CACHE[model.name]


