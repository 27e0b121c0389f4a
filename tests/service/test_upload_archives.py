"""Hostile archives at upload: refused with 422 from their end record or plain-data members,
before anything large is parsed, in bounded memory, and without using the day's quota."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from fastapi.testclient import TestClient

import worker.model_formats  # noqa: F401 - imported lazily by the upload check; here before memory is traced
from grader_api.app import create_app
from grader_api.services.errors import InvalidUpload
from grader_api.services.upload_kind import detect_upload_kind
from tests.model_eval.hostile_archives import hostile_exported_programs
from tests.scoring.test_zipdir import claims_huge_directory, many_entries_zip
from tests.service.conftest import embedded_settings, seed_users
from tests.service.helpers import auth, ids_for, stored_files, task_yaml, upload


@pytest.fixture
def model_task(tmp_path):
    from scoring.splits import write_split

    settings = embedded_settings(tmp_path, model_device="cpu")
    n = 8
    rng = np.random.default_rng(0)
    write_split(settings.effective_data_root / "pets/test", rng.integers(0, 4, n), ids=ids_for(n),
                inputs=rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), seed=1)
    extra = "accepts: [predictions, model]\ninput_mean: [0.5]\ninput_std: [0.5]\n"
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = seed_users(app)
        r = client.post("/api/v1/tasks",
                        content=task_yaml(extra=extra).replace("max_upload_mb: 1", "max_upload_mb: 32"),
                        headers={**auth(tokens["prof"]), "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        yield client, tokens, settings


def _assert_nothing_recorded(client, tokens, settings):
    r = client.get("/api/v1/tasks/pets/submissions", headers=auth(tokens["prof"]))
    assert r.status_code == 200 and r.json() == [], r.text
    storage = settings.effective_storage_dir
    assert stored_files(storage) == []
    assert list((storage / "tmp").iterdir()) == []


def test_zip_listing_too_many_entries_is_422_at_upload(model_task):
    client, tokens, settings = model_task
    r = upload(client, tokens["alice"], "pets", many_entries_zip(150_000), filename="model.pt")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "archive_too_large"
    assert "lists 150,000 entries; at most 100,000 are accepted" in body["detail"]
    _assert_nothing_recorded(client, tokens, settings)


def test_exported_program_with_pickled_weights_is_422_at_upload(model_task, tmp_path):
    client, tokens, settings = model_task
    data = hostile_exported_programs(tmp_path / "pwned")["pickled weight"]
    r = upload(client, tokens["alice"], "pets", data, filename="model.pt2")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "model_rejected"
    assert body["detail"].startswith("model rejected: exported program refused: weight 'fc.weight' is stored "
                                     "as a pickle (use_pickle)")
    _assert_nothing_recorded(client, tokens, settings)
    assert not (tmp_path / "pwned").exists()


def test_oversized_safetensors_header_is_422_at_upload(model_task):
    client, tokens, _ = model_task
    size = 2_000_000
    data = struct.pack("<Q", size) + b'{"__metadata__": {"k": "' + b"a" * (size - 27) + b'"}}'
    r = upload(client, tokens["alice"], "pets", data, filename="model.safetensors")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "model_rejected"
    assert "safetensors header is 2,000,000 bytes; at most 1,048,576 are accepted" in r.json()["detail"]


@pytest.mark.parametrize("build", ["many entries", "claims a 300 MB directory"])
def test_kind_detection_of_a_hostile_zip_takes_bounded_memory(tmp_path, build):
    path = tmp_path / "upload"
    if build == "many entries":
        path.write_bytes(many_entries_zip(150_000))
    else:
        claims_huge_directory(path, 300 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidUpload) as err:
            detect_upload_kind(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.code == "archive_too_large"  # answered 422 (tests/services/test_errors.py)
    assert peak < 2 << 20, peak    # zipfile.ZipFile: ~90 MB and ~300 MB


def test_state_dict_for_a_task_without_a_reference_architecture_is_422_at_upload(model_task):
    """The worker would refuse it before starting a sandbox; refused at upload, it costs nothing
    and the student learns at once what to upload instead."""
    from safetensors.numpy import save

    client, tokens, settings = model_task
    r = upload(client, tokens["alice"], "pets", save({"fc.weight": np.zeros((4, 3), np.float32)}),
               filename="weights.safetensors")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "model_rejected"
    assert "names no reference architecture" in body["detail"] and "torch.jit.save" in body["detail"]
    _assert_nothing_recorded(client, tokens, settings)


def test_a_model_refused_by_the_worker_before_any_sandbox_is_free(model_task, monkeypatch):
    """A refusal found only by the worker (here: the task stopped taking models after the upload)
    is recorded as model_refused, which does not use up the day's submissions."""
    from worker.sandbox.errors import ModelRefused

    client, tokens, settings = model_task
    r = client.patch("/api/v1/tasks/pets", json={"daily_limit": 1}, headers=auth(tokens["prof"]))
    assert r.status_code == 200, r.text

    def refuse(path, task, inputs, **_):
        raise ModelRefused(f"task {task.name} does not accept model files; upload a predictions file")

    monkeypatch.setattr("worker.model_eval.evaluate_model_file", refuse)
    r = upload(client, tokens["alice"], "pets", _tiny_torchscript(), filename="model.pt")
    assert r.status_code == 202, r.text
    sub = _wait_finished(client, tokens["alice"], r.json()["id"])
    assert sub["status"] == "failed" and sub["error_code"] == "model_refused"
    assert "counts against" not in sub["error"]
    me = client.get("/api/v1/tasks/pets", headers=auth(tokens["alice"])).json()
    assert me["submissions_left_today"] == 1


def _tiny_torchscript() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Flatten()), buf)
    return buf.getvalue()


def _wait_finished(client, token, sid, timeout_s=60.0):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sub = client.get(f"/api/v1/submissions/{sid}", headers=auth(token)).json()
        if sub["status"] in ("scored", "failed"):
            return sub
        time.sleep(0.1)
    raise AssertionError(f"submission {sid} not finished after {timeout_s} s")
