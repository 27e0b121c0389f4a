"""Model runs stopped by a resource limit cost a submission, through the whole embedded service
(upload → sandboxed run → failure → daily limit)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from grader_api.app import create_app
from tests.model_eval.helpers import Loop, save_torchscript
from tests.service.conftest import embedded_settings, seed_users
from tests.service.helpers import CLASSES, auth, ids_for, predictions_csv, task_yaml, upload, wait_for_status

pytestmark = pytest.mark.slow

N = 16


@pytest.fixture
def loop_course(tmp_path):
    from scoring.splits import write_split

    settings = embedded_settings(tmp_path, model_device="cpu")
    rng = np.random.default_rng(4)
    labels = rng.integers(0, len(CLASSES), N)
    write_split(settings.effective_data_root / "pets/test", labels, ids=ids_for(N),
                inputs=rng.integers(0, 256, (N, 3, 8, 8), dtype=np.uint8), seed=5)
    extra = "accepts: [predictions, model]\nmodel_time_limit_s: 2\ndaily_limit: 2\n"
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = seed_users(app)
        r = client.post("/api/v1/tasks", content=task_yaml(extra=extra),
                        headers={**auth(tokens["prof"]), "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        yield client, tokens, labels


def test_models_stopped_by_the_time_limit_use_up_the_daily_limit(loop_course, tmp_path):
    client, tokens, labels = loop_course
    loop = save_torchscript(Loop(), tmp_path / "loop.pt").read_bytes()
    ids = []
    for note in ("slow model 1", "slow model 2"):
        r = upload(client, tokens["alice"], "pets", loop, note=note, filename="loop.pt")
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    for sid in ids:
        body = wait_for_status(client, tokens["alice"], sid, timeout=120)
        assert body["status"] == "failed" and body["error_code"] == "resource_limit", body
        assert "timed out after 2 s" in body["error"] and "counts against the daily submission limit" in body["error"]
    r = upload(client, tokens["alice"], "pets", predictions_csv(labels, 0.8))
    assert r.status_code == 429 and r.json()["code"] == "daily_limit", r.text
