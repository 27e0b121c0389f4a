"""Submissions: accepting an upload, access checks, views, history and diffs, rescoring."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from grader_api.db import lock_row
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.lifecycle.queues import queue_for
from grader_api.lifecycle.split_cache import load_split_cached
from grader_api.models import Enrollment, Submission, SubmissionKind, SubmissionStatus, Task, User, utcnow
from grader_api.schemas import HistoryRow, InstructorSubmissionRow, SubmissionOut
from grader_api.services import tasks as task_service
from grader_api.services import teams as team_service
from grader_api.services.courses import Member, member_of
from grader_api.services.errors import (
    DifferentTasks,
    InvalidInput,
    InvalidPredictions,
    NotFound,
    NotScored,
    PrivateHidden,
    SelectionClosed,
    SplitUnavailable,
    TokenRevoked,
    TooManySelected,
    UnsupportedUpload,
)
from grader_api.services.upload_kind import check_model_upload, detect_upload_kind
from grader_api.storage import LocalStorage
from grader_api.tokens import authenticate
from scoring.errors import PredictionFormatError, ScoringError

MAX_NOTE_CHARS = 2000
# Control characters (C0, DEL, C1) other than tab, newline and carriage return: PostgreSQL
# refuses NUL in text, and the rest only ever serve to disturb a terminal or a spreadsheet.
_NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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


def check_note(note: str | None) -> None:
    """Refuse a note that is too long or holds control characters (newlines and tabs are fine).

    Cheap, so it runs before the file is validated."""
    if note is None:
        return
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note: at most {MAX_NOTE_CHARS} characters, found {len(note)}")
    bad = _NOTE_CONTROL.search(note)
    if bad is not None:
        raise InvalidInput(f"note: control character U+{ord(bad.group()):04X} at character {bad.start() + 1} "
                           "is not allowed; expected plain text (newlines and tabs are fine)")


@dataclass(frozen=True)
class InspectedUpload:
    """What validation learned about an upload; nothing has been written yet."""

    kind: SubmissionKind
    display_name: str | None
    note: str | None


def inspect_upload(*, data_root: Path, task: Task, temp_path: Path, filename: str | None,
                   note: str | None, cpu_budget_s: float | None = None) -> InspectedUpload:
    """Validate the uploaded temp file (no database): the note, the kind of file, and for
    predictions the scoring core's parser, within `cpu_budget_s` of CPU time. Raises a
    DomainError (InvalidPredictions with the parser's message and code for a bad file)."""
    check_note(note)
    spec = task_service.spec_of(task)
    display = _display_name(filename)
    kind = detect_upload_kind(temp_path)
    if kind.value not in spec.accepts:
        wanted = " or ".join(f"a {a} file" for a in spec.accepts)
        raise UnsupportedUpload(f"task '{task.name}' accepts {wanted}; this upload looks like a {kind.value} file")
    if kind == SubmissionKind.PREDICTIONS:
        _validate_predictions(temp_path, spec, data_root, display, cpu_budget_s)
    else:
        check_model_upload(temp_path, spec)
    return InspectedUpload(kind, display, note or None)


def record_upload(session: Session, *, relay: OutboxRelay, storage: LocalStorage, task: Task, user: User,
                  inspected: InspectedUpload, temp_path: Path, sha256: str, size: int,
                  arrived_at: datetime | None = None, token: str | None = None) -> Submission:
    """Store a validated upload and write its row and outbox entry (the caller commits).

    Kept short on purpose: it holds a row lock on the user until the commit. `arrived_at` is
    when the request came in: the window and the day's count are judged then, not after the
    wait for a validation slot. `token`, the bearer token the request came with, is checked
    again under the lock, so one revoked meanwhile records nothing. On any error the temp file
    is the caller's to delete and nothing else exists.
    """
    now = utcnow()
    arrived_at = arrived_at or now
    # Re-check under a lock on the user, then on their team: two parallel uploads (also by two
    # members of one team) cannot both take the last submission of the day.
    lock_row(session, sa.inspect(User).columns.id, user.id)
    if token is not None:
        _require_live_token(session, user, token)
    team_service.lock_team_of(session, task, user.id)
    window = task_service.check_window(task, arrived_at)
    task_service.check_daily_limit(session, task, user, arrived_at)

    # Never deleted here, even if this transaction rolls back: another upload of the same bytes
    # may refer to the object from a transaction not committed yet, which no query here can see.
    # The storage GC removes objects no row refers to once they have been left alone long enough.
    storage.put(temp_path, sha256)
    sub = Submission(
        task_id=task.id, user_id=user.id, kind=inspected.kind, status=SubmissionStatus.QUEUED,
        file_sha256=sha256, file_size=size, filename=inspected.display_name, note=inspected.note,
        late=window.late, late_days_used=window.late_days_used, created_at=arrived_at, updated_at=now,
    )
    session.add(sub)
    session.flush()
    relay.enqueue(session, sub.id, queue_for(inspected.kind))
    return sub


def accept_upload(
    session: Session, *, relay: OutboxRelay, storage: LocalStorage, data_root: Path, task: Task, user: User,
    temp_path: Path, sha256: str, size: int, filename: str | None, note: str | None,
) -> Submission:
    """Validate, then record, in one call (the demo seeding and other in-process callers)."""
    inspected = inspect_upload(data_root=data_root, task=task, temp_path=temp_path, filename=filename, note=note)
    return record_upload(session, relay=relay, storage=storage, task=task, user=user, inspected=inspected,
                         temp_path=temp_path, sha256=sha256, size=size)


def _require_live_token(session: Session, user: User, token: str) -> None:
    if getattr(authenticate(session, token), "id", None) != user.id:
        raise TokenRevoked("invalid or revoked token: it was revoked while this upload was in progress; "
                           "nothing was stored")


def _validate_predictions(path: Path, spec, data_root: Path, display: str | None,
                          cpu_budget_s: float | None = None) -> None:
    from scoring.parsers import parse_predictions

    try:
        split = load_split_cached(spec.resolve_split_dir(data_root), spec)
    except ScoringError:
        raise SplitUnavailable("this task's held-out split is not available on the server right now; "
                               "tell the course staff") from None
    try:
        parse_predictions(path, spec, split, filename=display, cpu_budget_s=cpu_budget_s)
    except PredictionFormatError as exc:
        raise InvalidPredictions(str(exc), str(exc.code), line=exc.line, column=exc.column) from None


# --- access ------------------------------------------------------------------------------

def get_visible(session: Session, submission_id: int, user: User | Member) -> tuple[Submission, Member]:
    """The submission if `user` may see it (their own or a teammate's, or any in a course they are
    staff of), with the user's membership of its course; not found otherwise (existence is not
    revealed). Teams are as they are now: a member moved away takes their submissions along."""
    sub = session.get(Submission, submission_id)
    member = member_of(session, user, sub.task.course_id) if sub is not None else None
    if sub is None or member is None or not (
            member.is_staff or sub.user_id == user.id
            or sub.user_id in team_service.teammate_ids(session, sub.task, user.id)):
        raise NotFound(f"submission {submission_id}")
    return sub, member


def can_see_private(task: Task, viewer: Member, now: datetime | None = None) -> bool:
    return viewer.is_staff or task.private_revealed(now)


# --- views -------------------------------------------------------------------------------

_PART_KEYS = ("n", "primary", "metrics", "per_class", "undefined", "confusion", "most_confused", "withheld")


def _part(report: dict | None, name: str) -> dict | None:
    if not report:
        return None
    part = (report.get("parts") or {}).get(name)
    return {k: part.get(k) for k in _PART_KEYS if k in part} if part else None


def _public_part(report: dict | None, task: Task) -> dict | None:
    """The public part without its per-class breakdown unless the task shows it; reports scored
    before the breakdown was withheld still carry it."""
    from scoring.evaluate import withhold_detail

    part = _part(report, "public")
    if part is None or (task.spec or {}).get("public_detail"):
        return part
    return withhold_detail(part)


def _overall(report: dict | None) -> dict | None:
    if not report:
        return None
    return {k: report.get(k) for k in (*_PART_KEYS, "points") if k in report}


def submission_view(sub: Submission, viewer: Member, now: datetime | None = None) -> SubmissionOut:
    task = sub.task
    private_ok = can_see_private(task, viewer, now)
    scored = sub.status == SubmissionStatus.SCORED
    return SubmissionOut(
        id=sub.id, task=task.name, course=viewer.course_slug, user=_author(sub, viewer), kind=sub.kind.value,
        status=sub.status.value, error=sub.error, error_code=sub.error_code,
        note=sub.note, filename=sub.filename, size=sub.file_size,
        late=sub.late, late_days_used=sub.late_days_used, selected=sub.selected,
        attempts=sub.attempts,
        created_at=sub.created_at, started_at=sub.started_at, finished_at=sub.finished_at,
        scored_at=sub.scored_at,
        metric=task.metric, higher_is_better=task.higher_is_better,
        public_score=sub.public_primary,
        private_score=sub.private_primary if private_ok else None,
        overall_score=sub.overall_primary if private_ok else None,
        points=sub.points if private_ok else None,
        public=_public_part(sub.report, task) if scored else None,
        private=_part(sub.report, "private") if scored and private_ok else None,
        overall=_overall(sub.report) if scored and private_ok else None,
        private_revealed=private_ok,
        model_stats=sub.model_stats,
    )


def _author(sub: Submission, viewer: Member) -> str:
    """Who submitted it, as the viewer may know them: staff and the author see the login name,
    a teammate sees the author's display name only."""
    if viewer.is_staff or sub.user_id == viewer.id:
        return sub.user.name
    session = object_session(sub)
    display = session.scalar(sa.select(Enrollment.display_name).where(
        Enrollment.user_id == sub.user_id, Enrollment.course_id == sub.task.course_id)) if session else None
    return display or "a teammate"


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def history(session: Session, task: Task, user: User, now: datetime | None = None) -> list[HistoryRow]:
    """The caller's own submissions to `task` (their whole team's when they have one), oldest
    first, each with the change in public score from the previous scored one (the ablation table)."""
    private_ok = task.private_revealed(now)  # own history: the private part after the reveal only
    authors = team_service.teammate_ids(session, task, user.id)
    subs = session.scalars(
        sa.select(Submission).where(Submission.task_id == task.id, Submission.user_id.in_(authors))
        .order_by(Submission.created_at, Submission.id)
    ).all()
    rows: list[HistoryRow] = []
    previous = None
    for sub in subs:
        row = HistoryRow(
            id=sub.id, created_at=sub.created_at, status=sub.status.value, note=sub.note,
            filename=sub.filename, error=sub.error, late=sub.late, selected=sub.selected,
            public_score=sub.public_primary,
            change=_delta(previous, sub.public_primary),
            private_score=sub.private_primary if private_ok else None,
        )
        if sub.public_primary is not None:
            previous = sub.public_primary
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Change:
    """One value in two submissions, and b − a (None where either is undefined)."""

    a: float | None
    b: float | None
    delta: float | None


@dataclass(frozen=True)
class SubmissionDiff:
    task: str
    part: str
    a: int
    b: int
    a_note: str | None
    b_note: str | None
    primary: Change
    metrics: dict[str, Change]
    per_class: dict[str, dict[str, Change]]
    withheld: str | None


def _change(a: float | None, b: float | None) -> Change:
    return Change(a, b, _delta(a, b))


def diff(session: Session, user: User, a_id: int, b_id: int, part: str = "public",
         now: datetime | None = None) -> SubmissionDiff:
    """Per-class differences (b − a) between two submissions the caller may see."""
    (a, viewer), (b, _) = get_visible(session, a_id, user), get_visible(session, b_id, user)
    if a.task_id != b.task_id:
        raise DifferentTasks(f"submissions {a_id} and {b_id} belong to different tasks")
    for s in (a, b):
        if s.status != SubmissionStatus.SCORED:
            raise NotScored(f"submission {s.id} is {s.status.value}, not scored")
    if part not in ("public", "private", "overall"):
        raise InvalidInput("part: expected public, private or overall")
    if part != "public" and not can_see_private(a.task, viewer, now):
        raise PrivateHidden("private scores are shown after the task closes")
    pa, pb = ((_overall(a.report), _overall(b.report)) if part == "overall"
              else (_public_part(a.report, a.task), _public_part(b.report, b.task)) if part == "public"
              else (_part(a.report, part), _part(b.report, part)))
    pa, pb = pa or {}, pb or {}

    def pairs(x: dict, y: dict) -> dict[str, Change]:
        return {k: _change(x.get(k), y.get(k))
                for k in dict.fromkeys([*x, *y]) if _is_num_or_none(x.get(k)) and _is_num_or_none(y.get(k))}

    classes = list(a.task.spec.get("classes", []))
    ca, cb = pa.get("per_class") or {}, pb.get("per_class") or {}
    return SubmissionDiff(
        task=a.task.name, part=part, a=a.id, b=b.id, a_note=a.note, b_note=b.note,
        primary=_change(pa.get("primary"), pb.get("primary")),
        metrics=pairs(pa.get("metrics") or {}, pb.get("metrics") or {}),
        per_class={c: pairs(ca.get(c) or {}, cb.get(c) or {}) for c in classes if c in ca or c in cb},
        withheld=pa.get("withheld") or pb.get("withheld"),
    )


def _is_num_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def set_selected(session: Session, sub: Submission, user: User, selected: bool) -> Submission:
    """Mark (or unmark) one of the caller's submissions, or their team's, as final, while the
    task is open. A team makes one choice: any member may mark or unmark any member's.

    Runs under the per-user and per-team locks uploads take, so parallel calls see each other's
    marks and cannot together exceed `final_count`.
    """
    if sub.user_id not in team_service.teammate_ids(session, sub.task, user.id):
        raise NotFound(f"submission {sub.id}")  # instructors do not choose for students
    lock_row(session, sa.inspect(User).columns.id, user.id)
    team_service.lock_team_of(session, sub.task, user.id)
    session.refresh(sub)  # the row as it is now that no other call of this user can change it
    now = utcnow()
    check_selection_open(sub.task, now)
    if selected and sub.status == SubmissionStatus.FAILED:
        raise NotScored(f"submission {sub.id} failed; only graded submissions can be final")
    if selected and not sub.selected:
        check_final_count(session, sub.task, user)
        sub.selected_at = now
    sub.selected = selected
    session.flush()
    return sub


def check_selection_open(task: Task, now: datetime) -> None:
    """Final selections are fixed from the moment the task closes (and private scores show)."""
    closes, deadline = task.closes_at, task.deadline
    if closes is not None and deadline is not None and task.private_revealed(now):
        raise SelectionClosed(f"task '{task.name}' closed at {closes.isoformat()} (deadline "
                              f"{deadline.isoformat()} plus {task.late_days} late day(s)); final "
                              "selections can no longer be changed")


def check_final_count(session: Session, task: Task, user: User) -> None:
    """Refuse one more mark past `final_count`: the user's marks, or their whole team's."""
    team, holders = team_service.quota_holders(session, task, user.id)
    count = session.scalar(sa.select(sa.func.count(Submission.id)).where(
        Submission.task_id == task.id, Submission.user_id.in_(holders), Submission.selected.is_(True))) or 0
    if count >= task.final_count:
        whose = f" (team '{team.name}' shares them)" if team is not None else ""
        raise TooManySelected(f"at most {task.final_count} final submission(s) per task{whose}; unselect one first")


# --- instructor ----------------------------------------------------------------------------

def list_for_task(session: Session, task: Task, *, user_name: str | None = None, status: str | None = None,
                  late: bool | None = None, limit: int = 500, offset: int = 0) -> list[InstructorSubmissionRow]:
    q = (sa.select(Submission, User.name, Enrollment.display_name).join(User, User.id == Submission.user_id)
         .outerjoin(Enrollment, sa.and_(Enrollment.user_id == User.id, Enrollment.course_id == task.course_id))
         .where(Submission.task_id == task.id))
    if user_name:
        q = q.where(User.name == user_name)
    if status:
        try:
            q = q.where(Submission.status == SubmissionStatus(status))
        except ValueError:
            raise InvalidInput(f"status: expected one of {', '.join(s.value for s in SubmissionStatus)}") from None
    if late is not None:
        q = q.where(Submission.late.is_(late))
    q = q.order_by(Submission.created_at.desc(), Submission.id.desc()).limit(limit).offset(offset)
    return [InstructorSubmissionRow(
        id=s.id, user=name, display_name=display or "", status=s.status.value, kind=s.kind.value, note=s.note,
        created_at=s.created_at, finished_at=s.finished_at, attempts=s.attempts,
        error=s.error, late=s.late, late_days_used=s.late_days_used, selected=s.selected,
        public_score=s.public_primary, private_score=s.private_primary,
        overall_score=s.overall_primary, points=s.points,
    ) for s, name, display in session.execute(q).all()]


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
        relay.enqueue(session, sid, queue_for(kind))
    return len(rows)
