"""`.npy` / `.npz` predictions: rows in split order, shape and dtype checked from the header
before any data is read (a forged header cannot make us allocate or read gigabytes).

An .npz is bounded before it is decompressed: its zip directory from the end record, each
member's expansion from the directory's sizes. Its data is then read chunk by chunk and float
scores are checked as they arrive, so memory stays proportional to the upload.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from scoring.parsers.codes import ErrorCode
from scoring.parsers.common import (
    bad_score_mask,
    describe_bad_value,
    fail,
    first_bad,
    shown,
)
from scoring.parsers.zipdir import (
    ZipDirectoryError,
    ZipDirectoryTooLarge,
    iter_zip_entries,
)
from scoring.types import Predictions, Split, TaskSpec

NPZ_KEYS = ("scores", "predictions", "probabilities")   # preferred when an .npz holds several
_CHECK_CHUNK = 1 << 24   # elements per finiteness check, to bound temporaries
# An .npz of predictions holds one array, or a few with one named 'scores'.
_NPZ_MAX_ENTRIES = 1_000
_NPZ_MAX_DIRECTORY_BYTES = 1 << 20
# Scores compress little (floats by 1-3 times, uint8 probabilities by a few times). Beyond the
# largest classification file (10,000 x 100 float64 is 8 MB), a member may expand at most this
# many times its compressed size, so that a small upload cannot claim gigabytes.
_NPZ_MAX_EXPANSION = 32
_NPZ_FREE_EXPANSION_BYTES = 16 << 20
_NPZ_READ_CHUNK_BYTES = 1 << 22


def _expected_shape(task: TaskSpec, split: Split) -> tuple[int, ...]:
    if task.kind == "segmentation":
        hw = tuple(task.image_size) if task.image_size else tuple(split.labels.shape[1:])
        return (split.n, task.num_classes, *hw)
    return (split.n, task.num_classes)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _read_header(fp: io.BufferedIOBase, filename: str | None, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fp, max_header_size=10_000)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fp, max_header_size=10_000)
        # The private reader is numpy's only one for format 3.0 headers; its stubs leave it out.
        header: tuple[tuple[int, ...], bool, np.dtype] = np.lib.format._read_array_header(  # type: ignore[attr-defined]
            fp, version, max_header_size=10_000)
        return header
    except Exception as exc:  # noqa: BLE001 - a forged header can raise nearly anything
        raise fail(ErrorCode.BAD_ARRAY, f"{where} is not a valid .npy array "
                   f"({type(exc).__name__})",
                   filename=filename) from None


def _check_header(shape: tuple[int, ...], dtype: np.dtype, task: TaskSpec, split: Split,
                  filename: str | None, where: str) -> str:
    """'labels' or 'scores' for a header that fits the task; raises otherwise."""
    if dtype.hasobject:
        raise fail(ErrorCode.WRONG_DTYPE, f"{where} holds Python objects (dtype {dtype}); pickled "
                   "data is never loaded, save a numeric array", filename=filename)
    expected = _expected_shape(task, split)
    if task.kind == "classification" and len(shape) == 1:
        if shape != (split.n,):
            raise fail(ErrorCode.WRONG_SHAPE, f"{where} has shape {_fmt_shape(shape)}, expected "
                       f"({split.n},) class indices or {_fmt_shape(expected)} scores",
                       filename=filename)
        if dtype.kind not in "iu":
            raise fail(ErrorCode.WRONG_DTYPE, f"{where}: class indices must be integers, found "
                       f"dtype {dtype}", filename=filename)
        return "labels"
    if shape != expected:
        rows = " (rows in split order, one per test item)" if len(shape) == len(expected) and \
            shape[0] != expected[0] else ""
        raise fail(ErrorCode.WRONG_SHAPE, f"{where} has shape {_fmt_shape(shape)}, expected "
                   f"{_fmt_shape(expected)}{rows}", filename=filename)
    if dtype != np.uint8 and not (dtype.kind == "f" and dtype.itemsize in (2, 4, 8)):
        raise fail(ErrorCode.WRONG_DTYPE, f"{where} has dtype {dtype}, expected uint8 "
                   "(probability x 255) or float16/32/64 scores", filename=filename)
    return "scores"


def _check_values(arr: np.ndarray, task: TaskSpec, filename: str | None, where: str) -> None:
    if arr.dtype == np.uint8:
        return
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    step = max(1, _CHECK_CHUNK // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], step):
        found = bad_score_mask(flat[start:start + step], task)
        if found is None:
            continue
        mask, code = found
        r, c = first_bad(mask)  # type: ignore[misc]
        index = np.unravel_index(start * flat.shape[1] + r * flat.shape[1] + c, arr.shape)
        idx = ", ".join(str(int(i)) for i in index)
        value = float(flat[start + r, c])
        raise fail(code, f"{where}: element [{idx}]: {describe_bad_value(code, value)}",
                   filename=filename)


def _finish(arr: np.ndarray, layout: str, task: TaskSpec, filename: str | None, where: str,
            fmt: str, *, values_checked: bool = False) -> Predictions:
    if layout == "labels":
        labels = np.asarray(arr).astype(np.int64)
        bad = (labels < 0) | (labels >= task.num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise fail(ErrorCode.CLASS_OUT_OF_RANGE, f"{where}: element [{i}] = {int(labels[i])} "
                       f"is out of range; expected class indices 0..{task.num_classes - 1}",
                       filename=filename)
        return Predictions(labels=labels, source_format=fmt)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not values_checked:
        _check_values(arr, task, filename, where)
    if arr.dtype != np.uint8:
        target = np.float32 if task.kind == "segmentation" else np.float64
        arr = arr.astype(target, copy=False)
    return Predictions(scores=arr, source_format=fmt)


def _read_npz_data(fp: io.BufferedIOBase, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, layout: str,
                   task: TaskSpec, filename: str | None, where: str) -> np.ndarray:
    """The member's data, read into the array chunk by chunk. Float scores are checked as each
    chunk arrives, so a bad value ends the read before the rest is decompressed."""
    order: Literal["C", "F"] = "F" if fortran else "C"
    arr = np.empty(shape, dtype, order=order)
    flat = arr.reshape(-1, order=order)          # a view, in the order the bytes come
    raw = flat.view(np.uint8)
    check = layout == "scores" and dtype != np.uint8
    step = max(1, _NPZ_READ_CHUNK_BYTES // dtype.itemsize) * dtype.itemsize
    got = checked = 0
    while got < raw.size:
        # ndarray has the buffer protocol; numpy's stubs declare __buffer__ only for Python >= 3.12.
        n = fp.readinto(raw[got:got + step])  # type: ignore[arg-type]
        if not n:
            raise fail(ErrorCode.BAD_ARRAY, f"{where} is truncated: {got} of {raw.size} data bytes",
                       filename=filename)
        got += n
        if check:
            _check_flat_values(flat, checked, got // dtype.itemsize, shape, order, task, filename, where)
            checked = got // dtype.itemsize
    return arr


def _check_flat_values(flat: np.ndarray, start: int, stop: int, shape: tuple[int, ...], order: Literal["C", "F"],
                       task: TaskSpec, filename: str | None, where: str) -> None:
    found = bad_score_mask(flat[start:stop], task)
    if found is None:
        return
    mask, code = found
    (offset,) = first_bad(mask)  # type: ignore[misc]
    index = np.unravel_index(start + offset, shape, order=order)
    idx = ", ".join(str(int(i)) for i in index)
    value = float(flat[start + offset])
    raise fail(code, f"{where}: element [{idx}]: {describe_bad_value(code, value)}", filename=filename)


def parse_npy(source: bytes | Path, task: TaskSpec, split: Split,
              filename: str | None = None) -> Predictions:
    where = "the .npy array"
    if isinstance(source, Path):
        with open(source, "rb") as fp:
            shape, fortran, dtype = _read_header(fp, filename, where)
            layout = _check_header(shape, dtype, task, split, filename, where)
            offset = fp.tell()
            size = fp.seek(0, io.SEEK_END)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size - offset < nbytes:
            raise fail(ErrorCode.BAD_ARRAY, f"{where} is truncated: {size - offset} of {nbytes} "
                       "data bytes", filename=filename)
        # Memory-map: a segmentation submission can be gigabytes; uint8 stays on disk.
        arr = np.memmap(source, dtype=dtype, mode="r", offset=offset, shape=shape,
                        order="F" if fortran else "C") if nbytes else np.empty(shape, dtype)
        arr = np.asarray(arr) if layout == "labels" else arr
        return _finish(arr, layout, task, filename, where, "npy")
    buf = io.BytesIO(source)
    shape, fortran, dtype = _read_header(buf, filename, where)
    layout = _check_header(shape, dtype, task, split, filename, where)
    offset = buf.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(source) - offset < nbytes:
        raise fail(ErrorCode.BAD_ARRAY, f"{where} is truncated: {len(source) - offset} of "
                   f"{nbytes} data bytes", filename=filename)
    # A read-only view of the upload's bytes: no copy of a large uint8 array.
    arr = np.frombuffer(source, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)),
                        offset=offset).reshape(shape, order="F" if fortran else "C")
    return _finish(arr, layout, task, filename, where, "npy")


def parse_npz(source: bytes | Path, task: TaskSpec, split: Split,
              filename: str | None = None) -> Predictions:
    with open(source, "rb") if isinstance(source, Path) else io.BytesIO(source) as archive:
        archive_size = _check_npz_directory(archive, filename)
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise fail(ErrorCode.BAD_ARRAY, f"not a readable .npz (zip) archive ({exc})"[:200],
                       filename=filename) from None
        with zf:
            info = _npz_member(zf, filename)
            where = f"array {shown(info.filename[:-4], 20)} of the .npz"
            _check_npz_member_size(info, archive_size, task, split, filename, where)
            try:
                with _open_member(zf, info) as fp:
                    shape, fortran, dtype = _read_header(fp, filename, where)
                    layout = _check_header(shape, dtype, task, split, filename, where)
                    arr = _read_npz_data(fp, shape, fortran, dtype, layout, task, filename, where)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise fail(ErrorCode.BAD_ARRAY, f"{where} cannot be read ({exc})"[:200],
                           filename=filename) from None
    return _finish(arr, layout, task, filename, where, "npz", values_checked=True)


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> zipfile.ZipExtFile:
    """The member opened for reading. zipfile always returns a ZipExtFile here, which has the
    readinto that _read_npz_data fills the array with; typeshed types it as plain IO[bytes]."""
    fp = zf.open(info)
    assert isinstance(fp, zipfile.ZipExtFile)
    return fp


def _check_npz_directory(archive: BinaryIO, filename: str | None) -> int:
    """The archive's size, once its zip directory is known to be small and consistent: zipfile
    would otherwise read a directory of millions of entries into memory."""
    try:
        for _ in iter_zip_entries(archive, max_entries=_NPZ_MAX_ENTRIES,
                                  max_directory_bytes=_NPZ_MAX_DIRECTORY_BYTES):
            pass
    except ZipDirectoryTooLarge as exc:
        raise fail(ErrorCode.ARCHIVE_TOO_LARGE, f"{exc}: an .npz of predictions holds one array, or a "
                   "few with one named 'scores'", filename=filename) from None
    except ZipDirectoryError as exc:
        raise fail(ErrorCode.BAD_ARRAY, f"not a readable .npz (zip) archive ({exc})"[:200],
                   filename=filename) from None
    return archive.seek(0, io.SEEK_END)


def _npz_member(zf: zipfile.ZipFile, filename: str | None) -> zipfile.ZipInfo:
    infos = [i for i in zf.infolist() if not i.is_dir()]
    others = [i.filename for i in infos if not i.filename.endswith(".npy")]
    if others:
        raise fail(ErrorCode.NPZ_ARRAYS, f"the zip archive holds {shown(others[0])}, which is "
                   "not a .npy array; an .npz must hold only arrays (model files are "
                   "submitted as models, not predictions)", filename=filename)
    if not infos:
        raise fail(ErrorCode.NPZ_ARRAYS, "the .npz holds no arrays", filename=filename)
    if len(infos) == 1:
        return infos[0]
    names = [i.filename[:-4] for i in infos]
    preferred = [k for k in NPZ_KEYS if k in names]
    if not preferred:
        listed = ", ".join(shown(n, 20) for n in names[:6])
        raise fail(ErrorCode.NPZ_ARRAYS, f"the .npz holds {len(names)} arrays ({listed}); "
                   "save exactly one array, or name the scores 'scores'", filename=filename)
    return infos[names.index(preferred[0])]


def _check_npz_member_size(info: zipfile.ZipInfo, archive_size: int, task: TaskSpec, split: Split,
                           filename: str | None, where: str) -> None:
    """Zip-bomb guards, from the sizes the directory declares (zipfile never decompresses more)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # np.savez writes only these two; zipfile's bzip2 and LZMA readers decompress a whole
        # input chunk before trimming to the declared size, so their output is not bounded by it.
        raise fail(ErrorCode.NPZ_ARRAYS, f"{where} is compressed with zip method {info.compress_type}; "
                   "expected an archive written by np.savez or np.savez_compressed (stored or deflated)",
                   filename=filename)
    expected = _expected_shape(task, split)
    limit = int(np.prod(expected, dtype=np.int64)) * 8 + 65536   # float64 scores plus a header
    if info.file_size > limit:
        raise fail(ErrorCode.WRONG_SHAPE, f"{where} is {info.file_size} bytes uncompressed, "
                   f"more than scores of shape {_fmt_shape(expected)} can take",
                   filename=filename)
    compressed = min(info.compress_size, archive_size)
    if info.file_size > max(_NPZ_FREE_EXPANSION_BYTES, _NPZ_MAX_EXPANSION * compressed):
        raise fail(ErrorCode.TOO_COMPRESSED, f"{where} expands from {compressed:,} to "
                   f"{info.file_size:,} bytes; above {_NPZ_FREE_EXPANSION_BYTES >> 20} MB a member "
                   f"may expand at most {_NPZ_MAX_EXPANSION} times: save the array uncompressed "
                   "(np.savez or np.save, not np.savez_compressed)", filename=filename)
