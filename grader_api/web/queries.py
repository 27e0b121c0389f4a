"""The few reads the HTML pages need that the services do not offer as such.

Access rules stay in the services: every function here is called only after the service call
that checks the viewer (e.g. `leaderboard(...)` for the board, `get_visible` for a submission).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.models import Enrollment, EnrollmentStatus, Role, Submission, Task, User
from scoring.metrics.info import PER_CLASS_KEY


def board_per_class(session: Session, task: Task, board: str) -> dict[str, dict[str, float | None]]:
    """display name -> {class: per-class value of the board's part} for the submission each row counts.

    Called after `leaderboard(session, task, board, viewer)` has checked that the viewer may see
    this board. The ranking rule itself is the service's (`standings`), which says which
    submission each row counts.
    """
    from grader_api.services.leaderboard import standings

    ids = {s.submission_id: s.display_name for s in standings(session, task, board)}
    if not ids:
        return {}
    metric = PER_CLASS_KEY.get(task.metric, task.metric)
    out: dict[str, dict[str, float | None]] = {}
    for sid, report in session.execute(sa.select(Submission.id, Submission.report).where(Submission.id.in_(ids))):
        part = ((report or {}).get("parts") or {}).get(board) or {}
        out[ids[sid]] = {c: (v or {}).get(metric) for c, v in (part.get("per_class") or {}).items()}
    return out


def student_names(session: Session, course_id: int) -> list[str]:
    """The login names of the course's active students (the staff's filter)."""
    return list(session.scalars(
        sa.select(User.name).join(Enrollment, Enrollment.user_id == User.id)
        .where(Enrollment.course_id == course_id, Enrollment.role == Role.STUDENT,
               Enrollment.status == EnrollmentStatus.ACTIVE).order_by(User.name)))


def status_counts(session: Session, task: Task) -> dict[str, int]:
    rows = session.execute(
        sa.select(Submission.status, sa.func.count(Submission.id))
        .where(Submission.task_id == task.id).group_by(Submission.status)
    ).all()
    return {str(getattr(s, "value", s)): n for s, n in rows}
