"""Celery task front end of `worker.grading.grade_submission`."""

from __future__ import annotations

from grader_api.config import get_settings
from grader_api.db import get_database
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.queues import GRADE_TASK_NAME, shared_celery_dispatcher
from worker.celery_app import app


@app.task(name=GRADE_TASK_NAME, ignore_result=True)
def grade(submission_id: int) -> str:
    from worker.grading import grade_submission

    settings = get_settings()
    # Retries are re-published to the broker, through this process's one publisher.
    relay = OutboxRelay(get_database(settings.effective_database_url), shared_celery_dispatcher(settings))
    return grade_submission(int(submission_id), settings=settings, relay=relay)
