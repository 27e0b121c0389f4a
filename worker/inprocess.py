"""The embedded worker: a small thread pool that calls the same `grade_submission` as Celery.

Used when no broker is configured (`grade serve` on one machine, tests). Threads, not
processes: prediction files are parsed and scored in numpy, which releases the GIL for the
heavy parts; model files get their own sandboxed process from `worker.model_eval` anyway.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from grader_api.config import Settings

log = logging.getLogger(__name__)


class InProcessWorker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.relay = None  # set by OutboxRelay so retries go back through this pool
        self._pool: ThreadPoolExecutor | None = None
        self._pending = 0
        self._cond = threading.Condition()
        self._closed = False

    def submit(self, submission_id: int) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("in-process worker is shut down")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.settings.inprocess_workers,
                                                thread_name_prefix="heldout-grader")
            self._pending += 1
        self._pool.submit(self._run, submission_id)

    def _run(self, submission_id: int) -> None:
        from worker.grading import grade_submission

        try:
            grade_submission(submission_id, settings=self.settings, relay=self.relay)
        except Exception:  # the sweeper re-queues whatever this left running
            log.exception("in-process grading of submission %s crashed", submission_id)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no grading is pending (tests, demo seeding)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)
