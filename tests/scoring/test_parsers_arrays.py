"""`.npy` / `.npz` prediction files: sniffed by content, shape/dtype checked from the header."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from scoring.errors import PredictionFormatError
from scoring.parsers import ErrorCode, parse_predictions, sniff_format
from scoring.splits import load_split, write_split
from scoring.tasks import parse_task

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
