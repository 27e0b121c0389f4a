"""Fault scenarios on the real stack: each breaks one part, then checks the invariants
(every accepted submission terminal with a reason, none lost, stuck or duplicated, scores equal
to the offline scoring core's)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.resilience.audit import Ledger, audit
from tests.resilience.course import make_task
from tests.resilience.record import pick
from tests.resilience.scenario import send, wait_marked
from tests.service.helpers import auth

pytestmark = [pytest.mark.resilience, pytest.mark.slow]

# CIFAR-100 shape in full mode; a smaller split keeps CI short.
N_ITEMS, N_CLASSES = pick(2000, 10_000), pick(20, 100)


def _task(env, prefix):
    return make_task(env.client, env.prof, env.data_root, n=N_ITEMS, k=N_CLASSES, prefix=prefix)


def test_worker_sigkilled_mid_grading_then_restarted(healthy):
    env = healthy
    task = _task(env, "kill")
    ledger = Ledger()
    victim = send(env.client, env.alice, task, ledger, "kill-0", seed=0, filename="sleep-3.csv").json()["id"]
    for i in range(1, pick(5, 30)):
        send(env.client, env.alice, task, ledger, f"kill-{i}", seed=i)
    wait_marked(env.storage.parent / "marks", victim)
    env.stack.workers.pop().kill()             # SIGKILL the worker and its pool child mid-grading
    time.sleep(1)
    for i in range(pick(5, 30), pick(8, 40)):  # uploads while no worker runs
        send(env.client, env.alice, task, ledger, f"kill-{i}", seed=i)
    env.stack.start_worker()
    fig = audit("worker SIGKILL mid-grading (CSV)", env.db_url, task, ledger, bound_s=90)
    fig.assert_clean()
    assert fig.scored == fig.sent, fig  # valid files: the retry scores them all
    body = env.client.get(f"/api/v1/submissions/{victim}", headers=auth(env.alice)).json()
    assert body["attempts"] == 2, body  # the kill landed while it was being graded; graded again once


def test_redis_stopped_while_submissions_arrive(healthy):
    env = healthy
    task = _task(env, "redis")
    ledger = Ledger()
    for i in range(pick(3, 20)):
        send(env.client, env.alice, task, ledger, f"r-before-{i}", seed=i)
    env.stack.redis.stop()                    # the broker is gone, with whatever it held
    for i in range(pick(6, 40)):
        send(env.client, env.alice, task, ledger, f"r-during-{i}", seed=100 + i, timeout=30)
    during = {n: a for n, a in ledger.answers.items() if n.startswith("r-during")}
    env.stack.redis.start()
    for i in range(pick(3, 20)):
        send(env.client, env.alice, task, ledger, f"r-after-{i}", seed=200 + i)
    fig = audit("Redis stopped during uploads, restarted", env.db_url, task, ledger, bound_s=120)
    fig.assert_clean()
    # Accepted (the outbox keeps them) or refused cleanly with 503; nothing half-stored.
    assert set(during.values()) <= {"202", "503"}, during
    assert fig.scored == fig.accepted, fig


def test_postgres_restarted_while_workers_write_results(healthy):
    env = healthy
    task = _task(env, "pg")
    ledger = Ledger()
    first = None
    for i in range(pick(6, 40)):
        r = send(env.client, env.alice, task, ledger, f"pg-{i}", seed=i, filename="sleep-1.csv")
        first = first or r.json()["id"]
    wait_marked(env.storage.parent / "marks", first)
    stop = threading.Event()

    def keep_uploading():  # clients keep coming while the database restarts
        i = 0
        while not stop.is_set():
            send(env.client, env.bob, task, ledger, f"pg-during-{i}", seed=500 + i, timeout=30)
            i += 1
            time.sleep(0.2)

    t = threading.Thread(target=keep_uploading)
    t.start()
    env.stack.pg.stop("fast")
    time.sleep(3)
    env.stack.pg.start()
    time.sleep(1)
    stop.set()
    t.join(60)
    assert not t.is_alive(), "the uploading client did not stop"
    fig = audit("PostgreSQL restarted while workers write", env.db_url, task, ledger, bound_s=120)
    fig.assert_clean()
    bad = {n: a for n, a in ledger.answers.items() if a not in ("202", "503")}
    assert not bad, f"uploads during the restart must be accepted or refused with 503: {bad}"
    assert fig.scored == fig.accepted, fig


def test_same_message_delivered_twice(healthy):
    from grader_api.config import Settings
    from grader_api.lifecycle.queues import GRADE_TASK_NAME
    from worker.celery_app import create_celery_app

    env = healthy
    task = _task(env, "dup")
    ledger = Ledger()
    ids = []
    for i in range(pick(4, 20)):
        ids.append(send(env.client, env.alice, task, ledger, f"dup-{i}", seed=i,
                        filename="sleep-1.csv" if i == 0 else "preds.csv").json()["id"])
    settings = Settings(redis_url=env.stack.env["REDIS_URL"], queue_prefix=env.stack.env["HELDOUT_QUEUE_PREFIX"],
                        task_time_limit_s=20, visibility_timeout_s=50)
    celery = create_celery_app(settings)
    try:
        for _ in range(2):  # re-delivery while queued/running, and again after scoring
            for sid in ids:
                celery.send_task(GRADE_TASK_NAME, args=[sid], queue=settings.queue_name("cpu"))
            time.sleep(2)
    finally:
        celery.close()
    fig = audit("same message delivered 2-3 times", env.db_url, task, ledger, bound_s=60)
    fig.assert_clean()
    _wait_queue_drained(env.stack.env["REDIS_URL"], settings.queue_name("cpu"))
    time.sleep(2)  # the last duplicate taken may still be running: it must change nothing
    for sid in ids:
        body = env.client.get(f"/api/v1/submissions/{sid}", headers=auth(env.alice)).json()
        assert body["status"] == "scored" and body["attempts"] == 1, body


def _wait_queue_drained(redis_url: str, queue: str, bound_s: float = 30) -> None:
    """Until no message waits in the broker's list for `queue` (every duplicate was taken)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + bound_s
        while client.llen(queue):
            assert time.monotonic() < deadline, f"{client.llen(queue)} messages still queued after {bound_s} s"
            time.sleep(0.2)
    finally:
        client.close()


def test_task_exceeding_its_time_limit(healthy):
    env = healthy
    task = _task(env, "slow")
    ledger = Ledger()
    slow = send(env.client, env.alice, task, ledger, "slow-0", seed=0, filename="sleep-60.csv").json()["id"]
    for i in range(1, pick(4, 10)):
        send(env.client, env.alice, task, ledger, f"slow-{i}", seed=i)
    fig = audit("task exceeds its time limit", env.db_url, task, ledger, bound_s=90, expect_failed={"slow-0"})
    fig.assert_clean()
    body = env.client.get(f"/api/v1/submissions/{slow}", headers=auth(env.alice)).json()
    assert body["status"] == "failed" and "time limit" in body["error"], body
    assert fig.scored == fig.sent - 1, fig


def test_api_killed_between_storing_and_answering(healthy):
    """SIGKILL uvicorn while uploads are in flight; afterwards: no row without its file, every row
    terminal, and what is left in storage without a row is counted (see RELIABILITY.md)."""
    import sqlalchemy as sa

    from grader_api.db import get_database
    from grader_api.storage import LocalStorage
    from tests.resilience.record import record
    from worker.storage_gc import collect_garbage

    env = healthy
    task = _task(env, "apikill")
    ledger = Ledger()
    rounds, clients = pick(3, 6), pick(6, 20)
    rng = random.Random(6)
    for rnd in range(rounds):
        killed = threading.Event()

        def client(k: int, rnd: int = rnd, killed: threading.Event = killed) -> None:
            # Upload back to back until the API is gone, so the kill lands on requests in flight
            # (some before the commit, some between storing the file and answering).
            i = 0
            while not killed.is_set():
                send(env.client, env.alice, task, ledger, f"ak-{rnd}-{k}-{i}", seed=rnd * 100_000 + k * 1000 + i,
                     timeout=30)
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 1.5))
        env.stack.api.kill()
        killed.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "clients did not stop after the kill"
        env.stack.start_api()
    fig = audit("API SIGKILLed during uploads", env.db_url, task, ledger, bound_s=90)
    fig.assert_clean()
    assert fig.scored == fig.accepted, fig  # "graded like any other"
    with get_database(env.db_url).transaction() as s:
        shas = set(s.scalars(sa.text("SELECT file_sha256 FROM submissions")).all())
        notes = set(s.scalars(sa.text("SELECT note FROM submissions")).all())
    storage = LocalStorage(env.storage)
    objects = {sha for sha, _ in storage.objects()}
    temps_before, orphans_before = len(storage.temp_files()), len(objects - shas)
    # What the kills left behind is what the sweeper's storage GC is for; nothing is in flight
    # now, so collect with no age bound and check that it leaves exactly what rows refer to.
    gc = collect_garbage(get_database(env.db_url), storage, max_age_s=0)
    objects_after = {sha for sha, _ in storage.objects()}
    unanswered = [n for n, a in ledger.answers.items() if a.startswith("conn_error")]
    record("apikill", "API SIGKILLed during uploads", unanswered=len(unanswered),
           accepted_without_answer=sum(1 for n in unanswered if n in notes),
           rows_without_file=len(shas - objects), objects_without_row=orphans_before,
           temp_files_left=temps_before, removed_by_storage_gc=gc.orphan_objects + gc.temp_files,
           left_after_storage_gc=len(objects_after - shas) + len(storage.temp_files()))
    assert not shas - objects, "a submission row whose file is not in storage"
    assert gc.orphan_objects == orphans_before and gc.temp_files == temps_before, gc
    assert objects_after == shas and not storage.temp_files()
