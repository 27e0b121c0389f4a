"""The bounded zip directory reader: the same entries as zipfile on real archives, and hostile
directories refused from their end record, in bounded memory."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from scoring.parsers.zipdir import (
    ZipDirectoryError,
    ZipDirectoryTooLarge,
    iter_zip_entries,
    member_data_offset,
)

UNBOUNDED = {"max_entries": 10**9, "max_directory_bytes": 10**12}


def many_entries_zip(n: int, root: str = "archive/") -> bytes:
    """A real zip of `n` empty stored entries, written directly (zipfile takes seconds for this)."""
    local, central = io.BytesIO(), io.BytesIO()
    for i in range(n):
        name = f"{root}{i}".encode()
        offset = local.tell()
        local.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0,
                                  len(name), 0, 0, 0, 0, 0, offset) + name)
    start, size = local.tell(), central.tell()
    end = start + size
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, start)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local.getvalue() + central.getvalue() + zip64 + locator + eocd


def claims_huge_directory(path, directory_bytes: int, entries: int = 3) -> None:
    """A sparse file whose end record claims a directory of `directory_bytes` right before it."""
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04")
        f.seek(directory_bytes + 4)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, directory_bytes, 4, 0))


def _zipfile_view(data: bytes) -> list[tuple]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, i.compress_type, i.CRC, i.compress_size, i.file_size, i.header_offset)
                for i in z.infolist()]


def _our_view(data: bytes) -> list[tuple]:
    return [(e.name, e.method, e.crc, e.compressed_size, e.size, e.header_offset)
            for e in iter_zip_entries(io.BytesIO(data), **UNBOUNDED)]


def _archives() -> dict[str, bytes]:
    out = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/stored", b"hello")
        z.writestr("a/deflated", b"x" * 1000, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("a/ünïcode", b"1")
        z.comment = b"a comment with PK in it"
    out["comment, deflate, utf-8 names"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, z.open("big", "w", force_zip64=True) as w:
        w.write(b"abc")
    out["zip64 entry"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, scores=np.zeros((3, 4)))
    out["npz"] = buf.getvalue()
    out["70,000 entries (zip64 end record)"] = many_entries_zip(70_000)
    return out


@pytest.mark.parametrize("name", list(_archives()))
def test_entries_are_the_ones_zipfile_sees(name):
    data = _archives()[name]
    assert _our_view(data) == _zipfile_view(data)
    f = io.BytesIO(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for entry in iter_zip_entries(io.BytesIO(data), **UNBOUNDED):
            if entry.method == 0:
                start = member_data_offset(f, entry)
                assert data[start:start + entry.size] == z.read(entry.name)


def test_many_entries_are_refused_from_the_end_record_in_bounded_memory():
    data = many_entries_zip(150_000)
    tracemalloc.start()
    try:
        with pytest.raises(ZipDirectoryTooLarge, match="lists 150,000 entries; at most 100,000"):
            iter_zip_entries(io.BytesIO(data), max_entries=100_000, max_directory_bytes=16 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak   # zipfile.ZipFile needs ~90 MB for this directory


def test_reading_a_large_directory_takes_constant_memory():
    data = many_entries_zip(60_000)
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_zip_entries(io.BytesIO(data), max_entries=100_000,
                                                max_directory_bytes=16 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 1 << 20, peak


def test_end_record_claiming_a_huge_directory_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "claims.zip"
    claims_huge_directory(path, 300 << 20)
    tracemalloc.start()
    try:
        with open(path, "rb") as f, pytest.raises(ZipDirectoryTooLarge, match="directory is 314,572,800 bytes"):
            iter_zip_entries(f, max_entries=100_000, max_directory_bytes=16 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("mangle, message", [
    (lambda d: d[:-22], "no end-of-directory record"),
    (lambda d: b"junk" + d, "not where its end record says"),
    (lambda d: d[:-22] + d[-22:-12] + struct.pack("<H", 5) + d[-10:], "spans several disks"),
])
def test_damaged_or_ambiguous_archives_are_refused(mangle, message):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/b", b"hello")
    with pytest.raises(ZipDirectoryError, match=message):
        list(iter_zip_entries(io.BytesIO(mangle(buf.getvalue())), **UNBOUNDED))


def test_entry_count_must_match_the_directory():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/b", b"1")
        z.writestr("a/c", b"2")
    data = bytearray(buf.getvalue())
    struct.pack_into("<2H", data, len(data) - 22 + 8, 1, 1)   # claims one entry of two
    with pytest.raises(ZipDirectoryError, match="entry count does not match"):
        list(iter_zip_entries(io.BytesIO(bytes(data)), **UNBOUNDED))
