"""The embedded worker: thread pools that call the same `grade_submission` as Celery.

Used when no broker is configured (`grade serve` on one machine, tests). One pool per queue
(`cpu`: prediction files, `gpu`: model files), as Celery workers have one per queue: a model
holds its thread for up to its task's time limit, and a prediction file must never wait for
that. Threads, not processes: prediction files are parsed and scored in numpy, which releases
the GIL for the heavy parts; model files get their own sandboxed process from
`worker.model_eval` anyway.

The worker is the dispatcher of its own outbox relay (`self.relay`): uploads, retries and
sweeps all go through that relay, so a retry comes back to these pools after its commit.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from grader_api.config import Settings
from grader_api.db import Database
from grader_api.lifecycle.outbox import OutboxRelay
from worker.grading import grade_submission

log = logging.getLogger(__name__)


class InProcessWorker:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.relay = OutboxRelay(db, self)
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pending = 0
        self._cond = threading.Condition()
        self._closed = False

    def send(self, submission_id: int, queue: str) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("in-process worker is shut down")
            pool = self._pools.get(queue)
            if pool is None:
                pool = self._pools[queue] = ThreadPoolExecutor(
                    max_workers=self.settings.inprocess_workers, thread_name_prefix=f"heldout-grader-{queue}")
            self._pending += 1
        pool.submit(self._run, submission_id)

    def _run(self, submission_id: int) -> None:
        try:
            grade_submission(submission_id, settings=self.settings, relay=self.relay)
        except Exception:  # the sweeper re-queues whatever this left running
            log.exception("in-process grading of submission %s crashed", submission_id)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no grading is pending (tests, demo seeding, `grade admin sweep`)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=False)
