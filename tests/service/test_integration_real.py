"""The production path: PostgreSQL, Redis and a real `celery worker` subprocess.

One stack per module (a throwaway database, its own Redis namespace, one worker process);
each test makes its own task so tests do not see each other's submissions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from grader_api.app import create_app
from grader_api.config import Settings
from grader_api.models import Outbox, Submission, SubmissionStatus
from tests.service import real_stack
from tests.service.conftest import seed_users
from tests.service.helpers import (
    auth,
    make_split,
    predictions_csv,
    race_for_the_last_submission,
    stored_files,
    task_yaml,
    upload,
    wait_for_status,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery, pytest.mark.slow]


@dataclass
class Stack:
    client: TestClient
    settings: Settings
    worker: real_stack.CeleryWorker
    prof: str
    alice: str
    bob: str

    @property
    def app(self):
        return self.client.app

    def new_task(self, **yaml_kw):
        """A fresh task (own split) named pets_<random>; returns (name, labels)."""
        name = f"pets_{secrets.token_hex(3)}"
        labels = make_split(self.settings.effective_data_root, f"{name}/test", n=200, seed=len(name))
        r = self.client.post("/api/v1/tasks", json={"yaml": task_yaml(name, f"{name}/test", **yaml_kw)},
                             headers=auth(self.prof))
        assert r.status_code == 201, r.text
        return name, labels

    def wait(self, token, sid, timeout=30.0):
        try:
            return wait_for_status(self.client, token, sid, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- celery worker log ---\n{self.worker.log_tail()}") from None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    real_stack.require_postgres()
    real_stack.require_redis()
    tmp = tmp_path_factory.mktemp("real")
    prefix = f"heldout-test-{secrets.token_hex(4)}-"
    with real_stack.throwaway_database() as db_url:
        settings = Settings(var_dir=tmp / "var", database_url=db_url, redis_url=real_stack.REDIS_URL,
                            queue_prefix=prefix, sweeper_enabled=False,
                            rate_limit="10000/minute", upload_rate_limit="10000/minute")
        try:
            app = create_app(settings)
            with TestClient(app) as client:  # migrations run here, on PostgreSQL
                tokens = seed_users(app)
                with real_stack.celery_worker(settings, tmp / "celery.log") as worker:
                    yield Stack(client, settings, worker, tokens["prof"], tokens["alice"], tokens["bob"])
        finally:
            real_stack.clear_redis_prefix(prefix)


def _rows(stack, task):
    return stack.client.get(f"/api/v1/tasks/{task}/submissions", headers=auth(stack.prof)).json()


def test_upload_is_queued_then_scored_by_the_celery_worker_and_ranked(stack):
    task, labels = stack.new_task()
    r = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.8), note="baseline")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    sub = stack.wait(stack.alice, r.json()["id"])
    assert sub["status"] == "scored" and sub["attempts"] == 1
    assert 0.6 < sub["public_score"] < 0.95 and sub["public"]["primary"] == sub["public_score"]
    assert sub["public"]["per_class"] is None and sub["public"]["withheld"]  # D9
    board = stack.client.get(f"/api/v1/tasks/{task}/leaderboard", headers=auth(stack.bob)).json()
    assert [(x["rank"], x["user"], x["entries"]) for x in board["rows"]] == [(1, "quiet-otter-11", 1)]
    assert board["rows"][0]["score"] == pytest.approx(sub["public_score"])


def test_invalid_upload_is_a_clear_4xx_with_no_row_and_no_file(stack):
    task, _labels = stack.new_task()
    before = stored_files(stack.settings.effective_storage_dir)
    r = upload(stack.client, stack.alice, task, b"id,label\nimg00000,cat\nimg00000,dog\n")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "duplicate_id" and body["line"] == 3 and "img00000" in body["detail"]
    assert _rows(stack, task) == []
    assert stored_files(stack.settings.effective_storage_dir) == before


def test_students_cannot_read_others_submissions_or_the_private_board(stack):
    task, labels = stack.new_task()
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.7)).json()["id"]
    stack.wait(stack.alice, sid)
    assert stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.bob)).status_code == 404
    r = stack.client.get(f"/api/v1/tasks/{task}/leaderboard?board=private", headers=auth(stack.alice))
    assert r.status_code == 403
    own = stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.alice)).json()
    assert own["private_score"] is None and own["private"] is None
    prof = stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.prof)).json()
    assert prof["private_score"] is not None


def test_daily_limit(stack):
    task, labels = stack.new_task()
    stack.client.patch(f"/api/v1/tasks/{task}", json={"daily_limit": 2}, headers=auth(stack.prof))
    for seed in (1, 2):
        assert upload(stack.client, stack.alice, task, predictions_csv(labels, 0.7, seed)).status_code == 202
    r = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.7, 3))
    assert r.status_code == 429 and r.json()["code"] == "daily_limit"
    assert "retry-after" in r.headers


def test_two_parallel_uploads_cannot_both_take_the_last_submission_of_the_day(stack, monkeypatch):
    task, labels = stack.new_task()
    stack.client.patch(f"/api/v1/tasks/{task}", json={"daily_limit": 1}, headers=auth(stack.prof))
    assert race_for_the_last_submission(stack.client, stack.alice, task, labels, monkeypatch) == [202, 429]
    assert len(_rows(stack, task)) == 1


def test_deadline_closes_the_task_and_reveals_the_private_board(stack):
    task, labels = stack.new_task()
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.7)).json()["id"]
    stack.wait(stack.alice, sid)
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = stack.client.patch(f"/api/v1/tasks/{task}", json={"deadline": past, "late_days": 0}, headers=auth(stack.prof))
    assert r.status_code == 200 and r.json()["private_revealed"] is True
    r = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.9))
    assert r.status_code == 403 and r.json()["code"] == "task_closed" and "closed" in r.json()["detail"]
    board = stack.client.get(f"/api/v1/tasks/{task}/leaderboard?board=private", headers=auth(stack.bob))
    assert board.status_code == 200
    own = stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.alice)).json()
    assert board.json()["rows"][0]["score"] == pytest.approx(own["private_score"])
    assert own["overall"]["points"] is not None


def test_rescore_changes_scores_when_the_task_changes(stack):
    task, labels = stack.new_task()
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.9)).json()["id"]
    first = stack.wait(stack.alice, sid)
    make_split(stack.settings.effective_data_root, f"{task}/fixed", n=200, seed=4242)
    r = stack.client.patch(f"/api/v1/tasks/{task}", json={"yaml": task_yaml(task, f"{task}/fixed")},
                           headers=auth(stack.prof))
    assert r.status_code == 200, r.text
    assert stack.client.post(f"/api/v1/tasks/{task}/rescore", headers=auth(stack.prof)).json()["requeued"] == 1
    deadline = time.monotonic() + 30
    while True:
        now = stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.alice)).json()
        if now["status"] == "scored" and now["public_score"] != first["public_score"]:
            break
        assert time.monotonic() < deadline, stack.worker.log_tail()
        time.sleep(0.1)
    assert now["public_score"] < 0.5  # the same predictions against corrected labels


def test_grade_export_csv(stack):
    task, labels = stack.new_task()
    ids = [upload(stack.client, tok, task, predictions_csv(labels, acc, seed)).json()["id"]
           for tok, acc, seed in ((stack.alice, 0.9, 1), (stack.alice, 0.5, 2), (stack.bob, 0.6, 3))]
    for sid, tok in zip(ids, (stack.alice, stack.alice, stack.bob), strict=True):
        stack.wait(tok, sid)
    subs = {s["id"]: s for s in _rows(stack, task)}
    r = stack.client.get(f"/api/v1/tasks/{task}/grades.csv", headers=auth(stack.prof))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "student,best_public,best_private,points,late_days_used,submissions"
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    best_alice = max((subs[i] for i in ids[:2]), key=lambda s: s["public_score"])
    assert float(rows["alice"][1]) == pytest.approx(best_alice["public_score"], abs=1e-6)
    assert float(rows["alice"][2]) == pytest.approx(best_alice["private_score"], abs=1e-6)
    assert float(rows["alice"][3]) == pytest.approx(best_alice["points"], abs=1e-6)
    assert rows["alice"][4:] == ["0", "2"] and rows["bob"][5] == "1"


def test_lost_dispatch_is_resent_by_the_sweeper(stack, monkeypatch):
    from worker.sweeper import sweep_once

    task, labels = stack.new_task()
    relay = stack.app.state.relay
    monkeypatch.setattr(relay.dispatcher, "send", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down")))
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.8)).json()["id"]
    monkeypatch.undo()
    time.sleep(1.0)
    assert stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.alice)).json()["status"] == "queued"
    result = sweep_once(stack.settings.model_copy(update={"outbox_grace_s": 0}), relay)
    assert result.resent_outbox >= 1
    assert stack.wait(stack.alice, sid)["status"] == "scored"
    with stack.app.state.db.transaction() as s:
        assert s.scalar(sa.select(sa.func.count()).where(Outbox.submission_id == sid, Outbox.sent_at.is_(None))) == 0


def test_message_lost_in_the_broker_is_requeued_by_the_sweeper(stack):
    from worker.sweeper import sweep_once

    task, labels = stack.new_task()
    relay = stack.app.state.relay
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.8)).json()["id"]
    stack.wait(stack.alice, sid)
    # Pretend the message vanished: the row is back to queued, long ago, outbox marked sent.
    old = datetime.now(UTC) - timedelta(hours=1)
    with stack.app.state.db.transaction() as s:
        s.execute(sa.update(Submission).where(Submission.id == sid).values(
            status=SubmissionStatus.QUEUED, updated_at=old, attempts=1))
    assert sweep_once(stack.settings, relay).requeued_queued == 1
    assert stack.wait(stack.alice, sid)["attempts"] == 2


def test_duplicate_delivery_is_harmless(stack):
    task, labels = stack.new_task()
    sid = upload(stack.client, stack.alice, task, predictions_csv(labels, 0.8)).json()["id"]
    first = stack.wait(stack.alice, sid)
    for _ in range(3):  # the broker re-delivers the same message
        stack.app.state.relay.dispatcher.send(sid, "cpu")
    time.sleep(1.5)
    again = stack.client.get(f"/api/v1/submissions/{sid}", headers=auth(stack.alice)).json()
    assert (again["status"], again["attempts"], again["scored_at"], again["public_score"]) == (
        "scored", 1, first["scored_at"], first["public_score"])
    assert "Traceback" not in stack.worker.log_tail(200)
