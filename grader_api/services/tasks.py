"""Tasks: creation/update from task YAML, course settings, views, submission windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from grader_api.config import Settings
from grader_api.lifecycle.transitions import COUNTED_FAILURE_CODES
from grader_api.models import Course, FinalRule, Submission, SubmissionStatus, Task, User, utcnow
from grader_api.schemas import TaskDetail, TaskSummary
from grader_api.services.courses import Member
from grader_api.services.errors import Conflict, DailyLimitReached, InvalidTask, NotFound, TaskClosed
from grader_api.services.teams import quota_holders
from scoring.errors import SplitError, TaskFileError
from scoring.types import TaskSpec

# Keys a task file may carry for the service; the scoring spec itself does not know them.
COURSE_KEYS = ("deadline", "late_days", "daily_limit", "final_rule", "final_count", "team_size")


@dataclass
class CourseOptions:
    """Course settings of a task; a field left as `UNSET` is not changed."""

    deadline: Any = ...
    late_days: Any = ...
    daily_limit: Any = ...
    final_rule: Any = ...
    final_count: Any = ...
    team_size: Any = ...

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not ...}


def _invalid(msg: str, code: str = "invalid_task", line: int | None = None) -> InvalidTask:
    return InvalidTask(msg, code, line=line)


def parse_task_yaml(text: str) -> tuple[dict, CourseOptions]:
    """YAML text → (scoring spec mapping, course options). Safe loader only."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _invalid(f"task YAML: {exc.problem or 'syntax error'}",
                       line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise _invalid(f"task YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid("task YAML: expected a mapping of task keys")
    opts = CourseOptions(**{k: data.pop(k) for k in COURSE_KEYS if k in data})
    return data, opts


def validate_spec(mapping: dict, settings: Settings, source: str = "task YAML") -> tuple[TaskSpec, dict]:
    """Check the spec and its split on this server; returns (spec, canonical dict)."""
    from scoring.tasks import parse_task, task_to_dict

    try:
        spec = parse_task(mapping, source)
    except TaskFileError as exc:
        raise _invalid(str(exc)) from None
    split_dir = resolve_split_dir(spec, settings)
    try:
        from scoring.splits import load_split

        load_split(split_dir, spec)
    except SplitError as exc:
        raise _invalid(f"split '{spec.split}': {_relative_message(exc, settings)}", "invalid_split") from None
    return spec, task_to_dict(spec)


def resolve_split_dir(spec: TaskSpec, settings: Settings) -> Path:
    """The split directory, which must lie under the data root (no `..` escapes, no /etc)."""
    root = settings.effective_data_root.resolve()
    path = spec.resolve_split_dir(root).resolve()
    if not path.is_relative_to(root):
        raise _invalid(f"split '{spec.split}': must be a directory under the server's data root",
                       "invalid_split")
    if not path.is_dir():
        raise _invalid(f"split '{spec.split}': no such directory under the server's data root "
                       "(create it with `grade split import` first)", "invalid_split")
    return path


def _relative_message(exc: Exception, settings: Settings) -> str:
    # Do not echo the server's absolute paths back to the client.
    return str(exc).replace(str(settings.effective_data_root.resolve()) + "/", "")


def _apply_options(task: Task, opts: CourseOptions) -> None:
    for key, value in opts.given().items():
        if key == "deadline":
            task.deadline = _parse_deadline(value)
        elif key == "late_days":
            task.late_days = _int_in(value, "late_days", 0, 365)
        elif key == "daily_limit":
            task.daily_limit = None if value is None else _int_in(value, "daily_limit", 1, 10_000)
        elif key == "final_rule":
            try:
                task.final_rule = FinalRule(value)
            except ValueError:
                raise _invalid(f"final_rule: expected one of {', '.join(r.value for r in FinalRule)}, "
                               f"found {value!r}") from None
        elif key == "final_count":
            task.final_count = _int_in(value, "final_count", 1, 100)
        elif key == "team_size":
            task.team_size = _int_in(value, "team_size", 1, 20)


def _parse_deadline(value: Any) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _invalid(f"deadline: expected an ISO 8601 date-time, found {value!r}") from None
    else:
        raise _invalid(f"deadline: expected an ISO 8601 date-time, found {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _int_in(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _invalid(f"{key}: expected an integer from {lo} to {hi}, found {value!r}")
    return value


def _apply_spec(task: Task, spec: TaskSpec, spec_dict: dict, yaml_text: str) -> None:
    from scoring.metrics.info import METRICS

    task.title, task.kind, task.metric = spec.title, spec.kind, spec.metric
    task.higher_is_better = METRICS[spec.metric].higher_is_better
    task.spec, task.spec_yaml = spec_dict, yaml_text


def create_task(session: Session, settings: Settings, yaml_text: str, extra: CourseOptions | None = None, *,
                course: Course | None = None) -> Task:
    """Create a task in `course` (default: the `default` course)."""
    from grader_api.services.courses import DEFAULT_COURSE, get_course

    course = course or get_course(session, DEFAULT_COURSE)
    mapping, opts = parse_task_yaml(yaml_text)
    spec, spec_dict = validate_spec(mapping, settings)
    if session.scalar(sa.select(Task.id).where(Task.course_id == course.id, Task.name == spec.name)) is not None:
        raise Conflict(f"task '{spec.name}' already exists in course '{course.slug}'; "
                       f"PATCH /tasks/{spec.name} to update it")
    task = Task(course_id=course.id, name=spec.name, spec_version=1, late_days=0, final_rule=FinalRule.BEST_PUBLIC,
                final_count=2, team_size=1)
    _apply_spec(task, spec, spec_dict, yaml_text)
    _apply_options(task, opts)
    if extra is not None:
        _apply_options(task, extra)
    session.add(task)
    session.flush()
    return task


def update_task(session: Session, settings: Settings, task: Task, yaml_text: str | None,
                opts: CourseOptions) -> Task:
    if yaml_text is not None:
        mapping, yaml_opts = parse_task_yaml(yaml_text)
        spec, spec_dict = validate_spec(mapping, settings)
        if spec.name != task.name:
            raise _invalid(f"the YAML names task '{spec.name}' but this is task '{task.name}'")
        if spec_dict != task.spec:
            task.spec_version += 1  # new scoring; the instructor rescores to apply it
        _apply_spec(task, spec, spec_dict, yaml_text)
        _apply_options(task, yaml_opts)
    _apply_options(task, opts)
    task.updated_at = utcnow()
    session.flush()
    return task


def get_task(session: Session, name: str, course: Course) -> Task:
    """The task of that name in that course (the caller checked the course is theirs)."""
    task = session.scalar(sa.select(Task).where(Task.course_id == course.id, Task.name == name))
    if task is None:
        raise NotFound(f"task '{name}'")
    return task


def spec_of(task: Task) -> TaskSpec:
    from grader_api.lifecycle.split_cache import task_spec

    return task_spec(task.name, task.spec_version, task.spec)


# --- submission window and limits --------------------------------------------------------

def utc_day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def used_today(session: Session, task: Task, user: User | Member, now: datetime) -> int:
    """Submissions that count against the daily limit: this UTC day, not failed, or failed in a
    way that held a grader (COUNTED_FAILURE_CODES); the whole team's when the user has one."""
    return _used_today_by(session, task, quota_holders(session, task, user.id)[1], now)


def _used_today_by(session: Session, task: Task, user_ids: list[int], now: datetime) -> int:
    return session.scalar(
        sa.select(sa.func.count(Submission.id)).where(
            Submission.task_id == task.id, Submission.user_id.in_(user_ids),
            Submission.created_at >= utc_day_start(now),
            sa.or_(Submission.status != SubmissionStatus.FAILED,
                   Submission.error_code.in_(COUNTED_FAILURE_CODES)),
        )
    ) or 0


def submissions_left_today(session: Session, task: Task, user: User | Member, now: datetime) -> int | None:
    if task.daily_limit is None:
        return None
    return max(0, task.daily_limit - used_today(session, task, user, now))


@dataclass
class Window:
    late: bool
    late_days_used: int


def check_window(task: Task, now: datetime) -> Window:
    """Raise when the task no longer accepts submissions; say whether this one is late.

    Late days are task-wide today, so a team has the same as each of its members. Per-student
    extensions would hook in here, with the team's being its most generous member's."""
    deadline, closes = task.deadline, task.closes_at
    if deadline is None or closes is None or now <= deadline:
        return Window(False, 0)
    if now > closes:
        raise TaskClosed(f"task '{task.name}' closed at {closes.isoformat()} "
                         f"(deadline {deadline.isoformat()} plus {task.late_days} late day(s)); "
                         "submissions are no longer accepted")
    days = -(-(now - deadline) // timedelta(days=1))  # ceiling: 1 s late uses a day
    return Window(True, int(days))


def check_daily_limit(session: Session, task: Task, user: User | Member, now: datetime) -> None:
    """Refuse when the day's submissions are used up: the user's, or their whole team's."""
    if task.daily_limit is None:
        return
    team, holders = quota_holders(session, task, user.id)
    used = _used_today_by(session, task, holders, now)
    if used >= task.daily_limit:
        reset = utc_day_start(now) + timedelta(days=1)
        whose = f" for team '{team.name}'" if team is not None else ""
        raise DailyLimitReached(f"daily limit reached: {used} of {task.daily_limit} submissions for "
                                f"'{task.name}' today{whose} (UTC; failed submissions do not count unless they held a "
                                f"grader: a model run, or a run stopped by the grading time limit); the limit "
                                f"resets at {reset.isoformat()}",
                                retry_after_s=max(1, int((reset - now).total_seconds())))


# --- views -------------------------------------------------------------------------------

def _summary_fields(session: Session, task: Task, user: Member, now: datetime | None) -> dict[str, Any]:
    now = now or utcnow()
    closes = task.closes_at
    return {
        "course": user.course_slug, "role": user.role.value, "team_size": task.team_size,
        "name": task.name, "title": task.title, "kind": task.kind, "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "deadline": task.deadline, "late_days": task.late_days, "closes_at": closes,
        "open": closes is None or now <= closes,
        "daily_limit": task.daily_limit,
        "submissions_left_today": submissions_left_today(session, task, user, now),
        "accepts": list(task.spec.get("accepts", ["predictions"])),
        "final_rule": task.final_rule.value, "final_count": task.final_count,
        "private_revealed": task.private_revealed(now),
        "max_upload_mb": task.spec.get("max_upload_mb"),
    }


def task_summary(session: Session, task: Task, user: Member, now: datetime | None = None) -> TaskSummary:
    return TaskSummary(**_summary_fields(session, task, user, now))


def task_detail(session: Session, task: Task, user: Member, now: datetime | None = None) -> TaskDetail:
    spec = task.spec
    return TaskDetail(
        **_summary_fields(session, task, user, now),
        classes=list(spec.get("classes", [])), public_fraction=spec.get("public_fraction"),
        points=spec.get("points"), ap=spec.get("ap"), scores=spec.get("scores"),
        image_size=spec.get("image_size"), spec_version=task.spec_version,
        spec=spec if user.is_staff else None,
    )


def list_tasks(session: Session, user: User | Member, now: datetime | None = None) -> list[TaskSummary]:
    """The tasks of every course the user is actively enrolled in, by course, then name."""
    from grader_api.services.courses import memberships

    rows: list[TaskSummary] = []
    for member in memberships(session, user):
        tasks = session.scalars(sa.select(Task).where(Task.course_id == member.course_id).order_by(Task.name))
        rows.extend(task_summary(session, t, member, now) for t in tasks)
    return rows
