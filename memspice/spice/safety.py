"""Default deny for ngspice's control language, and the list of files a netlist makes ngspice read.

ngspice reads commands, not only circuit cards, from a deck: a ``.control`` ... ``.endc`` block,
a ``*#`` line anywhere, a file whose first line is ``*ng_script`` — in the top file and in every
file pulled in by ``.include`` or ``.lib``. Its control language can run shell commands, load
native code and write files by more routes than a list of forbidden commands can name, so an
untrusted deck may hold no control language at all: every file it includes (resolved the way
ngspice resolves them, recursively) is read here first, and the first control line found is
refused with its file and line. memspice's own netlists need none: ``ngspice -b`` runs the
``.tran`` card.

Lines are read the way ngspice 39 reads them (``frontend/inpcom.c``): only ``\\n`` ends a line,
``\\r`` is dropped wherever it stands, a NUL ends the line's text, and the first line of the top
file is cut after 4999 bytes (XSPICE builds read it with ``fgets`` into a 5000-byte buffer). A
line counts as control if it starts so once any leading blanks, control characters or non-ASCII
bytes are skipped: more than ngspice skips, so that nothing it would run gets through.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memspice.errors import UnsafeNetlistError

ALLOW_HINT = "simulate it only if you trust it, with --allow-control (allow_control=True)"
_CONTROL_PREFIXES = {
    ".control": "a .control block (ngspice's control language)",
    ".endc": "the end of a .control block",
    "*#": "a '*#' line (ngspice runs it as a control command)",
    "*ng_script": "an '*ng_script' header (ngspice runs the file as a script)",
}
_FIRST_LINE_BYTES = 4999  # XSPICE's fgets(big_buff, 5000, fp) on the top file's first line
_SKIPPED = re.compile(r"[\x00-\x20\x7f-\xff]*")  # blanks, control characters, non-ASCII bytes (latin-1)
_ENV_PATH = re.compile(r"\$([^/\\]+)")


@dataclass
class DeckInputs:
    """What ngspice reads for a deck: ``files`` (the top file first, then each included file,
    resolved) and the environment ``variables`` that include paths name (``$PDK_ROOT/...``)."""

    files: list[Path] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)


def deck_lines(data: bytes, top: bool) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line as ngspice reads ``data`` (the raw bytes of a file);
    ``top`` for the file named on ngspice's command line."""
    raw = data.split(b"\n")
    if top and raw and len(raw[0]) > _FIRST_LINE_BYTES:
        first = raw[0]
        raw[0:1] = [first[:_FIRST_LINE_BYTES], first[_FIRST_LINE_BYTES:]]
        numbers = [1, *range(1, len(raw))]
    else:
        numbers = list(range(1, len(raw) + 1))
    for number, line in zip(numbers, raw):
        line = line.replace(b"\r", b"").split(b"\0", 1)[0]
        yield number, line.decode("latin-1")


def _card(line: str) -> str:
    """The line from its first character that ngspice could read as the start of a card."""
    return line[_SKIPPED.match(line).end():]


def control_kind(line: str) -> str | None:
    """What control language ``line`` (one line, as :func:`deck_lines` gives it) holds, or None."""
    card = _card(line).lower()
    for prefix, what in _CONTROL_PREFIXES.items():
        if card.startswith(prefix):
            return what
    return None


def included_names(line: str) -> tuple[list[str], bool]:
    """The file names a ``.include``/``.inc*``/``.lib`` card may make ngspice open — the first
    argument, as given and cut at each character that can start an end-of-line comment (ngspice
    strips those first), so that whichever ngspice reads has been checked — and whether one of
    them must exist: not for ``.lib NAME`` alone, which opens a section of a library file."""
    card = _card(line)
    lower = card.lower()
    if not (lower.startswith(".inc") or lower.startswith(".lib")):
        return [], False
    words = card.split(None, 1)
    rest = words[1].strip() if len(words) > 1 else ""
    if not rest:
        return [], False
    if rest[0] in "\"'":
        end = rest.find(rest[0], 1)
        token, after = (rest[1:end], rest[end + 1:]) if end > 0 else (rest[1:], "")
    else:
        token, after = (rest.split(None, 1) + [""])[:2]
    names = [token] + [token.split(c, 1)[0] for c in (";", "$", "//") if c in token[1:]]
    section_header = lower.startswith(".lib") and not after.strip()
    return [n for n in dict.fromkeys(names) if n], not section_header


def _expand(name: str, variables: set[str]) -> str | None:
    """``$VAR/...`` and ``~/`` expanded as ngspice does (None if a variable is unset); the
    variables used are added to ``variables``."""
    if name.startswith("$"):
        missing = []

        def value(match: re.Match) -> str:
            variables.add(match.group(1))
            if match.group(1) not in os.environ:
                missing.append(match.group(1))
            return os.environ.get(match.group(1), "")

        expanded = _ENV_PATH.sub(value, name.replace("\\", "/"), count=2)
        return None if missing else expanded
    if name.startswith("~/"):
        return os.path.expanduser(name)
    return name


def _candidates(name: str, including_dir: Path, cwd: Path, searched: list[Path], variables: set[str]) -> list[Path]:
    """Every path ngspice may open for an included ``name``: the run folder's, the including
    file's folder's, then each folder it has read a file from (its ``sourcepath``)."""
    expanded = _expand(name, variables)
    if expanded is None:
        return []
    path = Path(expanded)
    if path.is_absolute():
        return [path]
    return [folder / path for folder in dict.fromkeys([cwd, including_dir, *searched])]


def netlist_files(top: str | os.PathLike, cwd: str | os.PathLike, allow_control: bool = False,
                  where: str | None = None, text: str | None = None) -> DeckInputs:
    """Check the deck in the file ``top`` as ngspice would run it from the folder ``cwd``, and
    return what it reads (:class:`DeckInputs`), e.g. for the sandbox to show ngspice. Unless
    ``allow_control``, raise :class:`UnsafeNetlistError` naming the file and line of the first
    control language found, or of an include that names no readable regular file (ngspice would
    fail or block there; a device or FIFO is not read).
    ``where`` names the top file in messages (default: its path); ``text`` is the top deck when
    it is not read from ``top`` (the shared library's netlists, whose includes resolve from
    ``cwd``)."""
    top, cwd = Path(top).resolve(), Path(cwd).resolve()
    inputs = DeckInputs()
    files = inputs.files
    pending: list[tuple[Path, str]] = [(top, where or str(top))]
    while pending:
        path, shown = pending.pop(0)
        if path in files:
            continue
        files.append(path)
        try:
            data = text.encode("utf-8", "surrogateescape") if path == top and text is not None else path.read_bytes()
        except OSError as exc:
            raise UnsafeNetlistError(f"{shown}: cannot read it ({exc.strerror})") from None
        for number, line in deck_lines(data, top=path == top):
            if _card(line)[:1] not in (".", "*"):  # an element card (most of a netlist): no control, no include
                continue
            what = control_kind(line)
            if what and not allow_control:
                raise UnsafeNetlistError(f"{shown}, line {number}: {what} is refused; {ALLOW_HINT}")
            names, required = included_names(line)
            for name in names:
                folders = [f.parent for f in files]
                found = [p for p in _candidates(name, path.parent, cwd, folders, inputs.variables) if p.exists()]
                if not found and required and not allow_control:  # with control, a script may set sourcepath
                    looked = ", ".join(map(str, dict.fromkeys([cwd, path.parent, *folders])))
                    raise UnsafeNetlistError(f"{shown}, line {number}: included file {name!r} not found, so it "
                                             f"cannot be checked (looked in {looked})")
                for candidate in found:
                    if not stat.S_ISREG(candidate.stat().st_mode):
                        if allow_control:
                            continue
                        raise UnsafeNetlistError(f"{shown}, line {number}: included {str(candidate)!r} is not a "
                                                 "regular file")
                    resolved = candidate.resolve()
                    pending.append((resolved, str(resolved)))
    return inputs
