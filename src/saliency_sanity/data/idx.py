"""IDX files, the format of the MNIST distribution: parsing with checks, and writing."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from saliency_sanity.data.download import DataError


class IdxFormatError(DataError, ValueError):
    """A file is not a well-formed (gzip-compressed) IDX file."""


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse a gzip-compressed IDX file, checking its magic number and that its size matches the header."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as err:
        raise IdxFormatError(f"{path} is not a readable gzip file ({err}); delete it and fetch it again") from err
    return parse_idx(payload, source=str(path))


def parse_idx(payload: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0 or payload[2] not in _IDX_DTYPES:
        raise IdxFormatError(f"{source}: bad IDX magic number {payload[:4].hex() or '(empty)'}")
    dtype = _IDX_DTYPES[payload[2]]
    ndim = payload[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header_size:
        raise IdxFormatError(f"{source}: IDX header declares {ndim} dimensions but the file is too short for them")
    shape = struct.unpack(f">{ndim}I", payload[4:header_size])
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = len(payload) - header_size
    if actual != expected:
        raise IdxFormatError(f"{source}: IDX header shape {shape} needs {expected} data bytes, file has {actual}")
    return np.frombuffer(payload, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a gzip-compressed IDX file (the format of the MNIST distribution)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    native = np.asarray(array)
    code = codes.get(native.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {native.dtype}; use one of {sorted(str(d) for d in codes)}")
    big_endian = native.astype(_IDX_DTYPES[code], copy=False)
    header = bytes([0, 0, code, native.ndim]) + struct.pack(f">{native.ndim}I", *native.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + big_endian.tobytes())


