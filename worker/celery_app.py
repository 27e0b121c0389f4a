"""The Celery application.

`celery -A worker.celery_app worker` needs a module attribute, so `app` exists at import; it
is an unconfigured `Celery` object (cheap, no connection). Its configuration is a promise
(`add_defaults` with a callable) read from `Settings` only when Celery first needs it.
Processes that publish with explicit settings (the API, tests) build their own app with
`create_celery_app(settings)`.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from grader_api.config import Settings, get_settings


def celery_config(settings: Settings) -> dict:
    if settings.task_time_limit_s >= settings.visibility_timeout_s:
        raise ValueError("task_time_limit_s must stay below visibility_timeout_s, "
                         "or the broker re-delivers tasks that are still running")
    transport = {"visibility_timeout": settings.visibility_timeout_s}
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
        "task_queues": [Queue(settings.queue_name("cpu")), Queue(settings.queue_name("gpu"))],
        "task_default_queue": settings.queue_name("cpu"),
        "task_publish_retry": False,                # a failed publish leaves the outbox row for the sweeper
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def create_celery_app(settings: Settings | None = None) -> Celery:
    celery = Celery("heldout", include=["worker.tasks"], set_as_current=False)
    if settings is None:
        celery.add_defaults(lambda: celery_config(get_settings()))
    else:
        celery.conf.update(celery_config(settings))
    return celery


app = create_celery_app()
