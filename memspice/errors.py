"""Exceptions raised by memspice; each names what was wrong, the value and what is allowed."""

from __future__ import annotations


class MemspiceError(Exception):
    """Base class of every error memspice raises on purpose."""


class ConfigError(MemspiceError, ValueError):
    """An option or argument is out of range, of the wrong kind, or inconsistent with another (the
    message names it, the value and what is allowed)."""


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


class WriteThresholdError(SolverError):
    """A synapse cell's voltage reached its write threshold, where the torch solver's fixed
    conductances no longer describe the circuit (:mod:`memspice.solver.cells`)."""


class MemspiceWarning(UserWarning):
    """Base class of memspice's warnings (the command line shows them as one line, like its errors)."""


class CellWriteWarning(MemspiceWarning):
    """Synapse cells reached their write thresholds and the user allowed it: a chip would rewrite them."""


class AccuracyWarning(MemspiceWarning):
    """The solver's local error estimate exceeded its tolerance: results may differ from ngspice."""


class JournalError(MemspiceError):
    """A verify journal holds a line that is not a finished sample's reading."""


class UnsafeNetlistError(MemspiceError):
    """A netlist, or a file it includes, holds ngspice control language, or includes a file that
    cannot be checked."""


class RunError(MemspiceError):
    """A run folder cannot be used as asked (it holds another run, or nothing to resume)."""


class CheckpointError(MemspiceError):
    """A checkpoint is missing, corrupt, or not a memspice checkpoint."""


class DatasetError(MemspiceError):
    """A dataset is missing, unreadable or not what it claims to be."""


class NewtonFailure(SolverError):
    """Newton's method did not converge within a step (the caller may split the step)."""
