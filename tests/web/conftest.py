"""Fixtures of the web tests: an embedded app (TestClient) with a small course and scored submissions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.web.live_server import ARGS, CHROMIUM, SHOTS, predictions_csv, seed_course


@dataclass
class WebCourse:
    client: object
    tokens: dict[str, str]
    ids: dict[str, list[int]]


def _upload(client, token: str, task: str, content: bytes, note: str) -> int:
    r = client.post(f"/api/v1/tasks/{task}/submissions", headers={"Authorization": f"Bearer {token}"},
                    files={"file": ("preds.csv", content, "text/csv")}, data={"note": note})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _wait(client, token: str, sid: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get(f"/api/v1/submissions/{sid}",
                      headers={"Authorization": f"Bearer {token}"}).json()["status"] in ("scored", "failed"):
            return
        time.sleep(0.05)
    raise AssertionError(f"submission {sid} not graded")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from fastapi.testclient import TestClient

    from grader_api.app import create_app
    from grader_api.config import Settings

    var = tmp_path_factory.mktemp("web") / "var"
    tokens, labels = seed_course(var)
    settings = Settings(var_dir=var, database_url=None, redis_url=None, sweeper_enabled=False,
                        datasets_dir=Path("datasets"), rate_limit="100000/minute",
                        upload_rate_limit="100000/minute")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        ids: dict[str, list[int]] = {"alice": [], "bob": []}
        for who, acc, note in (("alice", 0.5, "baseline"), ("alice", 0.8, "+BatchNorm"), ("bob", 0.7, "bob v1")):
            body = predictions_csv(labels, acc, seed=int(acc * 10))
            ids[who].append(_upload(client, tokens[who], "pets", body, note))
        for who, sids in ids.items():
            for sid in sids:
                _wait(client, tokens[who], sid)
        yield WebCourse(client, tokens, ids)


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium, one per test module (the browser tests skip without it)."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()
