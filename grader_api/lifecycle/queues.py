"""Queue names, the Celery configuration, and the publisher the API and the worker share.

Prediction files are scored on `cpu` workers, model files on `gpu` workers. The Celery task
itself is registered by the worker (`worker.tasks`); publishers send it by name, so they never
import the worker.
"""

from __future__ import annotations

import threading
from typing import Any

from grader_api.config import Settings
from grader_api.models import SubmissionKind

GRADE_TASK_NAME = "heldout.grade_submission"
QUEUE_FOR_KIND = {SubmissionKind.PREDICTIONS: "cpu", SubmissionKind.MODEL: "gpu"}


def queue_for(kind: SubmissionKind | str) -> str:
    return QUEUE_FOR_KIND[SubmissionKind(kind)]


def _queue(name: str) -> Any:
    from kombu.entity import Queue

    return Queue(name)  # type: ignore[no-untyped-call]  # kombu ships no annotations


def celery_config(settings: Settings) -> dict[str, Any]:
    if settings.task_time_limit_s >= settings.visibility_timeout_s:
        raise ValueError("task_time_limit_s must stay below visibility_timeout_s, "
                         "or the broker re-delivers tasks that are still running")
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.queue_prefix:
        transport["global_keyprefix"] = settings.queue_prefix
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,                 # results live in the database
        "task_acks_late": True,                     # a crash before the end re-delivers the message
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        # The soft limit fires first so the task can fail with a reason; keep it a fraction of the
        # hard limit (not a fixed 30 s, which leaves 1 s for any hard limit under 31 s).
        "task_soft_time_limit": settings.task_time_limit_s - min(30, max(1, settings.task_time_limit_s // 10)),
        "task_queues": [_queue(settings.queue_name("cpu")), _queue(settings.queue_name("gpu"))],
        "task_default_queue": settings.queue_name("cpu"),
        "task_publish_retry": False,                # a failed publish leaves the outbox row for the sweeper
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


class CeleryDispatcher:
    """Publishes grading messages to the Redis broker; queue names carry the settings' prefix."""

    def __init__(self, settings: Settings):
        from celery import Celery

        self._settings = settings
        self._app = Celery("heldout-publisher", set_as_current=False)
        self._app.conf.update(celery_config(settings))

    def send(self, submission_id: int, queue: str) -> None:
        self._app.send_task(GRADE_TASK_NAME, args=[submission_id],
                            queue=self._settings.queue_name(queue), retry=False)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return True  # a sent message is the broker's; the workers' progress is not ours to wait for

    def close(self) -> None:
        self._app.close()


_publishers: dict[tuple[str | None, str], CeleryDispatcher] = {}
_publishers_lock = threading.Lock()


def shared_celery_dispatcher(settings: Settings) -> CeleryDispatcher:
    """One publisher per broker and prefix per process (each Celery worker process re-queues
    and sweeps through it)."""
    key = (settings.redis_url, settings.queue_prefix)
    with _publishers_lock:
        dispatcher = _publishers.get(key)
        if dispatcher is None:
            dispatcher = _publishers[key] = CeleryDispatcher(settings)
        return dispatcher
