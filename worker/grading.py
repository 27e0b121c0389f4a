"""`grade_submission(id, settings, relay)`: the one grading function. The Celery task and the
in-process worker both call it, each with its own relay for retries.

It claims the row, scores (parse the stored file, or run the model in the sandbox, then
evaluate on the split) and finishes, through the transitions of `grader_api.lifecycle`.
Failures a student can act on (format errors, model rejections) fail at once with the
message; anything else is retried (re-queued through the outbox) until the attempts run out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded  # raised in a Celery task past its soft time limit

from grader_api.config import Settings
from grader_api.db import Database, get_database
from grader_api.lifecycle import transitions
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.split_cache import load_split_cached, task_spec
from grader_api.lifecycle.transitions import COUNTED_NOTICE, Outcome
from grader_api.models import Submission, SubmissionKind, Task
from grader_api.storage import LocalStorage
from scoring.errors import PredictionFormatError
from scoring.types import TaskSpec

log = logging.getLogger(__name__)


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
    spec: dict[str, Any]


@dataclass
class _Scored:
    report: dict[str, Any]
    model_stats: dict[str, Any] | None


# --- entry point -------------------------------------------------------------------------

def grade_submission(submission_id: int, *, settings: Settings, relay: OutboxRelay) -> str:
    """Grade one submission. Returns the outcome's value: scored, failed, queued (released for
    another attempt), superseded, or skipped when there was nothing to claim."""
    db = get_database(settings.effective_database_url)
    claim_id = transitions.claim(db, submission_id, max_attempts=settings.max_attempts,
                                 stale_after_s=settings.stuck_running_after_s)
    if claim_id is None:
        return Outcome.SKIPPED.value
    return _grade_claimed(db, submission_id, claim_id, settings, relay).value


def _grade_claimed(db: Database, submission_id: int, claim_id: str, settings: Settings,
                   relay: OutboxRelay) -> Outcome:
    try:
        job = _load_job(db, submission_id)
        outcome = _score(job, settings)
    except PredictionFormatError as exc:
        return transitions.finish_failed(db, submission_id, claim_id, str(exc), exc.code)
    except StudentFacingFailure as exc:
        return transitions.finish_failed(db, submission_id, claim_id, str(exc), exc.code)
    except SoftTimeLimitExceeded:
        # The same file would overrun again: retrying only burns the worker for the hard limit
        # times the attempts. Fail now, saying which limit.
        return transitions.finish_failed(db, submission_id, claim_id,
                                         f"grading stopped: it took longer than the time limit of "
                                         f"{settings.task_time_limit_s} s ({COUNTED_NOTICE})", "time_limit")
    except Exception:
        log.exception("grading submission %s failed unexpectedly", submission_id)
        return transitions.release_or_fail(db, relay, submission_id, claim_id, max_attempts=settings.max_attempts)
    return transitions.finish_scored(db, submission_id, claim_id, report=outcome.report,
                                     model_stats=outcome.model_stats, spec_version=job.spec_version)


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


def _score(job: _Job, settings: Settings) -> _Scored:
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
    return _Scored(report, jsonable(stats) if stats is not None else None)


def _run_model(path: Path, task: TaskSpec, split_dir: Path, settings: Settings) -> tuple[Any, dict[str, Any]]:
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


# --- report helpers ----------------------------------------------------------------------

def jsonable(obj: Any) -> Any:
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
