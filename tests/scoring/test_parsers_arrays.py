"""`.npy` / `.npz` prediction files: sniffed by content, shape/dtype checked from the header."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest

from scoring.errors import PredictionFormatError
from scoring.parsers import ErrorCode, parse_predictions, sniff_format
from scoring.splits import load_split, write_split
from scoring.tasks import parse_task
from scoring.types import Split
from tests.memory import peak_bytes_of
from tests.scoring.test_zipdir import many_entries_zip

CLS = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                  "metric": "accuracy", "split": "pets"}, "t")
ML = parse_task({"name": "voc", "kind": "multilabel", "classes": ["a", "b", "c"],
                 "metric": "mean_ap", "ap": "step", "split": "voc"}, "t")
SEG = parse_task({"name": "seg", "kind": "segmentation", "classes": ["bg", "x", "y"],
                  "metric": "mean_iou", "ap": "voc", "split": "seg", "image_size": [4, 5],
                  "scores": "probabilities"}, "t")


@pytest.fixture(scope="module")
def cls_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("c") / "s"
    return load_split(write_split(root, np.array([0, 1, 2, 1]), seed=0), CLS)


@pytest.fixture(scope="module")
def seg_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("g") / "s"
    return load_split(write_split(root, np.zeros((2, 4, 5), dtype=np.uint8), seed=0), SEG)


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def error(data, task, split) -> PredictionFormatError:
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, task, split)
    assert ei.value.code in {c.value for c in ErrorCode}
    return ei.value


def test_sniffing_is_by_content():
    assert sniff_format(b"\x93NUMPY\x01\x00") == "npy"
    assert sniff_format(b"PK\x03\x04....") == "npz"
    assert sniff_format(b"id,label") == "csv"


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_float_scores(cls_split, dtype):
    s = np.random.default_rng(0).random((4, 3)).astype(dtype)
    p = parse_predictions(npy(s), CLS, cls_split)
    assert p.scores.dtype == np.float64 and np.array_equal(p.scores, s.astype(np.float64))
    assert p.source_format == "npy"


def test_uint8_scores_stay_uint8(cls_split):
    s = np.arange(12, dtype=np.uint8).reshape(4, 3)
    p = parse_predictions(npy(s), CLS, cls_split)
    assert p.scores.dtype == np.uint8 and np.array_equal(p.scores, s)


def test_label_vector_for_classification(cls_split):
    p = parse_predictions(npy(np.array([2, 1, 0, 1], dtype=np.int32)), CLS, cls_split)
    assert p.labels.tolist() == [2, 1, 0, 1] and p.labels.dtype == np.int64
    err = error(npy(np.array([0, 1, 3, 1])), CLS, cls_split)
    assert err.code == ErrorCode.CLASS_OUT_OF_RANGE and "element [2] = 3" in str(err)
    err = error(npy(np.array([0.0, 1.0, 2.0, 1.0])), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_DTYPE


def test_fortran_order_and_big_endian(cls_split):
    s = np.asfortranarray(np.random.default_rng(1).random((4, 3)))
    assert np.array_equal(parse_predictions(npy(s), CLS, cls_split).scores, s)
    b = s.astype(">f8")
    assert np.array_equal(parse_predictions(npy(b), CLS, cls_split).scores, s)


def test_wrong_shape(cls_split):
    err = error(npy(np.zeros((5, 3))), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_SHAPE
    assert "shape (5, 3), expected (4, 3)" in str(err) and "rows in split order" in str(err)
    err = error(npy(np.zeros((4, 2))), CLS, cls_split)
    assert "shape (4, 2), expected (4, 3)" in str(err)
    err = error(npy(np.zeros(5, dtype=int)), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_SHAPE and "(4,)" in str(err)


@pytest.mark.parametrize("arr", [np.zeros((4, 3), dtype=np.int32), np.zeros((4, 3), dtype=bool),
                                 np.zeros((4, 3), dtype=np.complex64)])
def test_wrong_dtype(cls_split, arr):
    err = error(npy(arr), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_DTYPE and f"dtype {arr.dtype}" in str(err)
    assert "expected uint8" in str(err)


def test_object_array_is_never_unpickled(cls_split):
    arr = np.empty((4, 3), dtype=object)
    err = error(npy(arr), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_DTYPE and "Python objects" in str(err)


def test_nan_inf_and_range(cls_split, seg_split):
    s = np.zeros((4, 3))
    s[2, 1] = np.nan
    err = error(npy(s), CLS, cls_split)
    assert err.code == ErrorCode.NOT_FINITE and "element [2, 1]" in str(err)
    s = np.zeros((2, 3, 4, 5), dtype=np.float32)
    s[1, 2, 3, 4] = np.inf
    err = error(npy(s), SEG, seg_split)
    assert err.code == ErrorCode.NOT_FINITE and "element [1, 2, 3, 4]" in str(err)
    s[1, 2, 3, 4] = 1.5
    err = error(npy(s), SEG, seg_split)
    assert err.code == ErrorCode.OUT_OF_RANGE and "element [1, 2, 3, 4]" in str(err)


def test_truncated_and_corrupt_npy(cls_split):
    data = npy(np.zeros((4, 3)))
    err = error(data[:-8], CLS, cls_split)
    assert err.code == ErrorCode.BAD_ARRAY and "truncated" in str(err)
    err = error(b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense", CLS, cls_split)
    assert err.code == ErrorCode.BAD_ARRAY


def test_segmentation_uint8_path_is_memory_mapped(seg_split, tmp_path):
    s = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    f = tmp_path / "upload"
    np.save(f, s)
    p = parse_predictions(tmp_path / "upload.npy", SEG, seg_split)
    assert isinstance(p.scores, np.memmap) and p.scores.dtype == np.uint8
    assert np.array_equal(p.scores, s)
    # from bytes: a read-only view, no copy
    p = parse_predictions(npy(s), SEG, seg_split)
    assert p.scores.dtype == np.uint8 and not p.scores.flags.writeable


def test_segmentation_float_becomes_float32(seg_split):
    s = np.full((2, 3, 4, 5), 0.25)
    p = parse_predictions(npy(s), SEG, seg_split)
    assert p.scores.dtype == np.float32 and p.scores.shape == (2, 3, 4, 5)
    err = error(npy(np.zeros((2, 3, 5, 4), dtype=np.uint8)), SEG, seg_split)
    assert err.code == ErrorCode.WRONG_SHAPE and "expected (2, 3, 4, 5)" in str(err)


def test_npz_single_and_named(cls_split):
    s = np.random.default_rng(2).random((4, 3))
    p = parse_predictions(npz(whatever=s), CLS, cls_split)
    assert np.array_equal(p.scores, s) and p.source_format == "npz"
    p = parse_predictions(npz(scores=s, ids=np.arange(4)), CLS, cls_split)
    assert np.array_equal(p.scores, s)


def test_npz_several_arrays(cls_split):
    err = error(npz(a=np.zeros((4, 3)), b=np.zeros((4, 3))), CLS, cls_split)
    assert err.code == ErrorCode.NPZ_ARRAYS and "2 arrays ('a', 'b')" in str(err)
    assert "'scores'" in str(err)


def test_npz_errors(cls_split):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04K\x01.")        # a torch.save archive
    err = error(buf.getvalue(), CLS, cls_split)
    assert err.code == ErrorCode.NPZ_ARRAYS and "not a .npy array" in str(err)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    err = error(buf.getvalue().replace(b"PK\x05\x06", b"PK\x03\x04", 1), CLS, cls_split)
    assert err.code in (ErrorCode.BAD_ARRAY, ErrorCode.NPZ_ARRAYS)
    err = error(b"PK\x03\x04" + b"\x00" * 40, CLS, cls_split)
    assert err.code == ErrorCode.BAD_ARRAY
    err = error(npz(scores=np.empty((4, 3), dtype=object)), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_DTYPE
    err = error(npz(scores=np.zeros((4, 4))), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_SHAPE and "array 'scores' of the .npz" in str(err)


def test_npz_zip_bomb_guard(cls_split):
    big = np.zeros((4, 100_000))          # compresses to almost nothing
    err = error(npz(scores=big), CLS, cls_split)
    assert err.code == ErrorCode.WRONG_SHAPE and "uncompressed" in str(err)


def test_multilabel_arrays(tmp_path):
    split = load_split(write_split(tmp_path / "m", np.eye(3, dtype=np.uint8), seed=0), ML)
    p = parse_predictions(npy(np.full((3, 3), 200, dtype=np.uint8)), ML, split)
    assert p.scores.dtype == np.uint8
    err = error(npy(np.zeros(3, dtype=np.int64)), ML, split)
    assert err.code == ErrorCode.WRONG_SHAPE


# --- hostile .npz files: bounded before decompression, checked while reading --------------

SEG_BIG = parse_task({"name": "seg6", "kind": "segmentation", "classes": [f"c{i}" for i in range(6)],
                      "metric": "mean_iou", "ap": "voc", "split": "seg6", "image_size": [224, 224],
                      "scores": "probabilities"}, "t")


@pytest.fixture(scope="module")
def seg_big_split(tmp_path_factory):
    """1,000 items: scores of shape (1000, 6, 224, 224), 1.2 GB as float32 (labels unused here)."""
    n = 1000
    return Split(root=tmp_path_factory.mktemp("seg6"), labels=np.zeros((n, 1, 1), dtype=np.uint8),
                 ids=[str(i) for i in range(n)], public_mask=np.zeros(n, dtype=bool))


def _one_member_zip(name: str, compressed: bytes, size: int, crc: int) -> bytes:
    raw = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(compressed), size, len(raw), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(compressed), size,
                          len(raw), 0, 0, 0, 0, 0, 0)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(raw),
                      len(local) + len(raw) + len(compressed), 0)
    return local + raw + compressed + central + raw + end


def deflate_bomb_npz(shape: tuple[int, ...], dtype, last: bytes = b"") -> bytes:
    """What np.savez_compressed makes of zeros of `shape` (ending in the bytes `last`): about a
    thousandth of the array's size. Built from one compressed block of zeros repeated, which a
    full flush makes self-contained, so a gigabyte takes a fraction of a second."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    chunk = 1 << 24
    full, rest = divmod(nbytes - len(last), chunk)

    def deflated(data: bytes, final: bool = False) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    zeros = bytes(chunk)
    block = deflated(zeros)
    stream = deflated(header.getvalue()) + block * full + deflated(bytes(rest) + last, final=True)
    crc = zlib.crc32(header.getvalue())
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest) + last, crc)
    return _one_member_zip("scores.npy", stream, len(header.getvalue()) + nbytes, crc)


@pytest.mark.parametrize("last", [b"", np.array([np.nan], dtype=np.float32).tobytes()],
                         ids=["zeros", "zeros then NaN"])
def test_small_npz_expanding_to_a_gigabyte_is_refused_in_bounded_memory(seg_big_split, last):
    data = deflate_bomb_npz((1000, 6, 224, 224), np.float32, last)
    assert len(data) < 2_000_000

    def parse():
        err = error(data, SEG_BIG, seg_big_split)
        assert err.code == ErrorCode.TOO_COMPRESSED
        assert "expands from" in str(err) and "np.savez_compressed" in str(err)

    assert peak_bytes_of(parse) < 8 << 20     # before: the whole 1.2 GB member was read


def test_npz_with_too_many_entries_is_refused_in_bounded_memory(cls_split):
    data = many_entries_zip(150_000, root="")

    def parse():
        err = error(data, CLS, cls_split)
        assert err.code == ErrorCode.ARCHIVE_TOO_LARGE and "lists 150,000 entries" in str(err)

    assert peak_bytes_of(parse) < 2 << 20


def test_npz_values_are_checked_as_they_are_read(cls_split, seg_split):
    s = np.zeros((4, 3))
    s[2, 1] = np.nan
    err = error(npz(scores=s), CLS, cls_split)
    assert err.code == ErrorCode.NOT_FINITE and "element [2, 1]" in str(err)
    err = error(npz(scores=np.asfortranarray(s)), CLS, cls_split)
    assert err.code == ErrorCode.NOT_FINITE and "element [2, 1]" in str(err)
    g = np.zeros((2, 3, 4, 5), dtype=">f4")
    g[1, 2, 3, 4] = 1.5
    err = error(npz(scores=g), SEG, seg_split)
    assert err.code == ErrorCode.OUT_OF_RANGE and "element [1, 2, 3, 4]" in str(err)
    ok = np.random.default_rng(3).random((4, 3))
    p = parse_predictions(npz(scores=np.asfortranarray(ok).astype(">f8")), CLS, cls_split)
    assert np.array_equal(p.scores, ok) and p.scores.dtype == np.float64


def test_npz_member_shorter_than_its_header(cls_split):
    member = npy(np.zeros((4, 3)))[:-8]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("scores.npy", member)
    err = error(buf.getvalue(), CLS, cls_split)
    assert err.code == ErrorCode.BAD_ARRAY and "truncated: 88 of 96 data bytes" in str(err)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_npz_member_with_an_unbounded_decompressor_is_refused(cls_split, method):
    """zipfile's bzip2 and LZMA readers decompress a whole input chunk before trimming to the
    declared size: a member declaring an honest 4 x 3 array but holding a stream of hundreds of
    MB was read (and accepted) with memory far beyond its declared size."""
    s = np.random.default_rng(0).random((4, 3))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        z.writestr("scores.npy", npy(s))
    e = error(buf.getvalue(), CLS, cls_split)
    assert f"zip method {method}" in str(e) and "np.savez" in str(e)
