"""Model files through the whole service on the embedded default: upload → gpu-queue kind →
sandboxed evaluation in the in-process worker → the same report as evaluating offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from grader_api.app import create_app
from tests.model_eval.helpers import bare_loop, malicious_pickle, save_torchscript
from tests.service.conftest import embedded_settings, seed_users
from tests.service.helpers import CLASSES, auth, ids_for, task_yaml, upload, wait_for_status

N = 48


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, len(CLASSES))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def model_course(tmp_path):
    from scoring.splits import write_split

    settings = embedded_settings(tmp_path, model_device="cpu")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, len(CLASSES), N)
    inputs = rng.integers(0, 256, (N, 3, 16, 16), dtype=np.uint8)
    write_split(settings.effective_data_root / "pets/test", labels, ids=ids_for(N), inputs=inputs, seed=5)
    extra = ("accepts: [predictions, model]\ninput_mean: [0.5, 0.5, 0.5]\ninput_std: [0.25, 0.25, 0.25]\n"
             "model_time_limit_s: 120\n")
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = seed_users(app)
        r = client.post("/api/v1/tasks", content=task_yaml(extra=extra).replace("max_upload_mb: 1", "max_upload_mb: 8"),
                        headers={**auth(tokens["prof"]), "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        yield client, tokens, settings


def test_torchscript_submission_is_scored_like_offline_evaluation(model_course, tmp_path):
    from scoring.evaluate import evaluate
    from scoring.splits import load_split
    from scoring.tasks import parse_task
    from scoring.types import Predictions

    client, tokens, settings = model_course
    torch.manual_seed(0)
    model = TinyNet().eval()
    path = save_torchscript(model, tmp_path / "model.pt", torch.zeros(1, 3, 16, 16))

    r = upload(client, tokens["alice"], "pets", path.read_bytes(), note="tiny net", filename="model.pt")
    assert r.status_code == 202, r.text
    body = wait_for_status(client, tokens["prof"], r.json()["id"], timeout=180)
    assert body["status"] == "scored", body
    assert body["kind"] == "model"

    # Offline: the same model in a bare loop, scored by the scoring core.
    import yaml

    normalisation = "input_mean: [0.5, 0.5, 0.5]\ninput_std: [0.25, 0.25, 0.25]\n"
    spec = parse_task(yaml.safe_load(task_yaml(extra=normalisation)), "t")
    split = load_split(settings.effective_data_root / "pets/test", spec)
    from scoring.splits import load_inputs

    scores = bare_loop(model, np.asarray(load_inputs(settings.effective_data_root / "pets/test")), spec)
    offline = evaluate(spec, split, Predictions(scores=scores.astype(np.float64)))
    assert body["public"]["primary"] == pytest.approx(offline["parts"]["public"]["primary"], abs=1e-12)
    assert body["overall"]["primary"] == pytest.approx(offline["primary"], abs=1e-12)
    stats = body["model_stats"]
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert stats["ms_per_image"] > 0


def test_malicious_pickle_fails_with_a_reason_and_never_runs(model_course, tmp_path):
    client, tokens, _ = model_course
    marker = tmp_path / "pwned"
    r = upload(client, tokens["alice"], "pets", malicious_pickle(marker), filename="model.pt")
    if r.status_code == 202:
        body = wait_for_status(client, tokens["alice"], r.json()["id"], timeout=120)
        assert body["status"] == "failed" and body["error"], body
    else:
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["detail"]
    assert not marker.exists(), "the pickle payload ran"
