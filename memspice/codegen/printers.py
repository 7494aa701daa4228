"""Expression printers for the text targets (ngspice B-sources and Verilog-A).

Both languages share C-like infix syntax; they differ in little, and what matters is that the
printed text never changes the meaning: every number is printed as a real (Verilog-A would
truncate ``1/2`` to 0 in integer arithmetic), small integer powers become products (ngspice's
``pow`` of a negative base differs between versions), and symbol names map to the target's
node-voltage syntax.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp
from sympy.printing.c import C99CodePrinter


class _InfixPrinter(C99CodePrinter):
    """C99 printer with real-number literals, product powers and renamed symbols."""

    def __init__(self, names: Mapping[sp.Symbol, str] | None = None) -> None:
        super().__init__({"strict": False})
        self._names = dict(names or {})

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names.get(expr, expr.name)

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"{int(expr)}.0"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return repr(float(expr))

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Half(self, expr) -> str:
        return "0.5"

    def _print_NegativeOne(self, expr) -> str:
        return "-1.0"

    def _print_One(self, expr) -> str:
        return "1.0"

    def _print_Zero(self, expr) -> str:
        return "0.0"

    def _print_Pow(self, expr: sp.Pow) -> str:
        base, exp = expr.args
        b = self.parenthesize(base, 1000)  # atomic, so products bind correctly
        if exp.is_Integer and 1 <= abs(int(exp)) <= 4:
            product = "*".join([b] * abs(int(exp)))
            return product if exp > 0 else f"1.0/({product})"
        if exp == sp.Rational(1, 2):
            return f"sqrt({self._print(base)})"
        return f"pow({self._print(base)}, {self._print(exp)})"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._nested("max", expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._nested("min", expr.args)

    def _nested(self, fn: str, args) -> str:
        first, *rest = args
        if not rest:
            return self._print(first)
        return f"{fn}({self._print(first)}, {self._nested(fn, rest)})"


class SpicePrinter(_InfixPrinter):
    """ngspice B-source expression syntax."""


class VerilogAPrinter(_InfixPrinter):
    """Verilog-A analog expression syntax."""


def spice_expr(expr: sp.Expr, names: Mapping[sp.Symbol, str] | None = None) -> str:
    return SpicePrinter(names).doprint(sp.sympify(expr))


def verilog_a_expr(expr: sp.Expr, names: Mapping[sp.Symbol, str] | None = None) -> str:
    return VerilogAPrinter(names).doprint(sp.sympify(expr))
