"""Grading task and sweeper on the embedded stack: claims, retries, fencing, stuck rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from grader_api.lifecycle import transitions
from grader_api.models import Outbox, Submission, SubmissionStatus, utcnow
from tests.service.helpers import CLASSES, auth, make_split, predictions_csv, task_yaml, upload, wait_for_status
from worker.grading import grade_submission
from worker.sweeper import sweep_once


def _row(course, sid) -> Submission:
    with course.app.state.db.transaction() as s:
        return s.get(Submission, sid)


def _scored(course, accuracy=0.8):
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, accuracy))
    assert r.status_code == 202, r.text
    return wait_for_status(course.client, course.alice, r.json()["id"])


def test_second_delivery_of_a_finished_submission_does_nothing(course):
    sub = _scored(course)
    before = _row(course, sub["id"])
    assert grade_submission(sub["id"], settings=course.settings, relay=course.app.state.relay) == "skipped"
    assert grade_submission(424242, settings=course.settings, relay=course.app.state.relay) == "skipped"
    after = _row(course, sub["id"])
    assert (after.status, after.attempts, after.scored_at) == (before.status, before.attempts, before.scored_at)


def test_lost_dispatch_is_resent_by_the_sweeper(course, monkeypatch):
    relay = course.app.state.relay

    def lost(*_a, **_k):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(relay.dispatcher, "send", lost)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert r.status_code == 202  # accepted: the row and its outbox entry are committed
    sid = r.json()["id"]
    with course.app.state.db.transaction() as s:
        ob = s.scalars(sa.select(Outbox).where(Outbox.submission_id == sid)).one()
        assert ob.sent_at is None and "broker unreachable" in ob.last_error
    monkeypatch.undo()
    result = sweep_once(course.settings.model_copy(update={"outbox_grace_s": 0}), relay)
    assert result.resent_outbox == 1
    assert wait_for_status(course.client, course.alice, sid)["status"] == "scored"


def test_stuck_running_is_requeued_and_a_late_result_of_the_old_run_is_dropped(course):
    sub = _scored(course)
    sid = sub["id"]
    old = utcnow() - timedelta(hours=1)
    with course.app.state.db.transaction() as s:  # a worker died mid-run an hour ago
        s.execute(sa.update(Submission).where(Submission.id == sid).values(
            status=SubmissionStatus.RUNNING, claim_id="dead-worker", started_at=old, updated_at=old, attempts=1))
    result = sweep_once(course.settings, course.app.state.relay)
    assert result.requeued_running == 1
    assert wait_for_status(course.client, course.alice, sid)["status"] == "scored"
    assert _row(course, sid).attempts == 2

    # The dead worker's write, arriving now, is fenced off by its stale claim id.
    assert transitions.finish_failed(course.app.state.db, sid, "dead-worker", "late", "x") == "superseded"
    assert _row(course, sid).status == SubmissionStatus.SCORED


def test_out_of_attempts_fails_with_a_reason(course):
    sub = _scored(course)
    old = utcnow() - timedelta(hours=1)
    with course.app.state.db.transaction() as s:
        s.execute(sa.update(Submission).where(Submission.id == sub["id"]).values(
            status=SubmissionStatus.RUNNING, claim_id="x", started_at=old, attempts=course.settings.max_attempts))
    assert sweep_once(course.settings, course.app.state.relay).failed == 1
    view = course.client.get(f"/api/v1/submissions/{sub['id']}", headers=auth(course.alice)).json()
    assert view["status"] == "failed" and "after 3 attempts" in view["error"] and view["public_score"] is None


def test_unexpected_errors_are_retried_then_fail(course, monkeypatch):
    from worker import grading

    calls = []

    def broken(job, settings):
        calls.append(job.submission_id)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(grading, "_score", broken)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    view = wait_for_status(course.client, course.alice, r.json()["id"])
    assert view["status"] == "failed" and "after 3 attempts" in view["error"]
    assert "disk on fire" not in view["error"]
    assert len(calls) == course.settings.max_attempts


def test_rescore_replaces_scores_after_the_task_changes(course):
    sub = _scored(course, 0.8)
    labels_b = make_split(course.settings.effective_data_root, "pets/v2", n=200, seed=99)
    r = course.client.patch("/api/v1/tasks/pets", json={"yaml": task_yaml(split="pets/v2")},
                            headers=auth(course.instructor))
    assert r.status_code == 200 and r.json()["spec_version"] == 2
    r = course.client.post("/api/v1/tasks/pets/rescore", headers=auth(course.instructor))
    assert r.status_code == 202 and r.json()["requeued"] == 1
    course.app.state.relay.dispatcher.wait_idle(30)
    new = wait_for_status(course.client, course.alice, sub["id"])
    assert new["status"] == "scored" and new["public_score"] != sub["public_score"]
    # chance agreement with unrelated labels: about 1/|classes|
    assert new["public_score"] == pytest.approx(1 / len(CLASSES), abs=0.15)
    assert _row(course, sub["id"]).scored_spec_version == 2
    assert labels_b.shape == (200,)


def test_task_spec_cache_never_serves_a_different_spec_under_the_same_name_and_version():
    """A task recreated under the same name restarts at version 1; its new spec must win."""
    from grader_api.lifecycle.split_cache import task_spec

    base = {"name": "reused", "kind": "classification", "classes": ["a", "b"], "metric": "accuracy",
            "split": "reused/test"}
    first = task_spec("reused", 1, base)
    second = task_spec("reused", 1, {**base, "classes": ["a", "b", "c"]})
    assert first.classes == ("a", "b") and second.classes == ("a", "b", "c")
    assert task_spec("reused", 1, dict(base)) is first  # same content: served from the cache


def test_a_prediction_file_is_graded_while_slow_models_hold_the_embedded_workers(course, monkeypatch):
    """Two models at their time limit must not hold up a classmate's CSV (one pool per queue)."""
    import threading

    from worker import inprocess

    release, graded = threading.Event(), threading.Event()

    def fake_grade(submission_id, **_kw):
        if submission_id in (1, 2):   # the models: running until their time limit
            release.wait(20)
        else:
            graded.set()
        return "scored"

    monkeypatch.setattr(inprocess, "grade_submission", fake_grade)
    pool = inprocess.InProcessWorker(course.settings.model_copy(update={"inprocess_workers": 2}),
                                     course.app.state.db)
    try:
        pool.send(1, "gpu")
        pool.send(2, "gpu")
        pool.send(3, "cpu")
        assert graded.wait(5), "the prediction file waited behind the models"
        assert not release.is_set()
    finally:
        release.set()
        assert pool.wait_idle(10)
        pool.close()


def test_failures_that_held_a_grader_count_against_the_daily_limit(course):
    """A model run that failed after it started (a limit, or a rejected output) and a run stopped
    by the grading time limit use a submission; server problems, bad prediction files and a model
    refused before any sandbox started (`model_refused`) do not."""
    from grader_api.models import SubmissionKind, Task, User
    from grader_api.services.tasks import used_today

    now = utcnow()
    with course.app.state.db.transaction() as s:
        task = s.scalars(sa.select(Task).where(Task.name == "pets")).one()
        alice = s.scalars(sa.select(User).where(User.name == "alice")).one()
        for code in ("resource_limit", "time_limit", "model_rejected", "attempts_exhausted", "wrong_shape",
                     "model_refused"):
            s.add(Submission(task_id=task.id, user_id=alice.id, kind=SubmissionKind.MODEL,
                             status=SubmissionStatus.FAILED, error_code=code, file_sha256="0" * 64,
                             file_size=1, created_at=now, updated_at=now))
        s.flush()
        assert used_today(s, task, alice, now) == 3
    r = course.client.patch("/api/v1/tasks/pets", json={"daily_limit": 4}, headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    assert upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8)).status_code == 202
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7))
    assert r.status_code == 429 and r.json()["code"] == "daily_limit", r.text
    assert "unless they held a grader" in r.json()["detail"]


_FAILED_STATE = ("status", "claim_id", "error", "error_code", "report", "public_primary", "private_primary",
                 "overall_primary", "points", "model_stats", "scored_at", "scored_spec_version")


def _exhausted_state(course, sid) -> dict:
    row = _row(course, sid)
    state = {k: getattr(row, k) for k in _FAILED_STATE}
    assert row.finished_at is not None
    return state


@pytest.mark.parametrize("path", ["sweeper", "worker release", "worker claim"])
def test_attempts_exhausted_ends_in_the_same_state_from_the_worker_and_the_sweeper(course, monkeypatch, path):
    """One transition, three callers: a scored row whose rescore ran out of attempts keeps none of
    its old scores, model statistics or spec version, whichever part of the system ends it (the
    sweeper's copy once left model_stats and scored_spec_version behind)."""
    sub = _scored(course)
    sid, n = sub["id"], course.settings.max_attempts
    old = utcnow() - timedelta(hours=1)
    with course.app.state.db.transaction() as s:  # a scored row, now being rescored for the last time
        s.execute(sa.update(Submission).where(Submission.id == sid).values(
            model_stats={"params": 1}, status=SubmissionStatus.RUNNING, claim_id="run-3", started_at=old,
            attempts=n))
    if path == "sweeper":
        assert sweep_once(course.settings, course.app.state.relay).failed == 1
    elif path == "worker release":
        assert transitions.release_or_fail(course.app.state.db, course.app.state.relay, sid, "run-3",
                                           max_attempts=n) == "failed"
    else:  # a redelivered message finds the row stuck and out of attempts
        assert grade_submission(sid, settings=course.settings, relay=course.app.state.relay) == "skipped"
    assert _exhausted_state(course, sid) == {
        "status": SubmissionStatus.FAILED, "claim_id": None,
        "error": f"grading failed after {n} attempts (a server-side problem, not your file); the course staff "
                 "can see the logs — you may resubmit the same file",
        "error_code": "attempts_exhausted", "report": None, "public_primary": None, "private_primary": None,
        "overall_primary": None, "points": None, "model_stats": None, "scored_at": None,
        "scored_spec_version": None}
