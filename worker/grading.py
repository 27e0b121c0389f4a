"""`grade_submission(id)`: the one grading function. The Celery task and the in-process worker
both call it.

Life of a submission here:
  claim    conditional UPDATE queued → running (attempts + 1, a fresh claim id), only while
           attempts < max; a running row is re-claimable only once it is stale. A duplicate
           delivery finds nothing to claim and does nothing.
  score    parse the stored file (or run the model in the sandbox), evaluate on the split.
  finish   UPDATE … WHERE claim_id = ours: scores and report land in one statement, so a
           rescore replaces old scores atomically and a superseded run cannot overwrite a newer one.
Failures a student can act on (format errors, model rejections) fail at once with the
message; anything else is retried (re-queued through the outbox) until the attempts run out.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from grader_api.config import Settings, get_settings
from grader_api.db import Database, get_database
from grader_api.dispatch import QUEUE_FOR_KIND, OutboxRelay, make_relay
from grader_api.models import Submission, SubmissionKind, SubmissionStatus, Task, utcnow
from grader_api.services.split_cache import load_split_cached, task_spec
from grader_api.services.tasks import COUNTED_NOTICE
from grader_api.storage import LocalStorage
from scoring.errors import PredictionFormatError

log = logging.getLogger(__name__)

try:  # raised inside a Celery task when its soft time limit passes
    from celery.exceptions import SoftTimeLimitExceeded as _SoftTimeLimit
except ImportError:  # pragma: no cover - celery is a dependency; the in-process worker has no limit
    class _SoftTimeLimit(Exception):
        pass


class StudentFacingFailure(Exception):
    """A failure whose message the student can act on; not retried."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass
class _Job:
    submission_id: int
    kind: SubmissionKind
    file_sha256: str
    filename: str | None
    task_name: str
    spec_version: int
    spec: dict


@dataclass
class _Outcome:
    report: dict
    model_stats: dict | None


# --- entry point -------------------------------------------------------------------------

def grade_submission(submission_id: int, *, settings: Settings | None = None,
                     relay: OutboxRelay | None = None) -> str:
    """Grade one submission. Returns the status it reached, or "skipped" when there was
    nothing to claim (finished, running elsewhere, or unknown id)."""
    settings = settings or get_settings()
    db = get_database(settings.effective_database_url)
    claim_id = _claim(db, submission_id, settings)
    if claim_id is None:
        return "skipped"
    try:
        job = _load_job(db, submission_id)
        outcome = _score(job, settings)
    except PredictionFormatError as exc:
        return _finish_failed(db, submission_id, claim_id, str(exc), exc.code)
    except StudentFacingFailure as exc:
        return _finish_failed(db, submission_id, claim_id, str(exc), exc.code)
    except _SoftTimeLimit:
        # The same file would overrun again: retrying only burns the worker for the hard limit
        # times the attempts. Fail now, saying which limit.
        return _finish_failed(db, submission_id, claim_id,
                              f"grading stopped: it took longer than the time limit of "
                              f"{settings.task_time_limit_s} s ({COUNTED_NOTICE})", "time_limit")
    except Exception:
        log.exception("grading submission %s failed unexpectedly", submission_id)
        return _release_or_fail(db, submission_id, claim_id, settings, relay)
    return _finish_scored(db, submission_id, claim_id, job, outcome)


# --- claim -------------------------------------------------------------------------------

def _claim(db: Database, submission_id: int, settings: Settings) -> str | None:
    now = utcnow()
    stale = now - timedelta(seconds=settings.stuck_running_after_s)
    claim_id = str(uuid.uuid4())
    claimable = sa.or_(
        Submission.status == SubmissionStatus.QUEUED,
        sa.and_(Submission.status == SubmissionStatus.RUNNING, Submission.started_at < stale),
    )
    with db.transaction() as s:
        res = s.execute(
            sa.update(Submission)
            .where(Submission.id == submission_id, claimable, Submission.attempts < settings.max_attempts)
            .values(status=SubmissionStatus.RUNNING, attempts=Submission.attempts + 1, claim_id=claim_id,
                    started_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 1:
            return claim_id
        # Nothing to claim. If it is claimable but out of attempts, it ends here, with a reason.
        s.execute(
            sa.update(Submission)
            .where(Submission.id == submission_id, claimable, Submission.attempts >= settings.max_attempts)
            .values(**attempts_exhausted(settings.max_attempts, now))
            .execution_options(synchronize_session=False)
        )
    return None


def attempts_exhausted(attempts: int, now: datetime) -> dict:
    """The one failed state a submission ends in when its attempts ran out, from the worker (its
    claim or its last release) or from the sweeper: the columns an UPDATE sets."""
    return dict(status=SubmissionStatus.FAILED, claim_id=None, finished_at=now, updated_at=now,
                error=(f"grading failed after {attempts} attempts (a server-side problem, not your "
                       "file); the course staff can see the logs — you may resubmit the same file"),
                error_code="attempts_exhausted", **_cleared_scores())


# --- score -------------------------------------------------------------------------------

def _load_job(db: Database, submission_id: int) -> _Job:
    with db.transaction() as s:
        row = s.execute(
            sa.select(Submission.kind, Submission.file_sha256, Submission.filename,
                      Task.name, Task.spec_version, Task.spec)
            .join(Task, Task.id == Submission.task_id)
            .where(Submission.id == submission_id)
        ).one()
    return _Job(submission_id, SubmissionKind(row[0]), row[1], row[2], row[3], row[4], row[5])


def _score(job: _Job, settings: Settings) -> _Outcome:
    from scoring.evaluate import evaluate

    task = task_spec(job.task_name, job.spec_version, job.spec)
    split_dir = task.resolve_split_dir(settings.effective_data_root)
    split = load_split_cached(split_dir, task)
    path = LocalStorage(settings.effective_storage_dir).path(job.file_sha256)
    if not path.exists():
        raise FileNotFoundError(f"stored upload {job.file_sha256} is missing")
    if job.kind == SubmissionKind.MODEL:
        predictions, stats = _run_model(path, task, split_dir, settings)
    else:
        from scoring.parsers import parse_predictions

        predictions, stats = parse_predictions(path, task, split, filename=job.filename), None
    report = jsonable(evaluate(task, split, predictions))
    return _Outcome(report, jsonable(stats) if stats is not None else None)


def _run_model(path: Path, task, split_dir: Path, settings: Settings):
    from scoring.splits import load_inputs
    from worker import model_eval

    inputs = load_inputs(split_dir)
    if inputs is None:
        raise StudentFacingFailure("this task has no stored inputs to run a model on; "
                                   "ask the course staff", "no_inputs")
    _configure_sandbox(settings.sandbox_dir, settings.sandbox_mode)
    limits = model_eval.SandboxLimits(wall_time_s=task.model_time_limit_s,  # the task's own limit
                                      memory_bytes=settings.model_memory_limit_mb * 1024 * 1024)
    try:
        run = model_eval.evaluate_model_file(path, task, inputs, device=_model_device(settings), limits=limits)
    except model_eval.ModelLimitExceeded as exc:
        raise StudentFacingFailure(f"model stopped: it {exc} ({COUNTED_NOTICE})", "resource_limit") from None
    except model_eval.ModelRefused as exc:  # before any sandbox started: free
        raise StudentFacingFailure(f"model refused: {exc}", "model_refused") from None
    except model_eval.ModelRejected as exc:
        raise StudentFacingFailure(f"model rejected: {exc} ({COUNTED_NOTICE})", "model_rejected") from None
    return run.predictions, dict(run.stats or {})


@lru_cache(maxsize=None)
def _configure_sandbox(base_dir: Path | None, mode: str) -> None:
    """Apply the sandbox settings once per worker process (the pool then lives as long as it)."""
    from worker.sandbox.pool import configure

    configure(base_dir=base_dir, skip_bwrap=(mode == "fallback"))


@lru_cache(maxsize=1)
def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _model_device(settings: Settings) -> str:
    if settings.model_device != "auto":
        return settings.model_device
    return "cuda" if _cuda_available() else "cpu"


# --- finish ------------------------------------------------------------------------------

def _cleared_scores() -> dict:
    return dict(report=None, public_primary=None, private_primary=None, overall_primary=None,
                points=None, model_stats=None, scored_at=None, scored_spec_version=None)


def _fenced(submission_id: int, claim_id: str):
    return sa.update(Submission).where(
        Submission.id == submission_id, Submission.claim_id == claim_id,
        Submission.status == SubmissionStatus.RUNNING,
    ).execution_options(synchronize_session=False)


def _finish_scored(db: Database, submission_id: int, claim_id: str, job: _Job, outcome: _Outcome) -> str:
    report = outcome.report
    parts = report.get("parts") or {}
    points = report.get("points") or None
    now = utcnow()
    with db.transaction() as s:
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.SCORED, claim_id=None, error=None, error_code=None,
            report=report, model_stats=outcome.model_stats,
            public_primary=_primary(parts.get("public")),
            private_primary=_primary(parts.get("private")),
            overall_primary=_finite(report.get("primary")),
            points=_finite(points.get("earned")) if isinstance(points, dict) else None,
            scored_spec_version=job.spec_version, scored_at=now, finished_at=now, updated_at=now,
        ))
    return _outcome_status(res.rowcount, submission_id, SubmissionStatus.SCORED)


def _finish_failed(db: Database, submission_id: int, claim_id: str, message: str, code: str) -> str:
    now = utcnow()
    with db.transaction() as s:
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.FAILED, claim_id=None, error=message[:4000], error_code=code,
            finished_at=now, updated_at=now, **_cleared_scores(),
        ))
    return _outcome_status(res.rowcount, submission_id, SubmissionStatus.FAILED)


def _release_or_fail(db: Database, submission_id: int, claim_id: str, settings: Settings,
                     relay: OutboxRelay | None) -> str:
    now = utcnow()
    relay = relay or default_relay(settings)
    with db.transaction() as s:
        attempts, kind = s.execute(
            sa.select(Submission.attempts, Submission.kind).where(Submission.id == submission_id)).one()
        if attempts >= settings.max_attempts:
            res = s.execute(_fenced(submission_id, claim_id).values(**attempts_exhausted(attempts, now)))
            return _outcome_status(res.rowcount, submission_id, SubmissionStatus.FAILED)
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.QUEUED, claim_id=None, updated_at=now))
        if res.rowcount == 1:
            relay.enqueue(s, submission_id, QUEUE_FOR_KIND[SubmissionKind(kind)])
    return _outcome_status(res.rowcount, submission_id, SubmissionStatus.QUEUED)


def _outcome_status(rowcount: int, submission_id: int, status: SubmissionStatus) -> str:
    if rowcount != 1:
        log.info("submission %s was re-queued or rescored meanwhile; result of this run dropped", submission_id)
        return "superseded"
    return status.value


_relays: dict[tuple, OutboxRelay] = {}
_relays_lock = threading.Lock()


def default_relay(settings: Settings) -> OutboxRelay:
    """The process's relay for retries and sweeps (Celery when a broker is configured)."""
    key = (settings.effective_database_url, settings.redis_url, settings.queue_prefix)
    with _relays_lock:
        relay = _relays.get(key)
        if relay is None:
            relay = _relays[key] = make_relay(settings, get_database(key[0]))
        return relay


# --- report helpers ----------------------------------------------------------------------

def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _primary(part: dict | None) -> float | None:
    return _finite(part.get("primary")) if isinstance(part, dict) else None


def jsonable(obj):
    """Plain JSON types only: numpy scalars/arrays converted, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return jsonable(obj.tolist())
    return str(obj)
