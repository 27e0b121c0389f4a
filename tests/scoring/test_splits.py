"""Split directories: round trip, validation against a task, public mask properties."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoring.errors import SplitError
from scoring.splits import describe_split, load_inputs, load_split, public_mask, write_split
from scoring.tasks import parse_task

CLS = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                  "metric": "accuracy", "split": "pets", "public_fraction": 0.5}, "t")
ML = parse_task({"name": "voc", "kind": "multilabel", "classes": ["a", "b"], "metric": "mean_ap",
                 "ap": "step", "split": "voc"}, "t")
SEG = parse_task({"name": "seg", "kind": "segmentation", "classes": ["bg", "fg"],
                  "metric": "mean_iou", "ap": "voc", "split": "seg", "image_size": [4, 5],
                  "ignore_index": 255}, "t")


def test_round_trip_classification(tmp_path):
    y = np.array([0, 2, 1, 1, 0, 2, 2, 0])
    ids = [f"img{i}" for i in range(8)]
    x = np.arange(8 * 3 * 2 * 2, dtype=np.uint8).reshape(8, 3, 2, 2)
    root = write_split(tmp_path / "s", y, ids=ids, inputs=x, seed=7, source="unit test")
    assert sorted(p.name for p in root.iterdir()) == ["ids.txt", "inputs.npy", "labels.npy",
                                                      "split.json"]
    split = load_split(root, CLS)
    assert split.ids == ids and split.n == 8 and split.labels.dtype == np.int64
    assert np.array_equal(split.labels, y)
    assert split.id_index["img3"] == 3
    assert split.public_mask.sum() == 4
    assert np.array_equal(split.public_mask, public_mask(ids, 0.5, 7))
    meta = json.loads((root / "split.json").read_text())
    assert meta["seed"] == 7 and meta["source"] == "unit test" and meta["n"] == 8
    inputs = load_inputs(root)
    assert isinstance(inputs, np.memmap) and np.array_equal(inputs, x)
    # no leftovers from the atomic write
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_default_ids_and_no_task(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 1, 5]), seed=0)
    split = load_split(root)
    assert split.ids == ["0", "1", "2"] and split.public_mask.all()
    assert load_inputs(root) is None


def test_multilabel_and_segmentation(tmp_path):
    y = np.array([[0, 1], [1, 1], [0, 0]])
    split = load_split(write_split(tmp_path / "ml", y), ML)
    assert split.labels.dtype == np.uint8 and split.labels.shape == (3, 2)
    seg = np.zeros((2, 4, 5), dtype=np.uint8)
    seg[0, 0, 0] = 255
    seg[1] = 1
    split = load_split(write_split(tmp_path / "seg", seg), SEG)
    assert split.labels.dtype == np.uint8 and split.labels.shape == (2, 4, 5)


@pytest.mark.parametrize("task,labels,match", [
    (CLS, np.array([0, 1, 3]), "1 labels are outside the class ids 0..2"),
    (CLS, np.array([0, -1, 1]), "outside"),
    (CLS, np.zeros((3, 3), dtype=np.int64), r"shape \(N,\)"),
    (ML, np.array([[0, 2], [1, 1]]), "not 0 or 1"),
    (ML, np.zeros((2, 3), dtype=np.uint8), r"shape \(N, 2\)"),
    (SEG, np.zeros((2, 4, 4), dtype=np.uint8), "task 'seg' expects 4x5"),
    (SEG, np.full((1, 4, 5), 7, dtype=np.uint8), "20 label pixels are outside"),
    (SEG, np.zeros((2, 4), dtype=np.uint8), r"shape \(N, H, W\)"),
])
def test_labels_validated_against_task(tmp_path, task, labels, match):
    root = write_split(tmp_path / "s", labels)
    with pytest.raises(SplitError, match=match):
        load_split(root, task)


def test_error_messages_never_show_label_values(tmp_path):
    y = np.array([0, 1, 987654])
    root = write_split(tmp_path / "s", y)
    with pytest.raises(SplitError) as ei:
        load_split(root, CLS)
    assert "987654" not in str(ei.value)


def test_float_labels_rejected(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 1]))
    np.save(root / "labels.npy", np.array([0.0, 1.0]))
    with pytest.raises(SplitError, match="integers"):
        load_split(root, CLS)


def test_pickled_labels_rejected(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 1]))
    np.save(root / "labels.npy", np.array([object(), 1], dtype=object), allow_pickle=True)
    with pytest.raises(SplitError, match="pickled"):
        load_split(root, CLS)


def test_missing_files_and_bad_meta(tmp_path):
    with pytest.raises(SplitError, match="not found"):
        load_split(tmp_path / "nope")
    root = write_split(tmp_path / "s", np.array([0, 1]))
    (root / "split.json").write_text("{not json")
    with pytest.raises(SplitError, match="not valid JSON"):
        load_split(root)
    (root / "split.json").write_text('{"seed": "abc"}')
    with pytest.raises(SplitError, match="'seed' must be an integer"):
        load_split(root)
    (root / "split.json").unlink()
    with pytest.raises(SplitError, match="split.json is missing"):
        load_split(root)
    root2 = write_split(tmp_path / "t", np.array([0, 1]))
    (root2 / "labels.npy").unlink()
    with pytest.raises(SplitError, match="labels.npy is missing"):
        load_split(root2)


@pytest.mark.parametrize("content,match", [
    ("a\nb\n", "2 ids but labels.npy has 3 rows"),
    ("a\nb\na\n", "line 3: id 'a' repeats line 1"),
    ("a\n\nc\n", "line 2: an id must be non-empty"),
    ("a\n b\nc\n", "line 2"),
    ("a\nb,c\nd\n", "commas"),
])
def test_bad_ids(tmp_path, content, match):
    root = write_split(tmp_path / "s", np.array([0, 1, 2]))
    (root / "ids.txt").write_text(content)
    with pytest.raises(SplitError, match=match):
        load_split(root, CLS)


def test_ids_with_crlf_are_read(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 1]))
    (root / "ids.txt").write_bytes(b"x1\r\nx2\r\n")
    assert load_split(root).ids == ["x1", "x2"]


def test_inputs_row_count_checked(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 1]))
    np.save(root / "inputs.npy", np.zeros((3, 1, 2, 2), dtype=np.uint8))
    with pytest.raises(SplitError, match="3 rows"):
        load_split(root)


def test_write_split_validation_and_overwrite(tmp_path):
    with pytest.raises(SplitError, match="ids"):
        write_split(tmp_path / "a", np.array([0, 1]), ids=["x"])
    with pytest.raises(SplitError, match="unique"):
        write_split(tmp_path / "a", np.array([0, 1]), ids=["x", "x"])
    with pytest.raises(SplitError, match="inputs"):
        write_split(tmp_path / "a", np.array([0, 1]), inputs=np.zeros((2, 3, 3)))
    with pytest.raises(SplitError, match="integers"):
        write_split(tmp_path / "a", np.array([0.5, 1.0]))
    assert not (tmp_path / "a").exists()
    write_split(tmp_path / "a", np.array([0, 1]), seed=1)
    with pytest.raises(SplitError, match="already exists"):
        write_split(tmp_path / "a", np.array([0, 1, 2]))
    write_split(tmp_path / "a", np.array([0, 1, 2]), seed=2, overwrite=True)
    assert load_split(tmp_path / "a").n == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_public_mask_reproducible_and_fraction_exact():
    ids = [f"id{i}" for i in range(1001)]
    a = public_mask(ids, 0.5, 42)
    assert np.array_equal(a, public_mask(ids, 0.5, 42))
    assert np.array_equal(a, public_mask(list(reversed(ids)), 0.5, 42)[::-1])  # order-free
    assert a.sum() == 501                                        # round(500.5) half up
    assert public_mask(ids, 0.3, 42).sum() == 300
    assert public_mask(ids, 1.0, 42).all()
    assert public_mask(ids[:3], 0.01, 1).sum() == 1               # never an empty board
    assert not np.array_equal(a, public_mask(ids, 0.5, 43))       # the seed matters
    assert public_mask([], 0.5, 0).shape == (0,)
    with pytest.raises(ValueError):
        public_mask(ids, 0.0, 0)


def test_public_mask_stable_and_balanced():
    ids = [str(i) for i in range(2000)]
    base = set(np.flatnonzero(public_mask(ids, 0.5, 9)))
    # adding ids moves at most as many old ids as the boundary shift allows
    more = public_mask(ids + [f"new{i}" for i in range(20)], 0.5, 9)[:2000]
    changed = base.symmetric_difference(set(np.flatnonzero(more)))
    assert len(changed) <= 20
    # no positional bias: both halves of the split get about half public rows
    first_half = sum(1 for i in base if i < 1000)
    assert 400 < first_half < 600
    # a known value, so the partition never changes silently between versions
    # (blake2b keyed with the seed: independent of numpy's RNG and of PYTHONHASHSEED)
    assert np.flatnonzero(public_mask([str(i) for i in range(10)], 0.5, 0)).tolist() == \
        [0, 2, 3, 4, 9]


def test_describe_split(tmp_path):
    root = write_split(tmp_path / "s", np.array([0, 2, 2, 1]), seed=5,
                       inputs=np.zeros((4, 1, 2, 2), dtype=np.uint8))
    info = describe_split(root, CLS)
    assert info["n"] == 4 and info["seed"] == 5 and info["public"] == 2
    assert info["class_counts"] == {"cat": 1, "dog": 1, "bird": 2}
    assert info["inputs"] == {"shape": [4, 1, 2, 2], "dtype": "uint8"}
