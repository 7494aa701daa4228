"""Devices from a user's own module: ``MODULE:NAME`` names a :class:`DeviceModel` object.

A device written the way :mod:`memspice.devices.mif` or :mod:`memspice.devices.relaxation` are
(docs/devices.md) is one object in any importable module; the commands take it by name
(``memspice validate --neuron my_devices:MY_NEURON``). The current folder is searched first, as
``python -m`` would, so a ``my_devices.py`` next to you needs no installing. Importing a module
runs its code: name only modules you trust. A model named in a file (a checkpoint, a run's
configuration) is never imported on that file's word: :func:`neuron_model` resolves the shipped
neurons by name and a user's only when the user named it too.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from memspice.devices.mif import MIF
from memspice.devices.model import DeviceModel
from memspice.devices.relaxation import RELAXATION_NEURON
from memspice.errors import ConfigError

_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)")


def import_model(spec: str, ports: int | None = None) -> DeviceModel:
    """The :class:`DeviceModel` ``NAME`` of module ``MODULE`` (``spec = "MODULE:NAME"``), with
    ``ports`` ports when given (neurons have one); a ConfigError says what is wrong."""
    match = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(f"device {spec!r}: expected MODULE:NAME, e.g. memspice.devices.relaxation:RELAXATION_NEURON")
    module_name, name = match.groups()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"device {spec}: cannot import {module_name} ({exc})") from None
    model = getattr(module, name, None)
    if not isinstance(model, DeviceModel):
        found = type(model).__name__ if model is not None else "nothing"
        raise ConfigError(f"device {spec}: {module_name}.{name} is {found}, not a DeviceModel")
    if ports is not None and len(model.ports) != ports:
        raise ConfigError(f"device {spec}: {model.name} has ports {model.ports}; a neuron needs {ports}")
    return model


#: The neuron models memspice ships, by name: what a configuration may name without importing anything.
NEURONS: dict[str, DeviceModel] = {m.name: m for m in (MIF, RELAXATION_NEURON)}


def check_neuron_spec(spec: object) -> str:
    """``spec`` if it names a neuron model (a shipped one's name or ``MODULE:NAME``), else a ConfigError."""
    if not isinstance(spec, str) or (spec not in NEURONS and _SPEC.fullmatch(spec) is None):
        raise ConfigError(f"neuron {spec!r}: give a shipped neuron model ({', '.join(NEURONS)}) or MODULE:NAME of "
                          "your own, e.g. my_devices:MY_NEURON")
    return spec


def neuron_model(spec: str, trust: str | None = None) -> DeviceModel:
    """The neuron model that ``spec`` names: a shipped one (:data:`NEURONS`) by name, or a user's
    ``MODULE:NAME``, imported only when it is ``trust``, the one the user named (``--neuron``):
    importing runs the module's code, so a name read from a checkpoint or a run's configuration
    alone is refused with what to give."""
    check_neuron_spec(spec)
    if trust is not None and trust != spec:
        raise ConfigError(f"the network's neurons are {spec}; --neuron names {trust}")
    if spec in NEURONS:
        return NEURONS[spec]
    if spec != trust:
        raise ConfigError(f"the network's neurons are {spec}, a model of your own: name it to use it (--neuron "
                          f"{spec}); memspice imports only the modules you name, since importing runs their code")
    return import_model(spec, ports=1)
