"""Training checkpoints: written atomically (temporary file, then rename), loaded with
``torch.load(..., weights_only=True)`` (tensors and plain containers only: a checkpoint cannot
run code), and checked to be memspice's before anything in them is used."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch

from memspice.errors import CheckpointError, ConfigError
from memspice.fileio import atomic_write_bytes

FORMAT = "memspice-checkpoint"
VERSION = 1
_KEYS = ("config", "model_config", "model", "optimizer", "epoch", "batch", "history")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (the keys of a memspice checkpoint) to ``path`` atomically."""
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise ConfigError(f"a checkpoint needs {missing}")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint at ``path``; :class:`CheckpointError` says why when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is corrupt or not a checkpoint that loads safely (weights_only): {first}") \
            from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a memspice checkpoint (no format tag {FORMAT!r}); "
                              f"train one with: memspice train --out DIR")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, this memspice reads {VERSION}; "
                              f"train it again with this version")
    missing = [k for k in _KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete memspice checkpoint, missing {missing}")
    return state
