"""Symbolic device models: the one place where a device's equations are written.

A device is described in compact-model form, the same form Verilog-A and SPICE use:

* ports (terminal nodes); ground is the node ``"0"``;
* parameters with SI unit, default, valid range and a one-line doc;
* branches between nodes, each with a resistive current (A, flowing from ``p`` to ``n``
  through the branch) and a linear capacitance (F);
* internal states, each the voltage of an internal node, with its time derivative (1/s);
* ideal DC sources that hold internal nodes at a fixed voltage against ground.

Every expression is a sympy expression in parameter symbols and node voltages
(:func:`node_voltage`). The SPICE, Verilog-A and torch forms are generated from these
expressions by :mod:`memspice.codegen`, and tests prove the three agree.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from numbers import Real

import sympy as sp

from memspice.errors import ModelDefinitionError, ParameterError

GROUND = "0"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Names a B source's expression reads as ngspice's own constants and variables whatever a
#: subcircuit parameter of that name says (measured in ngspice 39: ``params: e=3`` gives 2.718).
SPICE_RESERVED = frozenset({"e", "pi", "time", "temper", "hertz"})

#: Range keywords of a strictly positive :class:`Parameter` (capacitances, conductances, times).
POSITIVE = {"lower": 0.0, "lower_inclusive": False}


def node_voltage(node: str) -> sp.Expr:
    """The voltage of ``node`` against ground (V) as a sympy symbol named ``V(node)``."""
    if node == GROUND:
        return sp.Integer(0)
    return sp.Symbol(f"V({node})", real=True)


def logistic(z: sp.Expr) -> sp.Expr:
    """The logistic function, written with tanh so that no target overflows for large |z|."""
    return (1 + sp.tanh(z / 2)) / 2


@dataclass(frozen=True)
class Parameter:
    """A model parameter: SI unit, default, valid interval and a one-line description."""

    name: str
    unit: str
    default: float
    doc: str
    lower: float = -math.inf
    upper: float = math.inf
    lower_inclusive: bool = True
    upper_inclusive: bool = True

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name, real=True)

    def allowed(self) -> str:
        """The valid interval as text, e.g. ``a real number in (0, inf) F``."""
        unit = f" {self.unit}" if self.unit else ""
        if math.isinf(self.lower) and math.isinf(self.upper):
            return f"any real number{unit}"
        lo = "[" if self.lower_inclusive and math.isfinite(self.lower) else "("
        hi = "]" if self.upper_inclusive and math.isfinite(self.upper) else ")"
        return f"a real number in {lo}{_fmt(self.lower)}, {_fmt(self.upper)}{hi}{unit}"

    def contains(self, value: float) -> bool:
        above = value >= self.lower if self.lower_inclusive else value > self.lower
        below = value <= self.upper if self.upper_inclusive else value < self.upper
        return above and below


def _fmt(x: float) -> str:
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:g}"


@dataclass(frozen=True)
class Constraint:
    """A relation between parameters that ranges alone cannot express, e.g. ``hold < th``."""

    relation: sp.Rel
    doc: str

    def holds(self, values: Mapping[str, float]) -> bool:
        names, check = _relation_check(self.relation)
        return bool(check(*(values[name] for name in names)))


@functools.lru_cache(maxsize=None)
def _relation_check(relation: sp.Rel) -> tuple[tuple[str, ...], Callable[..., bool]]:
    """``relation`` as a plain function of its parameters' values, and their names: sympy's
    ``subs`` costs far more, and a network's layers resolve their parameters on every forward
    pass. (Cached here, not on the :class:`Constraint`, which stays picklable.)"""
    symbols = sorted(relation.free_symbols, key=lambda symbol: symbol.name)
    return tuple(symbol.name for symbol in symbols), sp.lambdify(symbols, relation, modules="math")


@dataclass(frozen=True)
class State:
    """An internal state: the voltage of internal node ``name``, with its time derivative.

    ``initial`` may be a number or a parameter expression (a synapse's programmed weight).
    """

    name: str
    derivative: sp.Expr
    initial: sp.Expr
    lower: float
    upper: float
    doc: str

    @property
    def symbol(self) -> sp.Expr:
        return node_voltage(self.name)


@dataclass(frozen=True)
class Branch:
    """A branch from node ``p`` to node ``n``.

    ``current`` is the resistive current (A) flowing from ``p`` through the branch to ``n``;
    ``capacitance`` (F) is a linear capacitance between the nodes, a parameter expression.
    """

    name: str
    p: str
    n: str
    current: sp.Expr = sp.Integer(0)
    capacitance: sp.Expr = sp.Integer(0)
    doc: str = ""


@dataclass(frozen=True)
class Source:
    """An ideal DC voltage source holding internal node ``node`` at ``voltage`` against ground."""

    name: str
    node: str
    voltage: sp.Expr
    doc: str = ""


@dataclass(frozen=True)
class SpikeEvent:
    """What a spike of a neuron model is, read from its dynamics rather than from a membrane
    level: an upward crossing of ``level`` by its state ``state`` (e.g. the depolarizing switch
    turning on). Both engines read it from the same state (ngspice: the subcircuit's internal
    node; the torch solver: the state, on its dense output)."""

    state: str
    level: float
    doc: str = ""


@dataclass(frozen=True)
class DeviceModel:
    """A device defined once, in compact-model form (see the module docstring). ``spike``: a
    neuron model's :class:`SpikeEvent` (``None``: spikes are read on the membrane)."""

    name: str
    doc: str
    ports: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    branches: tuple[Branch, ...]
    states: tuple[State, ...] = ()
    sources: tuple[Source, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    reference: str = ""
    spike: SpikeEvent | None = None
    _by_name: dict[str, Parameter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parameters})
        self._check_definition()

    # ------------------------------------------------------------------ parameters
    def parameter(self, name: str) -> Parameter:
        try:
            return self._by_name[name]
        except KeyError:
            raise ParameterError(self.name, name, name, f"one of {sorted(self._by_name)}") from None

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.parameters}

    def resolve(self, overrides: Mapping[str, object] | None = None) -> dict[str, float]:
        """All parameter values: defaults updated by ``overrides``, validated.

        Raises :class:`ParameterError` naming the parameter, the value and what is allowed for
        an unknown name, a non-number (strings and bools included), NaN, a value out of range,
        or a violated constraint such as ``hold < th``.
        """
        values = self.defaults()
        for name, value in (overrides or {}).items():
            spec = self.parameter(name)
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ParameterError(self.name, name, value, spec.allowed())
            value = float(value)
            if math.isnan(value) or not spec.contains(value):
                raise ParameterError(self.name, name, value, spec.allowed())
            values[name] = value
        for constraint in self.constraints:
            if not constraint.holds(values):
                names = sorted(s.name for s in constraint.relation.free_symbols)
                shown = ", ".join(f"{n}={values[n]:g}" for n in names)
                raise ParameterError(self.name, names[0], shown, f"{constraint.relation} ({constraint.doc})")
        return values

    # ------------------------------------------------------------------ nodes
    @property
    def state_nodes(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def source_nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.sources)

    @property
    def port_voltages(self) -> tuple[sp.Expr, ...]:
        return tuple(node_voltage(p) for p in self.ports)

    @property
    def state_symbols(self) -> tuple[sp.Expr, ...]:
        return tuple(s.symbol for s in self.states)

    @property
    def parameter_symbols(self) -> tuple[sp.Symbol, ...]:
        return tuple(p.symbol for p in self.parameters)

    # ------------------------------------------------------------------ port form
    def eliminate_sources(self, expr: sp.Expr) -> sp.Expr:
        """Replace the voltage of each source-held node by the source's voltage."""
        return sp.sympify(expr).xreplace({node_voltage(s.node): s.voltage for s in self.sources})

    def port_currents(self) -> tuple[sp.Expr, ...]:
        """Resistive current flowing into the device at each port (A), sources eliminated."""
        return tuple(self._port_sum(p, lambda b: b.current) for p in self.ports)

    def port_charges(self) -> tuple[sp.Expr, ...]:
        """Charge stored behind each port (C), sources eliminated: its time derivative adds to
        the port current."""
        return tuple(
            self._port_sum(p, lambda b: b.capacitance * (node_voltage(b.p) - node_voltage(b.n)))
            for p in self.ports
        )

    def state_derivatives(self) -> tuple[sp.Expr, ...]:
        """Time derivative of each state (1/s), sources eliminated."""
        return tuple(self.eliminate_sources(s.derivative) for s in self.states)

    def _port_sum(self, port: str, term) -> sp.Expr:
        total = sp.Integer(0)
        for b in self.branches:
            if b.p == port:
                total += term(b)
            if b.n == port:
                total -= term(b)
        return self.eliminate_sources(total)

    # ------------------------------------------------------------------ checks
    def _check_definition(self) -> None:
        def fail(why: str) -> None:
            raise ModelDefinitionError(f"model {self.name!r}: {why}")

        for label, names in (
            ("model", [self.name]),
            ("parameter", [p.name for p in self.parameters]),
            ("node", [*self.ports, *self.state_nodes, *self.source_nodes]),
        ):
            for n in names:
                if not _NAME.match(n):
                    fail(f"{label} name {n!r} must match {_NAME.pattern}")
        nodes = [*self.ports, *self.state_nodes, *self.source_nodes]
        if len(set(nodes)) != len(nodes):
            fail(f"node names repeat: {nodes}")
        if len(self._by_name) != len(self.parameters):
            fail("parameter names repeat")
        if clash := set(nodes) & set(self._by_name):
            # ngspice's numparam would rewrite V(name) inside B-source expressions
            fail(f"names used both as node and parameter: {sorted(clash)}")
        if reserved := {p.name.lower() for p in self.parameters} & SPICE_RESERVED:
            # inside an expression ngspice reads them as its own constants (e = 2.718...), silently
            fail(f"parameter names {sorted(reserved)} are ngspice's own constants or variables; rename them")
        for p in self.parameters:
            if not p.contains(p.default):
                fail(f"default of {p.name} = {p.default} is not {p.allowed()}")
        if self.spike is not None:
            if self.spike.state not in self.state_nodes:
                fail(f"spike state {self.spike.state!r} is not one of its states {list(self.state_nodes)}")
            if not isinstance(self.spike.level, Real) or not math.isfinite(self.spike.level):
                fail(f"spike level must be a finite number; got {self.spike.level!r}")
        known_nodes = {GROUND, *nodes}
        for b in self.branches:
            if b.p not in known_nodes or b.n not in known_nodes:
                fail(f"branch {b.name} connects unknown nodes {b.p!r}, {b.n!r}")
        params = set(self.parameter_symbols)
        voltages = {node_voltage(n) for n in nodes}
        for what, expr, allowed in self._expressions(params, voltages):
            extra = sp.sympify(expr).free_symbols - allowed
            if extra:
                fail(f"{what} uses unknown symbols {sorted(map(str, extra))}")
        try:
            self.resolve()
        except ParameterError as exc:
            fail(f"defaults violate a constraint: {exc}")

    def _expressions(self, params: set, voltages: set) -> Iterable[tuple[str, sp.Expr, set]]:
        for b in self.branches:
            yield f"branch {b.name} current", b.current, params | voltages
            yield f"branch {b.name} capacitance", b.capacitance, params
        for s in self.states:
            yield f"state {s.name} derivative", s.derivative, params | voltages
            yield f"state {s.name} initial value", s.initial, params
        for s in self.sources:
            yield f"source {s.name} voltage", s.voltage, params


@dataclass(frozen=True)
class Instance:
    """A model's branches, states and sources renamed and re-parametrized for a composite."""

    branches: tuple[Branch, ...]
    states: tuple[State, ...]


def instantiate(
    model: DeviceModel,
    name: str,
    nodes: Mapping[str, str],
    parameters: Mapping[str, sp.Expr],
    state_names: Mapping[str, str] | None = None,
) -> Instance:
    """Place ``model`` inside a composite: its ports connect to ``nodes``, its parameters become
    the composite's expressions ``parameters``, its states are renamed by ``state_names``
    (default ``<name>_<state>``). A single-branch model's branch takes the instance name.

    The equations are the model's own, substituted: a composite never restates them.
    """
    missing = set(model.ports) - set(nodes) | set(model._by_name) - set(parameters)
    if missing or model.sources:
        raise ModelDefinitionError(f"instance {name} of {model.name}: unmapped {sorted(missing)}")
    state_names = dict(state_names or {})
    renamed = {p: nodes[p] for p in model.ports}
    renamed.update({s.name: state_names.get(s.name, f"{name}_{s.name}") for s in model.states})
    subs = {node_voltage(old): node_voltage(new) for old, new in renamed.items()}
    subs.update({model.parameter(k).symbol: sp.sympify(v) for k, v in parameters.items()})

    def sub(expr: sp.Expr) -> sp.Expr:
        return sp.sympify(expr).xreplace(subs)

    single = len(model.branches) == 1
    branches = tuple(
        replace(
            b,
            name=name if single else f"{name}_{b.name}",
            p=renamed[b.p] if b.p != GROUND else GROUND,
            n=renamed[b.n] if b.n != GROUND else GROUND,
            current=sub(b.current),
            capacitance=sub(b.capacitance),
        )
        for b in model.branches
    )
    states = tuple(
        replace(s, name=renamed[s.name], derivative=sub(s.derivative), initial=sub(s.initial))
        for s in model.states
    )
    return Instance(branches, states)
