"""A deadline rush: many clients upload CIFAR-100-sized CSVs at once. Figures: accepted/s,
p50/p95/p99 time to accept and to score, errors by kind, peak RSS of the API and the workers;
invariants as in the fault scenarios."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from tests.resilience.audit import Ledger, audit
from tests.resilience.course import make_task, post_file
from tests.resilience.record import pick, record
from tests.service.helpers import auth

pytestmark = [pytest.mark.resilience, pytest.mark.slow]

SUBMISSIONS, CLIENTS = pick(40, 1000), pick(10, 100)
API_RSS_MB, WORKER_RSS_MB = 1500, 3000   # bounds on peak resident memory


def _pct(xs, q):
    return round(float(np.percentile(xs, q)), 3) if xs else None


class _RssSampler(threading.Thread):
    """Peak RSS every 0.5 s; counts its samples and keeps its error, so a sampler that died
    cannot pass the memory bound with peaks of zero."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.stop, self.api, self.workers = stack, threading.Event(), 0.0, 0.0
        self.samples, self.error = 0, None

    def run(self):
        try:
            while not self.stop.wait(0.5):
                self.api = max(self.api, self.stack.api.rss_mb())
                self.workers = max(self.workers, max((w.rss_mb() for w in self.stack.workers), default=0))
                self.samples += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = repr(exc)


def _student(env, name: str) -> str:
    r = env.client.post("/api/v1/users", json={"name": name, "role": "student"}, headers=auth(env.prof))
    if r.status_code == 409:  # the session's stack is shared: a second run re-issues a token
        r = env.client.post(f"/api/v1/users/{name}/tokens", headers=auth(env.prof))
    assert r.status_code in (200, 201), r.text
    return r.json()["token"]


def test_deadline_rush(healthy):
    from grader_api.db import get_database

    env = healthy
    task = make_task(env.client, env.prof, env.data_root, n=10_000, k=100, prefix="rush")  # CIFAR-100 size
    files = [task.csv(0.3 + (i % 60) / 100, 10_000 + i) for i in range(SUBMISSIONS)]
    env.stack.start_worker("rush2")   # two single-process workers, one per core
    # One student per client, as in a real rush (a student's parallel uploads queue on their own
    # row lock; that path is exercised too: each client sends several files back to back).
    students = [_student(env, f"rush{k:03d}") for k in range(CLIENTS)]
    ledger, sent_at, accept_s = Ledger(), {}, []
    lock = threading.Lock()
    sampler = _RssSampler(env.stack)
    sampler.start()

    def client(k: int):
        with httpx.Client(base_url=env.stack.base_url, timeout=120) as c:
            for i in range(k, SUBMISSIONS, CLIENTS):
                note, t0 = f"rush-{i}", time.time()
                try:
                    r = post_file(c, students[k], task.name, files[i], note=note, timeout=120)
                    ledger.add(note, files[i], str(r.status_code), r.json().get("id") if r.status_code == 202 else None)
                except httpx.HTTPError as exc:
                    ledger.add(note, files[i], f"conn_error:{type(exc).__name__}")
                    continue
                with lock:
                    sent_at[note] = t0
                    if r.status_code == 202:
                        accept_s.append(time.time() - t0)

    t_start = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    upload_deadline = time.monotonic() + pick(300, 3600)   # one bound for all clients together
    for t in threads:
        t.join(max(0.0, upload_deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "clients still uploading after the bound"
    t_uploaded = time.time()
    fig = audit("deadline rush (load)", env.db_url, task, ledger, bound_s=pick(180, 3600))
    sampler.stop.set()
    sampler.join(5)
    with get_database(env.db_url).transaction() as s:
        done = dict(s.execute(sa.text(
            "SELECT s.note, s.finished_at FROM submissions s JOIN tasks t ON t.id = s.task_id "
            "WHERE t.name = :n AND s.finished_at IS NOT NULL"), {"n": task.name}).all())
        graded_twice = s.execute(sa.text(
            "SELECT count(*) FROM submissions s JOIN tasks t ON t.id = s.task_id "
            "WHERE t.name = :n AND s.attempts > 1"), {"n": task.name}).scalar_one()
    to_score = [done[n].timestamp() - sent_at[n] for n in done if n in sent_at]
    t_end = max((v.timestamp() for v in done.values()), default=t_uploaded)
    figures = dict(
        submissions=SUBMISSIONS, clients=CLIENTS, file_bytes=len(files[0]), workers=len(env.stack.workers),
        accepted=fig.accepted, accepted_per_s=round(fig.accepted / max(t_uploaded - t_start, 1e-9), 1),
        scored_per_s=round(fig.scored / max(t_end - t_start, 1e-9), 1),
        accept_p50=_pct(accept_s, 50), accept_p95=_pct(accept_s, 95), accept_p99=_pct(accept_s, 99),
        score_p50=_pct(to_score, 50), score_p95=_pct(to_score, 95), score_p99=_pct(to_score, 99),
        errors_by_kind=ledger.errors_by_kind(), api_rss_peak_mb=round(sampler.api),
        worker_rss_peak_mb=round(sampler.workers),
        rss_samples=sampler.samples,
        lost=fig.lost, stuck=fig.stuck, duplicated=fig.duplicated, graded_more_than_once=graded_twice,
        wrong_score=fig.wrong_score,
    )
    record("load", "deadline rush", **figures)
    fig.assert_clean()
    assert not ledger.errors_by_kind(), figures
    assert fig.scored == SUBMISSIONS and graded_twice == 0, figures
    assert sampler.error is None and sampler.samples > 0 and sampler.api > 0 and sampler.workers > 0, figures
    assert sampler.api < API_RSS_MB and sampler.workers < WORKER_RSS_MB, figures
