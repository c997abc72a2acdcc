"""The IDX file format (MNIST, Fashion-MNIST): read and write, plain or gzip-compressed.

The format: two zero bytes, a type byte, the number of dimensions, one big-endian uint32 per
dimension, then the values in big-endian order. Corrupt files raise a ValueError naming the file and
the fix.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mr2_core.checks import bad

__all__ = ["read_idx", "write_idx", "FMNIST_INSTALL"]

FMNIST_INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"
# IDX type byte -> numpy dtype (big-endian), from the MNIST file-format description
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` in the IDX format (gzip-compressed when ``path`` ends in ``.gz``)."""
    arr = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise bad(
            "array.dtype", arr.dtype, f"one of {sorted({np.dtype(v).name for v in _IDX_DTYPES.values()})}"
        )
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a native-endian array; corrupt files raise ValueError."""
    path = Path(path)
    fix = f"delete {path} and reinstall it ({FMNIST_INSTALL}) or download it again"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # missing, truncated, damaged deflate data
        kind = "damaged compressed data" if isinstance(exc, zlib.error) else type(exc).__name__
        raise ValueError(f"{path}: unreadable IDX file ({kind}: {exc}); {fix}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()}); {fix}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header; {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(
            f"{path}: IDX body has {len(body)} bytes, header shape {shape} needs {expected}; {fix}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
