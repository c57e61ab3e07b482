"""IDX reader/writer: hand-built files, round trips, and every corruption the reader must catch."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from selfsup.data.idx import IdxFormatError, read_idx, write_idx


def _handmade_idx(code: int, dims: tuple[int, ...], body: bytes) -> bytes:
    """IDX bytes written from the format description, independently of ``write_idx``."""
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize("compress", [False, True])
def test_read_handmade_uint8_and_int32(tmp_path: Path, compress: bool) -> None:
    pixels = bytes(range(24))  # 2 images of 3x4, row-major
    raw = _handmade_idx(0x08, (2, 3, 4), pixels)
    # int32 values -1, 7, 65536 big-endian
    raw_i32 = _handmade_idx(0x0C, (3,), struct.pack(">3i", -1, 7, 65536))
    suffix = ".gz" if compress else ""
    p8, p32 = tmp_path / f"a-idx3-ubyte{suffix}", tmp_path / f"b-idx1{suffix}"
    p8.write_bytes(gzip.compress(raw) if compress else raw)
    p32.write_bytes(gzip.compress(raw_i32) if compress else raw_i32)

    a = read_idx(p8)
    assert a.dtype == np.uint8 and a.shape == (2, 3, 4)
    assert a[1, 2, 3] == 23 and a[0, 1, 0] == 4  # row-major layout
    b = read_idx(p32)
    assert b.dtype == np.int32 and b.dtype.isnative
    assert b.tolist() == [-1, 7, 65536]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_write_read_round_trip(tmp_path: Path, dtype: str, compress: bool) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 2)) * 100).astype(dtype)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, array)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\x00\x00")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[0, 0, 0] = 1  # writable (torch.from_numpy needs that without a warning)


def test_writer_matches_handmade_bytes(tmp_path: Path) -> None:
    array = np.array([[1, 2], [300, -4]], dtype=np.int16)
    write_idx(tmp_path / "w", array)
    expected = _handmade_idx(0x0B, (2, 2), struct.pack(">4h", 1, 2, 300, -4))
    assert (tmp_path / "w").read_bytes() == expected


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    raw = _handmade_idx(0x08, (4,), bytes([9, 8, 7, 6]))
    (tmp_path / "plain-name").write_bytes(gzip.compress(raw))
    assert read_idx(tmp_path / "plain-name").tolist() == [9, 8, 7, 6]


CORRUPT_CASES = {
    "truncated data": _handmade_idx(0x08, (2, 3, 4), bytes(23)),
    "trailing bytes": _handmade_idx(0x08, (2, 2), bytes(5)),
    "bad magic": b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00",
    "unknown type code": _handmade_idx(0x07, (1,), b"\x00"),
    "zero dimensions": b"\x00\x00\x08\x00",
    "truncated header": b"\x00\x00\x08\x03" + struct.pack(">I", 2),
    "too short": b"\x00\x00",
}
CORRUPT_WORDS = {
    "truncated data": "truncated data",
    "trailing bytes": "trailing",
    "bad magic": "magic",
    "unknown type code": "type code",
    "zero dimensions": "0 dimensions",
    "truncated header": "truncated header",
    "too short": "too short",
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", sorted(CORRUPT_CASES))
def test_corrupt_files_raise_clear_error(tmp_path: Path, case: str, compress: bool) -> None:
    raw = CORRUPT_CASES[case]
    path = tmp_path / "bad-idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(IdxFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert CORRUPT_WORDS[case] in message
    assert "download the file again" in message
    assert isinstance(info.value, ValueError)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(_handmade_idx(0x08, (100,), bytes(range(100))))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(IdxFormatError, match="gzip stream is truncated or corrupt"):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))
