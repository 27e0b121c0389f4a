"""Upload validation on the embedded stack: clear 4xx, and nothing left behind."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from tests.service.helpers import auth, predictions_csv, stored_files, upload


def _rows(course, task="pets"):
    r = course.client.get(f"/api/v1/tasks/{task}/submissions", headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    return r.json()


def _assert_nothing_left(course):
    assert _rows(course) == []
    storage = course.settings.effective_storage_dir
    assert stored_files(storage) == []
    assert list((storage / "tmp").iterdir()) == []


def test_wrong_header_is_422_with_line_and_column_and_leaves_nothing(course):
    r = upload(course.client, course.alice, "pets", b"image,guess\nimg00000,cat\n")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "wrong_header" and body["line"] == 1 and "expected" in body["detail"]
    _assert_nothing_left(course)


def test_missing_ids_unknown_class_binary_and_empty(course):
    good = predictions_csv(course.labels, 0.9).decode().splitlines()
    r = upload(course.client, course.alice, "pets", ("\n".join(good[:-5]) + "\n").encode())
    assert r.status_code == 422 and r.json()["code"] == "missing_ids", r.text
    r = upload(course.client, course.alice, "pets", b"id,label\nimg00000,unicorn\n")
    assert r.status_code == 422 and r.json()["code"] == "unknown_class" and r.json()["line"] == 2, r.text
    r = upload(course.client, course.alice, "pets", b"\x00\x01\x02\xff\xfe" * 100)
    assert r.status_code == 415, r.text
    r = upload(course.client, course.alice, "pets", b"")
    assert r.status_code == 400 and r.json()["code"] == "empty_file", r.text
    _assert_nothing_left(course)


def test_size_cap_checked_from_content_length_and_while_streaming(course):
    big = b"id,label\n" + b"x" * 1_200_000   # the test task caps uploads at 1 MB
    r = upload(course.client, course.alice, "pets", big)
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text

    # No Content-Length (chunked): the cap is enforced while reading.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(40):
            yield b"y" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = course.client.post("/api/v1/tasks/pets/submissions", content=body(),
                           headers={**auth(course.alice), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    _assert_nothing_left(course)


def test_not_multipart_and_missing_file_field(course):
    r = course.client.post("/api/v1/tasks/pets/submissions", content=b"id,label\n",
                           headers={**auth(course.alice), "Content-Type": "text/csv"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = course.client.post("/api/v1/tasks/pets/submissions", headers=auth(course.alice),
                           data={"note": "no file"}, files={"other": ("x", b"1")})
    assert r.status_code == 400 and r.json()["code"] == "missing_file"
    _assert_nothing_left(course)


def test_model_file_for_a_predictions_only_task_is_415(course):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("model/constants.pkl", b"\x80\x02).")
    r = upload(course.client, course.alice, "pets", buf.getvalue(), filename="model.pt")
    assert r.status_code == 415 and "model" in r.json()["detail"], r.text
    _assert_nothing_left(course)


def test_upload_kind_detection():
    import tempfile
    from pathlib import Path

    from grader_api.models import SubmissionKind
    from grader_api.services.upload_kind import detect_upload_kind

    def kind(data: bytes):
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(data)
        try:
            return detect_upload_kind(Path(f.name))
        finally:
            Path(f.name).unlink()

    npz = io.BytesIO()
    np.savez(npz, scores=np.zeros((2, 3)))
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    safet = len(header).to_bytes(8, "little") + header + b"\0\0\0\0"
    ts = io.BytesIO()
    with zipfile.ZipFile(ts, "w") as zf:
        zf.writestr("m/constants.pkl", b"")
    assert kind(b"id,label\n1,2\n") == SubmissionKind.PREDICTIONS
    assert kind(npz.getvalue()) == SubmissionKind.PREDICTIONS
    assert kind(npy.getvalue()) == SubmissionKind.PREDICTIONS
    assert kind(safet) == SubmissionKind.MODEL
    assert kind(ts.getvalue()) == SubmissionKind.MODEL
    assert kind(b"\x80\x02ccollections\nOrderedDict\n") == SubmissionKind.MODEL


def test_note_and_filename_are_kept_for_display_only(course):
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7),
               note="+BatchNorm", filename="../../etc/passwd")
    assert r.status_code == 202, r.text
    sub = course.client.get(f"/api/v1/submissions/{r.json()['id']}", headers=auth(course.alice)).json()
    assert sub["note"] == "+BatchNorm" and sub["filename"] == "passwd"
    files = stored_files(course.settings.effective_storage_dir)
    assert [p.name for p in files] == [r.json()["sha256"]]
