"""The sweeper: nothing stays `queued` or `running` forever.

One pass (`sweep_once`):
  1. outbox rows still unsent after a grace period are sent again (the broker was down, the
     process died between commit and send);
  2. submissions `queued` for too long with no pending outbox row are re-sent (a message was
     lost in the broker);
  3. submissions `running` for too long are re-queued (the worker died or hung).
The thread also removes, hourly, stored files no submission refers to (worker/storage_gc.py).
Anything out of attempts fails with a reason instead. Every change is a conditional UPDATE,
so sweepers in several processes may run at once: the worst case is a duplicate message,
which the worker's claim turns into a no-op.

It runs as a thread in `grade serve`, next to the Celery worker in `grade worker`, and once
with `grade admin sweep`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

import sqlalchemy as sa

from grader_api.config import Settings
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.transitions import Outcome, requeue_or_fail
from grader_api.models import Outbox, Submission, SubmissionStatus, utcnow
from grader_api.storage import LocalStorage
from worker.storage_gc import collect_garbage

log = logging.getLogger(__name__)

_BATCH = 500


@dataclass
class SweepResult:
    resent_outbox: int = 0
    requeued_queued: int = 0
    requeued_running: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def count(self, outcome: Outcome, requeued_field: str) -> None:
        if outcome == Outcome.QUEUED:
            setattr(self, requeued_field, getattr(self, requeued_field) + 1)
        elif outcome == Outcome.FAILED:
            self.failed += 1


def sweep_once(settings: Settings, relay: OutboxRelay) -> SweepResult:
    result = SweepResult()
    now = utcnow()
    db = relay.db

    with db.transaction() as s:
        unsent = s.scalars(
            sa.select(Outbox.id)
            .where(Outbox.sent_at.is_(None), Outbox.created_at < now - timedelta(seconds=settings.outbox_grace_s))
            .order_by(Outbox.id).limit(_BATCH)
        ).all()
    result.resent_outbox = relay.send_pending(unsent)

    with db.transaction() as s:
        pending_outbox = sa.select(Outbox.id).where(
            Outbox.submission_id == Submission.id, Outbox.sent_at.is_(None)).exists()
        stuck_queued = s.execute(
            sa.select(Submission.id, Submission.attempts, Submission.kind, Submission.updated_at)
            .where(Submission.status == SubmissionStatus.QUEUED,
                   Submission.updated_at < now - timedelta(seconds=settings.stuck_queued_after_s),
                   ~pending_outbox)
            .order_by(Submission.id).limit(_BATCH)
        ).all()
        for sid, attempts, kind, updated_at in stuck_queued:
            guard = (Submission.status == SubmissionStatus.QUEUED, Submission.updated_at == updated_at)
            outcome = requeue_or_fail(s, relay, submission_id=sid, attempts=attempts, kind=kind, guard=guard,
                                      max_attempts=settings.max_attempts)
            result.count(outcome, "requeued_queued")

        stuck_running = s.execute(
            sa.select(Submission.id, Submission.attempts, Submission.kind, Submission.claim_id)
            .where(Submission.status == SubmissionStatus.RUNNING,
                   Submission.started_at < now - timedelta(seconds=settings.stuck_running_after_s))
            .order_by(Submission.id).limit(_BATCH)
        ).all()
        for sid, attempts, kind, claim_id in stuck_running:
            guard = (Submission.status == SubmissionStatus.RUNNING, Submission.claim_id == claim_id)
            outcome = requeue_or_fail(s, relay, submission_id=sid, attempts=attempts, kind=kind, guard=guard,
                                      max_attempts=settings.max_attempts)
            result.count(outcome, "requeued_running")
    if any(result.as_dict().values()):
        log.info("sweep: %s", result.as_dict())
    return result


class SweeperThread:
    """Calls `sweep_once` every `sweep_interval_s` until stopped (daemon thread, no beat)."""

    def __init__(self, settings: Settings, relay: OutboxRelay):
        self.settings, self.relay = settings, relay
        self._next_gc = 0.0  # storage GC on the first tick (leftovers of a crashed process), then hourly
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heldout-sweeper", daemon=True)

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep_once(self.settings, self.relay)
            except Exception:  # keep sweeping: a DB hiccup must not stop the safety net
                log.exception("sweep failed")
            if time.monotonic() >= self._next_gc:
                self._next_gc = time.monotonic() + self.settings.storage_gc_interval_s
                try:
                    collect_garbage(self.relay.db, LocalStorage(self.settings.effective_storage_dir),
                                    self.settings.storage_gc_age_s)
                except Exception:
                    log.exception("storage gc failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
