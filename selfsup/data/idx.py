"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or plain).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then ``prod(dims)`` big-endian values of the type, row-major.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IdxFormatError", "read_idx", "write_idx"]

# IDX type code -> big-endian NumPy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file is truncated, corrupt or not an IDX file at all."""


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IdxFormatError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}); download the file again"
        ) from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a writable native-endian array of its shape.

    Raises ``IdxFormatError`` (a ``ValueError``) naming the file when the magic number, type
    code or dimensions are invalid, or when the data is shorter or longer than the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    fix = "download the file again (it is truncated or corrupt) or point to the right file"
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes is too short for an IDX header; {fix}")
    zero0, zero1, code, ndim = struct.unpack(">BBBB", data[:4])
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(
            f"{path}: bad magic number {data[:4].hex()} (an IDX file starts with 0000); "
            f"this is not an IDX file, {fix}"
        )
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise IdxFormatError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known}); {fix}")
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares 0 dimensions; {fix}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(
            f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header_len}); {fix}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header_len
    if actual < expected:
        raise IdxFormatError(
            f"{path}: truncated data ({actual} bytes after the header, shape {dims} of "
            f"{dtype.name} needs {expected}); {fix}"
        )
    if actual > expected:
        raise IdxFormatError(
            f"{path}: {actual - expected} unexpected trailing bytes after the data of shape "
            f"{dims}; {fix}"
        )
    values = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header_len)
    # astype copies: the result is writable, contiguous and in native byte order (torch needs it).
    return values.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64; at least one dimension.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _CODE_TO_DTYPE.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        names = ", ".join(dt.name for dt in codes)
        raise ValueError(
            f"write_idx: dtype {array.dtype} has no IDX type code; cast to one of {names}"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"write_idx: IDX needs 1 to 255 dimensions, got {array.ndim}; reshape the array"
        )
    header = struct.pack(">BBBB", 0, 0, codes[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    payload = header + body
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
