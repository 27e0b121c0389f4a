"""Submissions: accepting an upload, access checks, views, history and diffs, rescoring."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.db import after_rollback, lock_row
from grader_api.dispatch import QUEUE_FOR_KIND, OutboxRelay
from grader_api.errors import ApiError, not_found
from grader_api.models import Role, Submission, SubmissionKind, SubmissionStatus, Task, User, utcnow
from grader_api.services import tasks as task_service
from grader_api.services.split_cache import load_split_cached
from grader_api.services.upload_kind import detect_upload_kind
from grader_api.storage import LocalStorage
from scoring.errors import PredictionFormatError, ScoringError

# Parser error kinds that mean "this is not a file type we take" rather than "a bad file".
_UNSUPPORTED = {"not_utf8", "binary_content", "unsupported_format"}
_BAD_REQUEST = {"empty_file"}
MAX_NOTE_CHARS = 2000


def http_status_for(code: str) -> int:
    if code in _UNSUPPORTED:
        return 415
    if code in _BAD_REQUEST:
        return 400
    return 422


def _display_name(filename: str | None) -> str | None:
    """The client's file name, for display only: last path component, printable, bounded."""
    if not filename:
        return None
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(c for c in name if c.isprintable())[:200]
    return name or None


# --- accepting an upload -----------------------------------------------------------------

def precheck(session: Session, task: Task, user: User, now: datetime) -> None:
    """Cheap checks before reading the body: a closed task or a used-up day is answered at once."""
    task_service.check_window(task, now)
    task_service.check_daily_limit(session, task, user, now)


@dataclass(frozen=True)
class InspectedUpload:
    """What validation learned about an upload; nothing has been written yet."""

    kind: SubmissionKind
    display_name: str | None
    note: str | None


def inspect_upload(*, data_root: Path, task: Task, temp_path: Path, filename: str | None,
                   note: str | None) -> InspectedUpload:
    """Validate the uploaded temp file (no database): the note, the kind of file, and for
    predictions the scoring core's parser. Raises ApiError with the parser's message."""
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise ApiError(422, f"note: at most {MAX_NOTE_CHARS} characters, found {len(note)}", "invalid_request")
    spec = task_service.spec_of(task)
    display = _display_name(filename)
    kind = detect_upload_kind(temp_path)
    if kind.value not in spec.accepts:
        wanted = " or ".join(f"a {a} file" for a in spec.accepts)
        raise ApiError(415, f"task '{task.name}' accepts {wanted}; this upload looks like a {kind.value} file",
                       "unsupported_media_type")
    if kind == SubmissionKind.PREDICTIONS:
        _validate_predictions(temp_path, spec, data_root, display)
    return InspectedUpload(kind, display, note or None)


def record_upload(session: Session, *, relay: OutboxRelay, storage: LocalStorage, task: Task, user: User,
                  inspected: InspectedUpload, temp_path: Path, sha256: str, size: int) -> Submission:
    """Store a validated upload and write its row and outbox entry (the caller commits).

    Kept short on purpose: it holds a row lock on the user until the commit. On any error the
    temp file is the caller's to delete and nothing else exists; after success the file is in
    storage and is removed again if the transaction rolls back.
    """
    now = utcnow()
    # Re-check under a lock on the user: two parallel uploads cannot both take the last
    # submission of the day.
    lock_row(session, User.__table__.c.id, user.id)
    window = task_service.check_window(task, now)
    task_service.check_daily_limit(session, task, user, now)

    if storage.put(temp_path, sha256):
        after_rollback(session, lambda: _delete_if_unreferenced(storage, session, sha256))
    sub = Submission(
        task_id=task.id, user_id=user.id, kind=inspected.kind, status=SubmissionStatus.QUEUED,
        file_sha256=sha256, file_size=size, filename=inspected.display_name, note=inspected.note,
        late=window.late, late_days_used=window.late_days_used, created_at=now, updated_at=now,
    )
    session.add(sub)
    session.flush()
    relay.enqueue(session, sub.id, QUEUE_FOR_KIND[inspected.kind])
    return sub


def accept_upload(
    session: Session, *, relay: OutboxRelay, storage: LocalStorage, data_root: Path, task: Task, user: User,
    temp_path: Path, sha256: str, size: int, filename: str | None, note: str | None,
) -> Submission:
    """Validate, then record, in one call (the demo seeding and other in-process callers)."""
    inspected = inspect_upload(data_root=data_root, task=task, temp_path=temp_path, filename=filename, note=note)
    return record_upload(session, relay=relay, storage=storage, task=task, user=user, inspected=inspected,
                         temp_path=temp_path, sha256=sha256, size=size)


def _validate_predictions(path: Path, spec, data_root: Path, display: str | None) -> None:
    from scoring.parsers import parse_predictions

    try:
        split = load_split_cached(spec.resolve_split_dir(data_root), spec)
    except ScoringError:
        raise ApiError(503, "this task's held-out split is not available on the server right now; "
                            "tell the course staff", "split_unavailable") from None
    try:
        parse_predictions(path, spec, split, filename=display)
    except PredictionFormatError as exc:
        raise ApiError(http_status_for(str(exc.code)), str(exc), str(exc.code),
                       line=exc.line, column=exc.column) from None


def _delete_if_unreferenced(storage: LocalStorage, session: Session, sha256: str) -> None:
    still_used = session.scalar(sa.select(Submission.id).where(Submission.file_sha256 == sha256).limit(1))
    if still_used is None:
        storage.delete(sha256)


# --- access ------------------------------------------------------------------------------

def get_visible(session: Session, submission_id: int, user: User) -> Submission:
    """The submission if `user` may see it; 404 otherwise (existence is not revealed)."""
    sub = session.get(Submission, submission_id)
    if sub is None or (user.role != Role.INSTRUCTOR and sub.user_id != user.id):
        raise not_found(f"submission {submission_id}")
    return sub


def can_see_private(task: Task, user: User, now: datetime | None = None) -> bool:
    return user.role == Role.INSTRUCTOR or task.private_revealed(now)


# --- views -------------------------------------------------------------------------------

_PART_KEYS = ("n", "primary", "metrics", "per_class", "undefined", "confusion", "most_confused")


def _part(report: dict | None, name: str) -> dict | None:
    if not report:
        return None
    part = (report.get("parts") or {}).get(name)
    return {k: part.get(k) for k in _PART_KEYS if k in part} if part else None


def _overall(report: dict | None) -> dict | None:
    if not report:
        return None
    return {k: report.get(k) for k in (*_PART_KEYS, "points") if k in report}


def submission_view(sub: Submission, viewer: User, now: datetime | None = None) -> dict:
    task = sub.task
    private_ok = can_see_private(task, viewer, now)
    scored = sub.status == SubmissionStatus.SCORED
    return {
        "id": sub.id, "task": task.name, "user": sub.user.name, "kind": sub.kind.value,
        "status": sub.status.value, "error": sub.error, "error_code": sub.error_code,
        "note": sub.note, "filename": sub.filename, "size": sub.file_size,
        "late": sub.late, "late_days_used": sub.late_days_used, "selected": sub.selected,
        "attempts": sub.attempts,
        "created_at": sub.created_at, "started_at": sub.started_at, "finished_at": sub.finished_at,
        "scored_at": sub.scored_at,
        "metric": task.metric, "higher_is_better": task.higher_is_better,
        "public_score": sub.public_primary,
        "private_score": sub.private_primary if private_ok else None,
        "overall_score": sub.overall_primary if private_ok else None,
        "points": sub.points if private_ok else None,
        "public": _part(sub.report, "public") if scored else None,
        "private": _part(sub.report, "private") if scored and private_ok else None,
        "overall": _overall(sub.report) if scored and private_ok else None,
        "private_revealed": private_ok,
        "model_stats": sub.model_stats,
    }


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def history(session: Session, task: Task, user: User, now: datetime | None = None) -> list[dict]:
    """The caller's own submissions to `task`, oldest first, each with the change in public
    score from the previous scored one (the ablation table)."""
    private_ok = task.private_revealed(now)  # own history: the private part after the reveal only
    subs = session.scalars(
        sa.select(Submission).where(Submission.task_id == task.id, Submission.user_id == user.id)
        .order_by(Submission.created_at, Submission.id)
    ).all()
    rows, previous = [], None
    for sub in subs:
        row = {
            "id": sub.id, "created_at": sub.created_at, "status": sub.status.value, "note": sub.note,
            "filename": sub.filename, "error": sub.error, "late": sub.late, "selected": sub.selected,
            "public_score": sub.public_primary,
            "change": _delta(previous, sub.public_primary),
            "private_score": sub.private_primary if private_ok else None,
        }
        if sub.public_primary is not None:
            previous = sub.public_primary
        rows.append(row)
    return rows


def diff(session: Session, user: User, a_id: int, b_id: int, part: str = "public",
         now: datetime | None = None) -> dict:
    """Per-class differences (b − a) between two submissions the caller may see."""
    a, b = get_visible(session, a_id, user), get_visible(session, b_id, user)
    if a.task_id != b.task_id:
        raise ApiError(400, f"submissions {a_id} and {b_id} belong to different tasks", "different_tasks")
    for s in (a, b):
        if s.status != SubmissionStatus.SCORED:
            raise ApiError(409, f"submission {s.id} is {s.status.value}, not scored", "not_scored")
    if part not in ("public", "private", "overall"):
        raise ApiError(422, "part: expected public, private or overall", "invalid_request")
    if part != "public" and not can_see_private(a.task, user, now):
        raise ApiError(403, "private scores are shown after the task closes", "private_hidden")
    pa, pb = ((_overall(a.report), _overall(b.report)) if part == "overall"
              else (_part(a.report, part), _part(b.report, part)))
    pa, pb = pa or {}, pb or {}

    def pairs(x: dict, y: dict) -> dict:
        return {k: {"a": x.get(k), "b": y.get(k), "delta": _delta(x.get(k), y.get(k))}
                for k in dict.fromkeys([*x, *y]) if _is_num_or_none(x.get(k)) and _is_num_or_none(y.get(k))}

    classes = list(a.task.spec.get("classes", []))
    ca, cb = pa.get("per_class") or {}, pb.get("per_class") or {}
    return {
        "task": a.task.name, "part": part, "a": a.id, "b": b.id,
        "a_note": a.note, "b_note": b.note,
        "primary": {"a": pa.get("primary"), "b": pb.get("primary"),
                    "delta": _delta(pa.get("primary"), pb.get("primary"))},
        "metrics": pairs(pa.get("metrics") or {}, pb.get("metrics") or {}),
        "per_class": {c: pairs(ca.get(c) or {}, cb.get(c) or {}) for c in classes},
    }


def _is_num_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def set_selected(session: Session, sub: Submission, user: User, selected: bool) -> Submission:
    if sub.user_id != user.id:
        raise not_found(f"submission {sub.id}")  # instructors do not choose for students
    if selected and sub.status == SubmissionStatus.FAILED:
        raise ApiError(409, f"submission {sub.id} failed; only graded submissions can be final", "not_scored")
    if selected and not sub.selected:
        count = session.scalar(sa.select(sa.func.count(Submission.id)).where(
            Submission.task_id == sub.task_id, Submission.user_id == user.id, Submission.selected.is_(True))) or 0
        if count >= sub.task.final_count:
            raise ApiError(409, f"at most {sub.task.final_count} final submission(s) per task; "
                                "unselect one first", "too_many_selected")
    sub.selected = selected
    session.flush()
    return sub


# --- instructor ----------------------------------------------------------------------------

def list_for_task(session: Session, task: Task, *, user_name: str | None = None, status: str | None = None,
                  late: bool | None = None, limit: int = 500, offset: int = 0) -> list[dict]:
    q = (sa.select(Submission, User.name).join(User, User.id == Submission.user_id)
         .where(Submission.task_id == task.id))
    if user_name:
        q = q.where(User.name == user_name)
    if status:
        try:
            q = q.where(Submission.status == SubmissionStatus(status))
        except ValueError:
            raise ApiError(422, f"status: expected one of {', '.join(s.value for s in SubmissionStatus)}",
                           "invalid_request") from None
    if late is not None:
        q = q.where(Submission.late.is_(late))
    q = q.order_by(Submission.created_at.desc(), Submission.id.desc()).limit(limit).offset(offset)
    return [{
        "id": s.id, "user": name, "status": s.status.value, "kind": s.kind.value, "note": s.note,
        "created_at": s.created_at, "finished_at": s.finished_at, "attempts": s.attempts,
        "error": s.error, "late": s.late, "late_days_used": s.late_days_used, "selected": s.selected,
        "public_score": s.public_primary, "private_score": s.private_primary,
        "overall_score": s.overall_primary, "points": s.points,
    } for s, name in session.execute(q).all()]


def rescore_task(session: Session, relay: OutboxRelay, task: Task) -> int:
    """Re-queue every submission of the task. Old scores stay visible until the new ones
    replace them in one UPDATE (see worker.grading); a run in flight is fenced off."""
    now = utcnow()
    rows = session.execute(
        sa.select(Submission.id, Submission.kind).where(Submission.task_id == task.id).order_by(Submission.id)
    ).all()
    if not rows:
        return 0
    session.execute(
        sa.update(Submission).where(Submission.task_id == task.id)
        .values(status=SubmissionStatus.QUEUED, attempts=0, claim_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for sid, kind in rows:
        relay.enqueue(session, sid, QUEUE_FOR_KIND[SubmissionKind(kind)])
    return len(rows)
