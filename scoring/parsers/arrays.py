"""`.npy` / `.npz` predictions: rows in split order, shape and dtype checked from the header
before any data is read (a forged header cannot make us allocate or read gigabytes)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scoring.parsers.codes import ErrorCode
from scoring.parsers.common import bad_score_mask, describe_bad_value, fail, first_bad, shown
from scoring.types import Predictions, Split, TaskSpec

NPZ_KEYS = ("scores", "predictions", "probabilities")   # preferred when an .npz holds several
_CHECK_CHUNK = 1 << 24   # elements per finiteness check, to bound temporaries


def _expected_shape(task: TaskSpec, split: Split) -> tuple[int, ...]:
    if task.kind == "segmentation":
        hw = tuple(task.image_size) if task.image_size else tuple(split.labels.shape[1:])
        return (split.n, task.num_classes, *hw)
    return (split.n, task.num_classes)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _read_header(fp: BinaryIO, filename: str | None, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fp, max_header_size=10_000)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fp, max_header_size=10_000)
        return np.lib.format._read_array_header(fp, version, max_header_size=10_000)
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
            fmt: str) -> Predictions:
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
    _check_values(arr, task, filename, where)
    if arr.dtype != np.uint8:
        target = np.float32 if task.kind == "segmentation" else np.float64
        arr = arr.astype(target, copy=False)
    return Predictions(scores=arr, source_format=fmt)


def _load_data(fp: BinaryIO, shape: tuple[int, ...], fortran: bool, dtype: np.dtype,
               filename: str | None, where: str) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    data = fp.read(nbytes)
    if len(data) != nbytes:
        raise fail(ErrorCode.BAD_ARRAY, f"{where} is truncated: {len(data)} of {nbytes} data bytes",
                   filename=filename)
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


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
    fp = io.BytesIO(source)
    shape, fortran, dtype = _read_header(fp, filename, where)
    layout = _check_header(shape, dtype, task, split, filename, where)
    offset = fp.tell()
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
    try:
        zf = zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise fail(ErrorCode.BAD_ARRAY, f"not a readable .npz (zip) archive ({exc})"[:200],
                   filename=filename) from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        others = [i.filename for i in infos if not i.filename.endswith(".npy")]
        if others:
            raise fail(ErrorCode.NPZ_ARRAYS, f"the zip archive holds {shown(others[0])}, which is "
                       "not a .npy array; an .npz must hold only arrays (model files are "
                       "submitted as models, not predictions)", filename=filename)
        if not infos:
            raise fail(ErrorCode.NPZ_ARRAYS, "the .npz holds no arrays", filename=filename)
        names = [i.filename[:-4] for i in infos]
        if len(infos) == 1:
            info = infos[0]
        else:
            preferred = [k for k in NPZ_KEYS if k in names]
            if not preferred:
                listed = ", ".join(shown(n, 20) for n in names[:6])
                raise fail(ErrorCode.NPZ_ARRAYS, f"the .npz holds {len(names)} arrays ({listed}); "
                           "save exactly one array, or name the scores 'scores'",
                           filename=filename)
            info = infos[names.index(preferred[0])]
        where = f"array {shown(info.filename[:-4], 20)} of the .npz"
        expected = _expected_shape(task, split)
        # Zip-bomb guard: the uncompressed member cannot exceed float64 scores plus a header.
        limit = int(np.prod(expected, dtype=np.int64)) * 8 + 65536
        if info.file_size > limit:
            raise fail(ErrorCode.WRONG_SHAPE, f"{where} is {info.file_size} bytes uncompressed, "
                       f"more than scores of shape {_fmt_shape(expected)} can take",
                       filename=filename)
        try:
            with zf.open(info) as fp:
                shape, fortran, dtype = _read_header(fp, filename, where)
                layout = _check_header(shape, dtype, task, split, filename, where)
                arr = _load_data(fp, shape, fortran, dtype, filename, where)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise fail(ErrorCode.BAD_ARRAY, f"{where} cannot be read ({exc})"[:200],
                       filename=filename) from None
    return _finish(arr, layout, task, filename, where, "npz")
