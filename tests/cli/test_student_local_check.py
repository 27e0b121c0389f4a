"""`grade submit` checks a file locally with the scoring core's parser before uploading it:
the same messages as the server, for everything that does not need the held-out ids."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from grader_api.cli.local_check import check_file
from grader_api.client import ValidationFailed

TASK = {"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"], "metric": "accuracy",
        "accepts": ["predictions"], "scores": "probabilities", "max_upload_mb": 1}
SEG = {"name": "seg", "kind": "segmentation", "classes": ["bg", "a", "b"], "metric": "mean_iou", "ap": "voc",
       "accepts": ["predictions"], "image_size": [8, 8]}


def check(tmp_path, content: bytes, task=TASK, name: str = "f.csv") -> None:
    f = tmp_path / name
    f.write_bytes(content)
    check_file(f, task)


@pytest.mark.parametrize("content", [
    b"id,label\nx1,cat\nx2,2\n",
    b"\xef\xbb\xbfid,cat,dog,bird\r\nx1,0.1,0.2,0.7\r\nx2,0.3,0.3,0.4\r\n",   # BOM and CRLF
    b"Id,Prediction1\nx1,dog\n",                                          # a course's own header
])
def test_valid_csv_passes(tmp_path, content) -> None:
    check(tmp_path, content)


@pytest.mark.parametrize(("content", "code", "line", "column", "words"), [
    (b"", "empty_file", None, None, "empty"),
    (b"id,dog,cat,bird\nx1,0.1,0.2,0.7\n", "wrong_header", 1, None, "not in the task's order"),
    (b"id,cat,dog,bird\nx1,0.1,0.7\n", "wrong_column_count", 2, None, "3 columns, expected 4"),
    (b"id,cat,dog,bird\nx1,0.1,abc,0.7\n", "not_a_number", 2, 3, "'abc' is not a number"),
    (b"id,cat,dog,bird\nx1,0.1,inf,0.7\n", "not_finite", 2, 3, "not a finite number"),
    (b"id,cat,dog,bird\nx1,0.1,1.5,0.7\n", "out_of_range", 2, 3, "outside [0, 1]"),
    (b"id,label\nx1,cat\nx1,dog\n", "duplicate_id", 3, 1, "appears twice"),
    (b"id,label\nx1,horse\n", "unknown_class", 2, 2, "'horse' is not a class"),
])
def test_invalid_csv_names_line_and_column(tmp_path, content, code, line, column, words) -> None:
    with pytest.raises(ValidationFailed) as e:
        check(tmp_path, content)
    assert e.value.code == code and e.value.line == line and words in str(e.value)
    if column is not None:
        assert e.value.column == column


def test_arrays_checked_for_shape_dtype_and_values(tmp_path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).random((4, 3)))
    check(tmp_path, buf.getvalue(), name="ok.npy")
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 5)))
    with pytest.raises(ValidationFailed, match=r"shape \(4, 5\)"):
        check(tmp_path, buf.getvalue(), name="bad.npy")
    buf = io.BytesIO()
    np.savez(buf, scores=(np.random.default_rng(0).random((2, 3, 8, 8)) * 255).astype(np.uint8))
    check(tmp_path, buf.getvalue(), task=SEG, name="seg.npz")
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValidationFailed) as e:
        check(tmp_path, buf.getvalue(), task=SEG, name="seg.npy")
    assert e.value.code == "wrong_shape"


def test_model_file_for_a_predictions_task_is_refused(tmp_path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValidationFailed, match="looks like a model file"):
        check(tmp_path, buf.getvalue(), name="model.pt")
    check(tmp_path, buf.getvalue(), task={**TASK, "accepts": ["predictions", "model"]}, name="model.pt")


def test_upload_cap(tmp_path) -> None:
    with pytest.raises(ValidationFailed, match="over this task's upload limit of 1 MB"):
        check(tmp_path, b"id,label\n" + b"x,cat\n" * 300_000)
