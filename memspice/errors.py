"""Exceptions raised by memspice; each names what was wrong, the value and what is allowed."""

from __future__ import annotations


class MemspiceError(Exception):
    """Base class of every error memspice raises on purpose."""


class ParameterError(MemspiceError, ValueError):
    """A device parameter is unknown, not a number, out of range or violates a constraint."""

    def __init__(self, model: str, name: str, value: object, allowed: str) -> None:
        self.model = model
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{model}: parameter {name!r} = {value!r} is invalid; allowed: {allowed}")


class ModelDefinitionError(MemspiceError):
    """A device model definition is inconsistent (a bug in the definition, not in user input)."""


class SpiceError(MemspiceError):
    """ngspice failed; carries ngspice's own message and the netlist's path."""

    def __init__(self, message: str, netlist: str | None = None, output: str = "") -> None:
        self.netlist = netlist
        self.output = output
        where = f" (netlist: {netlist})" if netlist else ""
        super().__init__(f"{message}{where}")


class SimulationCancelled(SpiceError):
    """An ngspice run was stopped on request (Ctrl-C, SIGTERM) before it finished."""


class RawFileError(MemspiceError):
    """An ngspice raw file is truncated, corrupt or not a raw file."""


class NetlistError(MemspiceError, ValueError):
    """A name or value cannot go into SPICE text safely, or a circuit description is inconsistent."""


class SolverError(MemspiceError, ArithmeticError):
    """The torch transient solver failed: Newton did not converge, or a state became NaN/Inf."""


class AccuracyError(SolverError):
    """The solver's local error estimate exceeded its tolerance in strict mode (the time grid is
    too coarse for the circuit's dynamics)."""


class AccuracyWarning(UserWarning):
    """The solver's local error estimate exceeded its tolerance: results may differ from ngspice."""
