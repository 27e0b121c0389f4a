"""Getting a submission id to a worker, strictly after the commit that created the work.

`OutboxRelay.enqueue` writes an outbox row in the caller's transaction and registers an
after-commit callback; the callback sends the message (Celery, or the in-process worker pool)
and marks the row sent. A send that fails leaves the row unsent for the sweeper.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.config import Settings
from grader_api.db import Database, after_commit
from grader_api.models import Outbox, SubmissionKind, utcnow

log = logging.getLogger(__name__)

GRADE_TASK_NAME = "heldout.grade_submission"
# Prediction files are scored on CPU workers; model files run on GPU workers.
QUEUE_FOR_KIND = {SubmissionKind.PREDICTIONS: "cpu", SubmissionKind.MODEL: "gpu"}


class Dispatcher(Protocol):
    def send(self, submission_id: int, queue: str) -> None: ...
    def close(self) -> None: ...


class CeleryDispatcher:
    """Publishes to the Redis broker; queue names carry the settings' prefix."""

    def __init__(self, settings: Settings):
        from worker.celery_app import create_celery_app

        self._settings = settings
        self._app = create_celery_app(settings)

    def send(self, submission_id: int, queue: str) -> None:
        self._app.send_task(GRADE_TASK_NAME, args=[submission_id],
                            queue=self._settings.queue_name(queue), retry=False)

    def close(self) -> None:
        self._app.close()


class InProcessDispatcher:
    """Hands the id to the embedded worker's thread pool (no broker)."""

    def __init__(self, settings: Settings):
        from worker.inprocess import InProcessWorker

        self._worker = InProcessWorker(settings)

    def bind(self, relay: OutboxRelay) -> None:
        self._worker.relay = relay

    def send(self, submission_id: int, queue: str) -> None:
        self._worker.submit(submission_id, queue)

    def close(self) -> None:
        self._worker.shutdown()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return self._worker.wait_idle(timeout)


class OutboxRelay:
    def __init__(self, db: Database, dispatcher: Dispatcher):
        self.db, self.dispatcher = db, dispatcher
        if isinstance(dispatcher, InProcessDispatcher):
            dispatcher.bind(self)

    def enqueue(self, session: Session, submission_id: int, queue: str) -> None:
        """Record the message in this transaction; send it after the commit."""
        row = Outbox(submission_id=submission_id, queue=queue)
        session.add(row)
        session.flush()
        outbox_id = row.id
        after_commit(session, lambda: self.send_pending([outbox_id]))

    def send_pending(self, outbox_ids: Iterable[int]) -> int:
        """Send these outbox rows (if still unsent) and mark them sent. Returns how many were sent."""
        ids = list(outbox_ids)
        if not ids:
            return 0
        with self.db.transaction() as s:
            rows = s.execute(
                sa.select(Outbox.id, Outbox.submission_id, Outbox.queue)
                .where(Outbox.id.in_(ids), Outbox.sent_at.is_(None))
            ).all()
        sent, failed = [], {}
        for oid, sid, queue in rows:
            try:
                self.dispatcher.send(sid, queue)
                sent.append(oid)
            except Exception as exc:  # broker down: leave it for the sweeper
                log.warning("could not send submission %s to queue %s: %s", sid, queue, exc)
                failed[oid] = f"{type(exc).__name__}: {exc}"[:500]
        with self.db.transaction() as s:
            if sent:
                s.execute(sa.update(Outbox).where(Outbox.id.in_(sent))
                          .values(sent_at=utcnow(), send_attempts=Outbox.send_attempts + 1))
            for oid, err in failed.items():
                s.execute(sa.update(Outbox).where(Outbox.id == oid)
                          .values(send_attempts=Outbox.send_attempts + 1, last_error=err))
        return len(sent)

    def close(self) -> None:
        self.dispatcher.close()


def make_relay(settings: Settings, db: Database) -> OutboxRelay:
    dispatcher: Dispatcher = CeleryDispatcher(settings) if settings.uses_celery else InProcessDispatcher(settings)
    return OutboxRelay(db, dispatcher)
