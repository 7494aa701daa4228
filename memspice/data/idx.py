"""Reader of the IDX format of (Fashion-)MNIST: a magic number, big-endian dimensions, raw data.

Layout (LeCun's MNIST page): two zero bytes, a type code, the number of dimensions ``d``, then
``d`` big-endian uint32 sizes and the data, row-major. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from memspice.errors import DatasetError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed when its name ends in ``.gz``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:  # also gzip.BadGzipFile
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES or data[3] == 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes, but an IDX array of shape {shape} and type {dtype} "
                           f"needs {expected}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
