"""Safe SPICE tokens: every name and number that memspice writes into a netlist passes here.

A netlist is line-oriented text: a newline, a ``+`` or ``.`` at the start of a line, whitespace,
``=``, braces or a comment character inside a name would let a value start a new card or change
the meaning of one (netlist injection). Names are therefore restricted to identifiers and numbers
to finite reals; anything else is refused with a :class:`NetlistError`.
"""

from __future__ import annotations

import math
import re
from numbers import Real

import numpy as np

from memspice.errors import NetlistError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NODE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_MAX_LEN = 200


def name(value: object, what: str = "name") -> str:
    """An element, model or subcircuit name: letters, digits and ``_`` (dots separate
    hierarchy levels), starting with a letter or ``_``."""
    if not isinstance(value, str) or len(value) > _MAX_LEN or not _NAME.fullmatch(value):
        raise NetlistError(
            f"invalid SPICE {what} {value!r}: allowed are letters, digits and '_' (dot-separated for "
            f"hierarchy), starting with a letter or '_', at most {_MAX_LEN} characters"
        )
    return value


def node(value: object) -> str:
    """A node name: letters, digits and ``_`` (``0`` is ground)."""
    if not isinstance(value, str) or len(value) > _MAX_LEN or not _NODE.fullmatch(value):
        raise NetlistError(
            f"invalid SPICE node name {value!r}: allowed are letters, digits and '_' "
            f"(dot-separated for hierarchy), at most {_MAX_LEN} characters"
        )
    return value


def number(value: object, what: str = "value") -> str:
    """A finite real number as exact SPICE text (``repr`` of the float)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise NetlistError(f"invalid SPICE {what} {value!r}: expected a finite real number")
    try:
        x = float(value)
    except OverflowError:  # an integer beyond float's range
        x = math.inf
    if not math.isfinite(x):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}...({len(repr(value))} characters)"
        raise NetlistError(f"invalid SPICE {what} {shown}: expected a finite real number")
    return repr(x)


def numbers(values: np.ndarray, what: str = "values") -> np.ndarray:
    """Many finite reals as SPICE text, vectorized for large crossbars: an array of strings."""
    try:
        array = np.asarray(values, dtype=float)
    except OverflowError:
        raise NetlistError(f"invalid SPICE {what}: a value beyond the range of floating point") from None
    except (TypeError, ValueError):
        raise NetlistError(f"invalid SPICE {what}: expected an array of finite real numbers") from None
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NetlistError(
            f"invalid SPICE {what}: {float(array[index])!r} at index {index}; expected finite real numbers"
        )
    return np.array([repr(x) for x in array.ravel().tolist()], dtype=object).reshape(array.shape)


def comment(text: object) -> str:
    """A one-line comment or title: printable text without line breaks."""
    if not isinstance(text, str) or not text.isprintable():  # line breaks are not printable
        raise NetlistError(f"invalid SPICE comment {text!r}: it must be one line of printable text")
    return text
