"""A zip archive's central directory, bounded before anything parses it.

`zipfile.ZipFile` reads the whole central directory into memory and builds an object of about
600 bytes for each entry, so a few hundred MB of upload listing millions of empty entries costs
gigabytes. Here the end-of-central-directory record (within the last 65,557 bytes) is read
first, a directory that lists more entries or bytes than the caller accepts is refused, and the
entries are then read one at a time in constant memory.

The end record is found the way `zipfile` finds it, and an archive is refused when its records
disagree with each other or leave bytes before the directory, so the entries seen here are the
entries `zipfile` and PyTorch's reader see.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

_EOCD = struct.Struct("<4s4H2LH")             # end of central directory record, 22 bytes
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")      # right before the end record, 20 bytes
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")     # right before the locator, 56 bytes
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")    # central directory file header, 46 bytes
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4s2B4HL2L2H")        # local file header, 30 bytes
_LOCAL_SIG = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
_UTF8_NAMES = 0x800
_ZIP64_EXTRA = 0x0001
_ZIP64_MARK = 0xFFFFFFFF


class ZipDirectoryError(ValueError):
    """The archive's directory is damaged or inconsistent; the message says how."""


class ZipDirectoryTooLarge(ZipDirectoryError):
    """The directory lists more entries or bytes than the caller accepts."""


@dataclass(frozen=True)
class ZipEntry:
    name: str
    method: int                 # 0 stored, 8 deflated
    crc: int
    compressed_size: int
    size: int
    header_offset: int


@dataclass(frozen=True)
class _Directory:
    count: int
    size: int
    start: int


def iter_zip_entries(fp: BinaryIO, *, max_entries: int, max_directory_bytes: int) -> Iterator[ZipEntry]:
    """The entries of the zip archive `fp`, in directory order, read one at a time.

    Raises ZipDirectoryTooLarge at once, before reading the directory, when the end record
    claims more than `max_entries` entries or `max_directory_bytes` bytes of directory;
    ZipDirectoryError for a damaged archive (possibly while iterating)."""
    directory = _find_directory(fp)
    if directory.count > max_entries:
        raise ZipDirectoryTooLarge(f"the zip archive lists {directory.count:,} entries; "
                                   f"at most {max_entries:,} are accepted")
    if directory.size > max_directory_bytes:
        raise ZipDirectoryTooLarge(f"the zip archive's directory is {directory.size:,} bytes; "
                                   f"at most {max_directory_bytes:,} are accepted")
    return _read_entries(fp, directory)


def member_data_offset(fp: BinaryIO, entry: ZipEntry) -> int:
    """Where `entry`'s data starts, from its local header, which must name the same file."""
    fp.seek(entry.header_offset)
    fixed = fp.read(_LOCAL.size)
    if len(fixed) != _LOCAL.size or fixed[:4] != _LOCAL_SIG:
        raise ZipDirectoryError(f"entry {entry.name!r} has no local header where the directory says")
    _, _, _, flags, *_, name_len, extra_len = _LOCAL.unpack(fixed)
    if _decode_name(fp.read(name_len), flags) != entry.name:
        raise ZipDirectoryError(f"entry {entry.name!r} is named differently in its local header")
    return entry.header_offset + _LOCAL.size + int(name_len) + int(extra_len)


def _decode_name(raw: bytes, flags: int) -> str:
    try:
        return raw.decode("utf-8" if flags & _UTF8_NAMES else "cp437")
    except UnicodeDecodeError:
        raise ZipDirectoryError("the zip archive has an entry name that is not valid UTF-8") from None


def _find_directory(fp: BinaryIO) -> _Directory:
    file_size = fp.seek(0, io.SEEK_END)
    tail_start = max(file_size - _MAX_COMMENT - _EOCD.size, 0)
    fp.seek(tail_start)
    tail = fp.read()
    # As zipfile: a record that ends the file with no comment, else the last signature.
    if tail[-_EOCD.size:-_EOCD.size + 4] == _EOCD_SIG and tail[-2:] == b"\0\0":
        at = len(tail) - _EOCD.size
    else:
        at = tail.rfind(_EOCD_SIG)
    if at < 0 or at + _EOCD.size > len(tail):
        raise ZipDirectoryError("not a zip archive: it has no end-of-directory record")
    _, disk, directory_disk, count_here, count, size, offset, _ = _EOCD.unpack_from(tail, at)
    end = tail_start + at
    zip64 = _read_zip64_record(fp, end)
    if zip64 is not None:
        _, _, _, _, disk, directory_disk, count_here, count, size, offset = zip64
        end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
    if disk != 0 or directory_disk != 0 or count_here != count:
        raise ZipDirectoryError("the zip archive spans several disks, which is not supported")
    start = end - size
    if start < 0 or offset != start:
        raise ZipDirectoryError("the zip archive's directory is not where its end record says "
                                "(data before the archive, or a damaged record)")
    return _Directory(count, size, start)


def _read_zip64_record(fp: BinaryIO, eocd_at: int) -> tuple[Any, ...] | None:
    if eocd_at < _ZIP64_LOCATOR.size:
        return None
    fp.seek(eocd_at - _ZIP64_LOCATOR.size)
    sig, disk, record_at, disks = _ZIP64_LOCATOR.unpack(fp.read(_ZIP64_LOCATOR.size))
    if sig != _ZIP64_LOCATOR_SIG:
        return None
    expected_at = eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    if disk != 0 or disks > 1 or record_at != expected_at:
        # zipfile reads the record right before the locator whatever the locator says; an
        # archive whose locator points elsewhere could be read two ways, so it is refused.
        raise ZipDirectoryError("the zip archive's zip64 records are inconsistent")
    fp.seek(expected_at)
    record = fp.read(_ZIP64_EOCD.size)
    if len(record) != _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIG:
        raise ZipDirectoryError("the zip archive's zip64 end record is missing")
    return _ZIP64_EOCD.unpack(record)


def _read_entries(fp: BinaryIO, directory: _Directory) -> Iterator[ZipEntry]:
    fp.seek(directory.start)
    left = directory.size
    for _ in range(directory.count):
        fixed = fp.read(_CENTRAL.size)
        if len(fixed) != _CENTRAL.size or fixed[:4] != _CENTRAL_SIG:
            raise ZipDirectoryError("the zip archive's directory is damaged")
        (_, _, _, _, _, flags, method, _, _, crc, compressed, size,
         name_len, extra_len, comment_len, _, _, _, offset) = _CENTRAL.unpack(fixed)
        raw_name = fp.read(name_len)
        extra = fp.read(extra_len)
        fp.seek(comment_len, io.SEEK_CUR)
        left -= _CENTRAL.size + name_len + extra_len + comment_len
        if left < 0 or len(raw_name) != name_len or len(extra) != extra_len:
            raise ZipDirectoryError("the zip archive's directory is truncated")
        name = _decode_name(raw_name, flags)
        size, compressed, offset = _zip64_sizes(extra, size, compressed, offset)
        yield ZipEntry(name, method, crc, compressed, size, offset)
    if left != 0:
        raise ZipDirectoryError("the zip archive's entry count does not match its directory size")


def _zip64_sizes(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """The 64-bit values an entry keeps in its zip64 extra field, read as zipfile reads them:
    one for each of size, compressed size and offset that holds 0xFFFFFFFF, in that order."""
    while len(extra) >= 4:
        kind, length = struct.unpack_from("<HH", extra)
        if length + 4 > len(extra):
            raise ZipDirectoryError("the zip archive has a damaged extra field")
        if kind == _ZIP64_EXTRA:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, 4))
            try:
                size = next(values) if size == _ZIP64_MARK else size
                compressed = next(values) if compressed == _ZIP64_MARK else compressed
                offset = next(values) if offset == _ZIP64_MARK else offset
            except StopIteration:
                raise ZipDirectoryError("the zip archive has a damaged zip64 field") from None
        extra = extra[length + 4:]
    return size, compressed, offset
