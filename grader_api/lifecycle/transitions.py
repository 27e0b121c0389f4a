"""The state transitions of a submission, each one conditional UPDATE in one transaction.

  claim            queued → running (attempts + 1, a fresh claim id), only while attempts < max;
                   a running row is re-claimable only once it is stale. A duplicate delivery finds
                   nothing to claim. Claimable but out of attempts → failed (attempts_exhausted).
  finish_scored    running → scored: scores and report land in one statement, fenced by the claim
                   id, so a rescore replaces old scores atomically and a superseded run writes nothing.
  finish_failed    running → failed with the message and code, scores cleared.
  release_or_fail  running → queued again (and a new outbox message), or failed once out of attempts.
  requeue_or_fail  the sweeper's: a row stuck in queued or running → queued, or failed once out of
                   attempts.

The attempts-exhausted state is written by `attempts_exhausted()` alone, whichever of the three
paths ends there.
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.db import Database
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.queues import queue_for
from grader_api.models import Submission, SubmissionKind, SubmissionStatus, utcnow

log = logging.getLogger(__name__)

# Failures that still use up a submission: a model that ran (whatever ended it: a limit, NaN
# output, a crash) and any run stopped by the grading time limit have held a grader, so letting
# them go free would let one student keep the graders busy without end (a model can compute
# until just under its limit, then fail on purpose). Other failures (a server problem such as
# attempts_exhausted, a file refused before it ran) are free.
COUNTED_FAILURE_CODES = ("resource_limit", "time_limit", "model_rejected")
COUNTED_NOTICE = "this run counts against the daily submission limit: it held a grader"


class Outcome(str, enum.Enum):
    """What one grading run ended in."""

    SCORED = "scored"
    FAILED = "failed"
    QUEUED = "queued"          # released for another attempt
    SUPERSEDED = "superseded"  # re-queued or rescored meanwhile: this run's result was dropped
    SKIPPED = "skipped"        # nothing to claim (finished, running elsewhere, unknown id)


# --- claim -------------------------------------------------------------------------------

def claim(db: Database, submission_id: int, *, max_attempts: int, stale_after_s: float) -> str | None:
    """The new claim id, or None when there is nothing to claim."""
    now = utcnow()
    claimable = sa.or_(
        Submission.status == SubmissionStatus.QUEUED,
        sa.and_(Submission.status == SubmissionStatus.RUNNING,
                Submission.started_at < now - timedelta(seconds=stale_after_s)),
    )
    claim_id = str(uuid.uuid4())
    with db.transaction() as s:
        res = s.execute(
            sa.update(Submission)
            .where(Submission.id == submission_id, claimable, Submission.attempts < max_attempts)
            .values(status=SubmissionStatus.RUNNING, attempts=Submission.attempts + 1, claim_id=claim_id,
                    started_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(res) == 1:
            return claim_id
        s.execute(
            sa.update(Submission)
            .where(Submission.id == submission_id, claimable, Submission.attempts >= max_attempts)
            .values(**attempts_exhausted(max_attempts, now))
            .execution_options(synchronize_session=False)
        )
    return None


def attempts_exhausted(attempts: int, now: datetime) -> dict[str, Any]:
    """The one failed state a submission ends in when its attempts ran out: the columns an UPDATE sets."""
    return dict(status=SubmissionStatus.FAILED, claim_id=None, finished_at=now, updated_at=now,
                error=(f"grading failed after {attempts} attempts (a server-side problem, not your "
                       "file); the course staff can see the logs — you may resubmit the same file"),
                error_code="attempts_exhausted", **cleared_scores())


def cleared_scores() -> dict[str, Any]:
    """Every column a scored run sets, emptied (a failed row shows no stale scores)."""
    return dict(report=None, public_primary=None, private_primary=None, overall_primary=None,
                points=None, model_stats=None, scored_at=None, scored_spec_version=None)


# --- finish ------------------------------------------------------------------------------

def finish_scored(db: Database, submission_id: int, claim_id: str, *, report: Mapping[str, Any],
                  model_stats: Mapping[str, Any] | None, spec_version: int) -> Outcome:
    parts = report.get("parts") or {}
    points = report.get("points") or None
    now = utcnow()
    with db.transaction() as s:
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.SCORED, claim_id=None, error=None, error_code=None,
            report=dict(report), model_stats=dict(model_stats) if model_stats is not None else None,
            public_primary=_primary(parts.get("public")),
            private_primary=_primary(parts.get("private")),
            overall_primary=_finite(report.get("primary")),
            points=_finite(points.get("earned")) if isinstance(points, dict) else None,
            scored_spec_version=spec_version, scored_at=now, finished_at=now, updated_at=now,
        ))
    return _result(res, submission_id, Outcome.SCORED)


def finish_failed(db: Database, submission_id: int, claim_id: str, message: str, code: str) -> Outcome:
    now = utcnow()
    with db.transaction() as s:
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.FAILED, claim_id=None, error=message[:4000], error_code=code,
            finished_at=now, updated_at=now, **cleared_scores(),
        ))
    return _result(res, submission_id, Outcome.FAILED)


def release_or_fail(db: Database, relay: OutboxRelay, submission_id: int, claim_id: str, *,
                    max_attempts: int) -> Outcome:
    """After an unexpected error: queue another attempt through the outbox, or fail for good."""
    now = utcnow()
    with db.transaction() as s:
        attempts, kind = s.execute(
            sa.select(Submission.attempts, Submission.kind).where(Submission.id == submission_id)).one()
        if attempts >= max_attempts:
            res = s.execute(_fenced(submission_id, claim_id).values(**attempts_exhausted(attempts, now)))
            return _result(res, submission_id, Outcome.FAILED)
        res = s.execute(_fenced(submission_id, claim_id).values(
            status=SubmissionStatus.QUEUED, claim_id=None, updated_at=now))
        if _rowcount(res) == 1:
            relay.enqueue(s, submission_id, queue_for(kind))
    return _result(res, submission_id, Outcome.QUEUED)


def requeue_or_fail(session: Session, relay: OutboxRelay, *, submission_id: int, attempts: int,
                    kind: SubmissionKind | str, guard: tuple[Any, ...], max_attempts: int) -> Outcome:
    """The sweeper's transition for a row stuck in queued or running, in the caller's transaction.
    `guard` holds the conditions the row was selected under (its status and claim or timestamp)."""
    now = utcnow()
    if attempts >= max_attempts:
        res = session.execute(sa.update(Submission).where(Submission.id == submission_id, *guard)
                              .values(**attempts_exhausted(attempts, now))
                              .execution_options(synchronize_session=False))
        return Outcome.FAILED if _rowcount(res) == 1 else Outcome.SKIPPED
    res = session.execute(sa.update(Submission).where(Submission.id == submission_id, *guard).values(
        status=SubmissionStatus.QUEUED, claim_id=None, updated_at=now,
    ).execution_options(synchronize_session=False))
    if _rowcount(res) != 1:
        return Outcome.SKIPPED
    relay.enqueue(session, submission_id, queue_for(kind))
    return Outcome.QUEUED


# --- helpers -----------------------------------------------------------------------------

def _fenced(submission_id: int, claim_id: str) -> sa.Update:
    return sa.update(Submission).where(
        Submission.id == submission_id, Submission.claim_id == claim_id,
        Submission.status == SubmissionStatus.RUNNING,
    ).execution_options(synchronize_session=False)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _result(result: Any, submission_id: int, reached: Outcome) -> Outcome:
    if _rowcount(result) != 1:
        log.info("submission %s was re-queued or rescored meanwhile; result of this run dropped", submission_id)
        return Outcome.SUPERSEDED
    return reached


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _primary(part: Any) -> float | None:
    return _finite(part.get("primary")) if isinstance(part, dict) else None
