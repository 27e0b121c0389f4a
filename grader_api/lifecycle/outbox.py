"""Getting a submission id to a worker, strictly after the commit that created the work.

`OutboxRelay.enqueue` writes an outbox row in the caller's transaction and registers an
after-commit callback; the callback sends the message through the relay's dispatcher (the
Celery publisher, or the in-process worker's pools) and marks the row sent. A send that fails
leaves the row unsent for the sweeper. The relay knows its dispatcher only by this protocol:
which one runs is the entry point's choice from the settings (`REDIS_URL` set or not).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.db import Database, after_commit
from grader_api.models import Outbox, utcnow

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def send(self, submission_id: int, queue: str) -> None: ...
    def wait_idle(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


class OutboxRelay:
    def __init__(self, db: Database, dispatcher: Dispatcher):
        self.db, self.dispatcher = db, dispatcher

    def enqueue(self, session: Session, submission_id: int, queue: str) -> None:
        """Record the message in this transaction; send it after the commit."""
        row = Outbox(submission_id=submission_id, queue=queue)
        session.add(row)
        session.flush()
        outbox_id = row.id

        def send() -> None:
            self.send_pending([outbox_id])

        after_commit(session, send)

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
        sent: list[int] = []
        failed: dict[int, str] = {}
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

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until what was sent has been handed over (a broker: at once; the in-process
        worker: graded). False on timeout."""
        return self.dispatcher.wait_idle(timeout)

    def close(self) -> None:
        self.dispatcher.close()
