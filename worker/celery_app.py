"""The Celery application.

`celery -A worker.celery_app worker` needs a module attribute, so `app` exists at import; it
is an unconfigured `Celery` object (cheap, no connection). Its configuration is a promise
(`add_defaults` with a callable) read from `Settings` only when Celery first needs it; the
configuration itself is the lifecycle's (`grader_api.lifecycle.queues.celery_config`), which
publishers use too.
Processes that publish with explicit settings (the API, tests) build their own app with
`create_celery_app(settings)`.
"""

from __future__ import annotations

from celery import Celery

from grader_api.config import Settings, get_settings
from grader_api.lifecycle.queues import celery_config


def create_celery_app(settings: Settings | None = None) -> Celery:
    celery = Celery("heldout", include=["worker.tasks"], set_as_current=False)
    if settings is None:
        celery.add_defaults(lambda: celery_config(get_settings()))
    else:
        celery.conf.update(celery_config(settings))
    return celery


app = create_celery_app()
