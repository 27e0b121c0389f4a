"""Celery app module for the resilience workers: the real `worker.celery_app.app` plus one
test-only hook, so scenarios can kill a worker *while* it grades, or overrun the time limit.

A submission whose file name contains `sleep-<N>` waits N seconds before scoring (the score
itself is untouched), and every grading start is marked with a file `started-<id>` in
HELDOUT_TEST_MARK_DIR, so a test knows the worker is mid-grading before it strikes.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import worker.grading as grading
import worker.tasks  # noqa: F401 - registers the task on the app
from worker.celery_app import app  # noqa: F401 - `celery -A tests.resilience.hooks` finds it here

_real_score = grading._score
_SLEEP = re.compile(r"sleep-(\d+)")


def _score(job, settings):
    mark_dir = os.environ.get("HELDOUT_TEST_MARK_DIR")
    if mark_dir:
        Path(mark_dir, f"started-{job.submission_id}").touch()
    m = _SLEEP.search(job.filename or "")
    if m:
        time.sleep(int(m.group(1)))
    return _real_score(job, settings)


grading._score = _score
