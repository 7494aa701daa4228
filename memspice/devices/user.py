"""Devices from a user's own module: ``MODULE:NAME`` names a :class:`DeviceModel` object.

A device written the way :mod:`memspice.devices.mif` or :mod:`memspice.devices.relaxation` are
(docs/devices.md) is one object in any importable module; the commands take it by name
(``memspice validate --neuron my_devices:MY_NEURON``). The current folder is searched first, as
``python -m`` would, so a ``my_devices.py`` next to you needs no installing. Importing a module
runs its code: name only modules you trust.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from memspice.devices.model import DeviceModel
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
