"""Ctrl-C and SIGTERM end a command the same way: as a :class:`KeyboardInterrupt` in the main thread.

Every long job then unwinds through its ``finally`` and ``except BaseException`` blocks: ngspice
runs kill their process groups and remove their run folders (:mod:`memspice.spice.runner`),
pools start nothing more and hand on what finished (:mod:`memspice.spice.pool`), training saves
its checkpoint. The command exits with the shell's status for the signal: 130 for SIGINT, 143 for
SIGTERM.
"""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (call it from there)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number: 143 after SIGTERM, 130 after Ctrl-C (SIGINT)."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
