"""Celery task front end of `worker.grading.grade_submission`."""

from __future__ import annotations

from grader_api.dispatch import GRADE_TASK_NAME
from worker.celery_app import app


@app.task(name=GRADE_TASK_NAME, ignore_result=True)
def grade(submission_id: int) -> str:
    from worker.grading import grade_submission

    return grade_submission(int(submission_id))
