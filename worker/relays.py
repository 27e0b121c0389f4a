"""The outbox relay an entry point runs with, chosen by the settings: the Celery publisher when
`REDIS_URL` is set, otherwise the embedded in-process worker (which then grades in this process).

The caller owns the relay and closes it (`relay.close()` stops the embedded worker's pools).
"""

from __future__ import annotations

from grader_api.config import Settings
from grader_api.db import Database
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.queues import CeleryDispatcher


def make_relay(settings: Settings, db: Database) -> OutboxRelay:
    if settings.uses_celery:
        return OutboxRelay(db, CeleryDispatcher(settings))
    from worker.inprocess import InProcessWorker

    return InProcessWorker(settings, db).relay
