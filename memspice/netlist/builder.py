"""A netlist assembled card by card; every name and number is validated on the way in.

PySpice's ``Circuit`` would serve for small circuits, but it writes a 784×128 differential
crossbar (200k resistors) in about 9 s against well under 1 s here (``python
benchmarks/netlist_speed.py``), so memspice writes SPICE text itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from memspice.codegen import spice
from memspice.devices.model import DeviceModel
from memspice.errors import NetlistError
from memspice.netlist import text
from memspice.netlist.stimuli import Waveform


@dataclass(frozen=True)
class TranSettings:
    """A ``.tran`` analysis and its ngspice options. Times in s.

    The defaults are memspice's ground-truth settings: gear integration, reltol 1e-6,
    a maximum step well below the torch solver's step. ``matrix``: ``"klu"`` asks ngspice to
    factor with KLU (ngspice 42 and later: a 784-128-10 network 3.8x faster than with Sparse, the
    same time points, waveforms within 3e-13 V, ``benchmarks/ngspice_per_sample.py``); ngspice 39
    ignores the option and uses its Sparse 1.3 package, as with ``"sparse"``.
    """

    t_end: float
    step: float = 2e-9
    max_step: float = 5e-9
    method: str = "gear"
    reltol: float = 1e-6
    abstol: float = 1e-12
    vntol: float = 1e-6
    matrix: str = "sparse"

    def __post_init__(self) -> None:
        for field in ("t_end", "step", "max_step", "reltol", "abstol", "vntol"):
            value = getattr(self, field)
            text.number(value, field)
            if value <= 0:
                raise NetlistError(f"{field} = {value!r} must be > 0")
        if self.method not in ("gear", "trap"):
            raise NetlistError(f"method must be 'gear' or 'trap'; got {self.method!r}")
        if self.matrix not in ("sparse", "klu"):
            raise NetlistError(f"matrix must be 'sparse' or 'klu'; got {self.matrix!r}")

    def cards(self) -> list[str]:
        n = text.number
        return [
            f".options {'klu ' if self.matrix == 'klu' else ''}method={self.method} reltol={n(self.reltol)} "
            f"abstol={n(self.abstol)} vntol={n(self.vntol)}",
            f".tran {n(self.step)} {n(self.t_end)} 0 {n(self.max_step)} uic",
        ]

    def describe(self) -> dict[str, float | str]:
        """The settings as a dict, for reports."""
        return {k: getattr(self, k) for k in ("t_end", "step", "max_step", "method", "reltol", "abstol", "vntol",
                                                 "matrix")}


class Netlist:
    """An ngspice netlist under construction: ``str(netlist)`` is the complete text."""

    def __init__(self, title: str) -> None:
        self._lines = [f"* {text.comment(title)}"]
        self._models: set[str] = set()

    def comment(self, line: str) -> None:
        self._lines.append(f"* {text.comment(line)}")

    def model(self, model: DeviceModel, include_dir: str | Path | None = None) -> None:
        """Make ``model``'s subcircuit available: ``.include include_dir/<name>.lib`` (a path
        relative to the netlist's folder works in ngspice), or the subcircuit text inline."""
        if model.name in self._models:
            return
        self._models.add(model.name)
        if include_dir is None:
            self._lines.append(spice.subckt(model).rstrip())
            return
        path = str(Path(include_dir) / f"{model.name}.lib")
        if not path.isprintable() or '"' in path:
            raise NetlistError(f"invalid include path {path!r}")
        self._lines.append(f'.include "{path}"')

    def element(self, name: str, nodes: Iterable[str], value: str | float | Waveform) -> None:
        """A primitive element: ``name node... value``; ``value`` is a number or a waveform."""
        nodes = " ".join(text.node(n) for n in nodes)
        if isinstance(value, str):
            raise NetlistError(f"element {name}: pass a number or a waveform object, not text {value!r}")
        rendered = value.spice() if hasattr(value, "spice") else text.number(value, f"value of {name}")
        self._lines.append(f"{text.name(name, 'element name')} {nodes} {rendered}")

    def instance(self, name: str, nodes: Iterable[str], model: DeviceModel, params: Mapping[str, float]) -> None:
        """A subcircuit instance ``X<name> nodes model k=v...``; ``params`` are validated by the
        model and only those that differ from its defaults are written."""
        values = model.resolve(params)
        overrides = " ".join(f"{k}={text.number(v)}" for k, v in values.items() if v != model.parameter(k).default)
        card = f"X{text.name(name, 'instance name')} {' '.join(text.node(n) for n in nodes)} {model.name}"
        self._lines.append(f"{card} {overrides}".rstrip())

    def extend(self, cards: Iterable[str]) -> None:
        """Cards that the caller built from already validated names and numbers (bulk crossbars)."""
        self._lines.extend(cards)

    def save(self, vectors: Iterable[str]) -> None:
        """``.save`` only these vectors, e.g. ``v(l2_m0)``: big networks need not write every node."""
        names = []
        for vector in vectors:
            kind, _, rest = vector.partition("(")
            if kind.lower() not in ("v", "i") or not rest.endswith(")"):
                raise NetlistError(f"invalid .save vector {vector!r}: expected v(node) or i(source)")
            names.append(f"{kind.lower()}({text.node(rest[:-1])})")
        if names:
            self._lines.extend(spice.wrap_card(".save", names))

    def initial(self, voltages: Mapping[str, float]) -> None:
        """``.ic``: the node voltages (V) a transient run with ``uic`` starts from instead of 0."""
        words = [f"v({text.node(node)})={text.number(value, f'initial voltage of {node}')}"
                 for node, value in voltages.items()]
        if words:
            self._lines.extend(spice.wrap_card(".ic", words))

    def analysis(self, settings: TranSettings) -> None:
        self._lines.extend(settings.cards())

    def __str__(self) -> str:
        return "\n".join([*self._lines, ".end", ""])
