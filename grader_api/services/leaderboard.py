"""Leaderboards and the grade export.

Public board: each student's best public-part score. Private board (and grades): the
private-part score of the student's final submission(s), chosen by the task's rule
(best public by default). Ties: the earlier submission ranks higher. Direction comes from
the metric's `higher_is_better`. Only graded rows take part (scores never NaN: the worker
stores None for undefined values).

Teams: a team holds one row under its name, from the submissions of its current (active)
members taken together; a student of a team task without a team holds a row of their own.
The grade export keeps one row per student, with their team's figures.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.models import Enrollment, EnrollmentStatus, FinalRule, Role, Submission, SubmissionStatus, Task, User
from grader_api.schemas import Leaderboard, LeaderboardRow
from grader_api.services import teams as team_service
from grader_api.services.courses import Member
from grader_api.services.errors import InvalidInput, PrivateHidden
from grader_api.services.spreadsheet import spreadsheet_safe
from grader_api.services.submissions import can_see_private


@dataclass
class _Entry:
    id: int
    user_id: int
    created_at: datetime
    public: float | None
    private: float | None
    selected: bool
    points: float | None
    late_days_used: int
    selected_at: datetime | None


def _ranking_key(task: Task, score: float, entry: _Entry):
    return (-score if task.higher_is_better else score, entry.created_at, entry.id)


def _best(task: Task, entries: list[_Entry], attr: str) -> _Entry | None:
    scored = [e for e in entries if getattr(e, attr) is not None]
    return min(scored, key=lambda e: _ranking_key(task, getattr(e, attr), e), default=None)


def final_entries(task: Task, entries: list[_Entry]) -> list[_Entry]:
    """The submissions that count for the private board and the grade."""
    if task.final_rule == FinalRule.LATEST:
        scored = [e for e in entries if e.public is not None or e.private is not None]
        return [max(scored, key=lambda e: (e.created_at, e.id))] if scored else []
    if task.final_rule == FinalRule.SELECTED:
        chosen = [e for e in entries if e.selected and _selected_before_close(task, e)]
        if chosen:
            return chosen
    best = _best(task, entries, "public")
    return [best] if best else []


def _selected_before_close(task: Task, entry: _Entry) -> bool:
    # Selections are refused once the task has closed, so a mark dated at or after the close
    # (written past that check, or left by a deadline moved earlier) cannot be trusted for a
    # grade. Marks older than the selected_at column carry no time and count.
    closes = task.closes_at
    return closes is None or entry.selected_at is None or entry.selected_at < closes


def _graded(task: Task, entries: list[_Entry]) -> _Entry | None:
    return _best(task, final_entries(task, entries), "private")


@dataclass(frozen=True)
class _Person:
    login: str
    display_name: str
    real_name: str


def _entries_by_user(session: Session, task: Task, also: list[int] | None = None,
                     ) -> tuple[dict[int, list[_Entry]], dict[int, _Person], dict[int, int]]:
    """Scored entries, people and entry counts of the course's active members (a dropped student's
    submissions are kept but leave the boards); `also`: more users to name (team members)."""
    # Rows with a public score: scored ones, and ones being rescored (old scores stand until replaced).
    rows = session.execute(
        sa.select(Submission.id, Submission.user_id, Submission.created_at,
                  Submission.public_primary, sa.func.coalesce(Submission.private_primary, Submission.overall_primary),
                  Submission.selected, Submission.points, Submission.late_days_used, Submission.selected_at)
        .where(Submission.task_id == task.id, Submission.status != SubmissionStatus.FAILED,
               Submission.scored_at.is_not(None))
    ).all()
    by_user: dict[int, list[_Entry]] = {}
    for r in rows:
        by_user.setdefault(r[1], []).append(_Entry(*r))
    counts = dict(session.execute(
        sa.select(Submission.user_id, sa.func.count(Submission.id))
        .where(Submission.task_id == task.id, Submission.status != SubmissionStatus.FAILED)
        .group_by(Submission.user_id)
    ).all())
    people = {uid: _Person(login, display, full or login) for uid, login, display, full in session.execute(
        sa.select(User.id, User.name, Enrollment.display_name, User.full_name)
        .join(Enrollment, Enrollment.user_id == User.id)
        .where(User.id.in_([*counts, *(also or [])] or [-1]), Enrollment.course_id == task.course_id,
               Enrollment.status == EnrollmentStatus.ACTIVE)).all()}
    return ({uid: e for uid, e in by_user.items() if uid in people}, people,
            {uid: n for uid, n in counts.items() if uid in people})


@dataclass(frozen=True)
class Standing:
    """One student's place on a board, with the submission that earns it."""

    rank: int
    user_id: int
    user: str            # login name (staff views)
    display_name: str    # what students see
    real_name: str
    score: float
    entries: int
    submission_id: int
    submitted_at: datetime
    member_ids: tuple[int, ...] = ()   # whose row it is: the student, or the team's members
    team: str | None = None


@dataclass(frozen=True)
class _Competitor:
    """Who holds one row: a student alone, or a team (its active members)."""

    order: tuple[int, int]          # (0, user id) alone, (1, team id) a team: a stable tie-break
    member_ids: tuple[int, ...]
    team: str | None


def _competitors(session: Session, task: Task,
                 ) -> tuple[list[_Competitor], dict[int, list[_Entry]], dict[int, _Person], dict[int, int]]:
    """Every student's or team's row holder with the entries, people and counts behind them."""
    teams = team_service.teams_of_task(session, task)
    by_user, people, counts = _entries_by_user(session, task, [uid for t in teams for uid in t.member_ids])
    in_team = {uid for t in teams for uid in t.member_ids}
    found = [_Competitor((1, t.id), tuple(uid for uid in t.member_ids if uid in people), t.name) for t in teams]
    found = [c for c in found if any(uid in by_user for uid in c.member_ids)]
    found += [_Competitor((0, uid), (uid,), None) for uid in by_user if uid not in in_team]
    return found, by_user, people, counts


def _board(board: str) -> Literal["public", "private"]:
    if board == "public":
        return "public"
    if board == "private":
        return "private"
    raise InvalidInput("board: expected 'public' or 'private'")


def standings(session: Session, task: Task, board: str) -> list[Standing]:
    """The board's ranking, every row with the submission it counts.

    No access check: callers show it only to someone `leaderboard` lets see this board (the
    ids of other students' submissions are not for students).
    """
    _board(board)
    competitors, by_user, people, counts = _competitors(session, task)
    ranked = []
    for who in competitors:
        entries = [e for uid in who.member_ids for e in by_user.get(uid, [])]
        chosen = _best(task, entries, "public") if board == "public" else _graded(task, entries)
        if chosen is None:
            continue
        score = chosen.public if board == "public" else chosen.private
        if score is None:  # not reached: _best picks only entries with that score
            continue
        ranked.append((_ranking_key(task, score, chosen), who.order, who, chosen, score))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [_standing(rank, who, chosen, score, people, counts)
            for rank, (_key, _order, who, chosen, score) in enumerate(ranked, start=1)]


def _standing(rank: int, who: _Competitor, chosen: _Entry, score: float, people: dict[int, _Person],
              counts: dict[int, int]) -> Standing:
    entries = sum(counts.get(uid, 0) for uid in who.member_ids)
    if who.team is None:
        person = people[chosen.user_id]
        login, display, real = person.login, person.display_name, person.real_name
    else:  # the team's name for everyone; staff see the members' real names next to it
        login = display = who.team
        real = ", ".join(people[uid].real_name for uid in who.member_ids)
    return Standing(rank=rank, user_id=chosen.user_id, user=login, display_name=display, real_name=real,
                    score=score, entries=entries, submission_id=chosen.id, submitted_at=chosen.created_at,
                    member_ids=who.member_ids, team=who.team)


def leaderboard(session: Session, task: Task, board: str, viewer: Member, now: datetime | None = None) -> Leaderboard:
    """The board as `viewer` sees it: the private one only once they may see private scores,
    submission ids only on their own row, and other people only by display name (course staff
    see every id and the real names next to the display names)."""
    which = _board(board)
    if which == "private" and not can_see_private(task, viewer, now):
        raise PrivateHidden("the private leaderboard is shown after the task closes")

    def shown_id(s: Standing) -> int | None:
        return s.submission_id if viewer.is_staff or viewer.id in s.member_ids else None

    staff = viewer.is_staff
    rows = [LeaderboardRow(rank=s.rank, user=s.user if staff else s.display_name, display_name=s.display_name,
                           real_name=s.real_name if staff else None, score=s.score, entries=s.entries,
                           submitted_at=s.submitted_at, submission_id=shown_id(s), is_me=viewer.id in s.member_ids)
            for s in standings(session, task, which)]
    return Leaderboard(task=task.name, board=which, metric=task.metric, higher_is_better=task.higher_is_better,
                       rows=rows)


@dataclass(frozen=True)
class GradeRow:
    """One student's line of the grade export (see `grade_rows`)."""

    student: str
    best_public: float | None
    best_private: float | None
    points: float | None
    late_days_used: int
    submissions: int


GRADE_COLUMNS = tuple(f.name for f in fields(GradeRow))


def grade_rows(session: Session, task: Task) -> list[GradeRow]:
    """One row per student (all students, also those who never submitted).

    best_public: the best public-part score; best_private: the private-part score of the
    final submission(s) (the private board's score); points and late days used: of that
    graded submission. A team's members each get the team's figures (submissions: the team's).
    """
    by_user, _names, counts = _entries_by_user(session, task)   # active members only
    team_of = {uid: team.member_ids for team in team_service.teams_of_task(session, task) for uid in team.member_ids}
    students = session.execute(
        sa.select(User.id, User.name).join(Enrollment, Enrollment.user_id == User.id)
        .where(Enrollment.course_id == task.course_id, Enrollment.role == Role.STUDENT,
               Enrollment.status == EnrollmentStatus.ACTIVE).order_by(User.name)).all()
    rows = []
    for user_id, name in students:
        holders = team_of.get(user_id, (user_id,))
        entries = [e for uid in holders for e in by_user.get(uid, [])]
        best_public = _best(task, entries, "public")
        graded = _graded(task, entries)
        rows.append(GradeRow(
            student=name,
            best_public=best_public.public if best_public else None,
            best_private=graded.private if graded else None,
            points=graded.points if graded else None,
            late_days_used=graded.late_days_used if graded else 0,
            submissions=sum(counts.get(uid, 0) for uid in holders),
        ))
    return rows


def grades_csv(session: Session, task: Task) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=GRADE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in grade_rows(session, task):
        writer.writerow({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else spreadsheet_safe(v)))
                         for k, v in asdict(row).items()})
    return buf.getvalue()
