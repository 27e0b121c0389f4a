"""Teams: students who submit together for one task (`team_size` > 1).

A team shares the daily limit, the final-submission choice and one leaderboard row, and every
member sees the team's submissions. Submissions carry no team: a team's submissions are those
of its current members, so moving a member (staff only, once the team has a scored submission)
moves that member's submissions with them, into the new team's quota, choice and row. So a
join, add or move is refused when the team would then hold more of today's submissions than the
daily limit, or more final marks than `final_count` (check_merge).

Students create a team (and are its first member), join one with its join code, and leave it
until the team has a scored submission; all three end when the task closes. Course staff
(instructor or TA) create, rename and dissolve teams and add, move or remove members at any time.

Locks, always taken in this order so two operations cannot wait on each other: user rows
(ascending id), then the task row, then team rows (ascending id). Uploads and final selections
take the user's row, then their team's (grader_api/services/submissions.py).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.db import lock_row
from grader_api.display_names import InvalidDisplayName, check_display_name, display_name_key
from grader_api.models import (
    Enrollment,
    EnrollmentStatus,
    Role,
    Submission,
    SubmissionStatus,
    Task,
    Team,
    TeamMember,
    User,
    utcnow,
)
from grader_api.schemas import MyTeamOut, TeamLeaveOut, TeamMemberOut, TeamOut
from grader_api.services.courses import Member, member_of
from grader_api.services.errors import Conflict, InvalidInput, NotAllowed, NotFound, TooManySelected

JOIN_CODE_BYTES = 16          # 128 random bits: 22 URL-safe characters, never guessed in practice
_JOIN_CODE = re.compile(r"[A-Za-z0-9_-]{16,32}")
MAX_NAMES = 100               # login names in one staff request


# --- reads -------------------------------------------------------------------------------

def team_of(session: Session, task: Task, user_id: int) -> Team | None:
    """The user's team for `task`, or None (they submit alone)."""
    return session.scalar(sa.select(Team).join(TeamMember, TeamMember.team_id == Team.id)
                          .where(TeamMember.task_id == task.id, TeamMember.user_id == user_id))


def member_ids(session: Session, team: Team) -> list[int]:
    """User ids of the team's members, in the order they joined."""
    return list(session.scalars(sa.select(TeamMember.user_id).where(TeamMember.team_id == team.id)
                                .order_by(TeamMember.joined_at, TeamMember.id)))


def teammate_ids(session: Session, task: Task, user_id: int) -> list[int]:
    """The users whose submissions count as `user_id`'s for `task`: their team's members (them
    included), or only them when they have no team."""
    team = team_of(session, task, user_id)
    return member_ids(session, team) if team is not None else [user_id]


def quota_holders(session: Session, task: Task, user_id: int) -> tuple[Team | None, list[int]]:
    """The user's team (None when alone) and the users whose submissions share their quota."""
    team = team_of(session, task, user_id)
    return team, (member_ids(session, team) if team is not None else [user_id])


def lock_team_of(session: Session, task: Task, user_id: int) -> Team | None:
    """Lock the user's team row (when they have one) until the transaction ends: members
    uploading or selecting at once then see each other's rows. Take it after the user's row."""
    team = team_of(session, task, user_id)
    if team is not None:
        lock_row(session, sa.inspect(Team).columns.id, team.id)
    return team


@dataclass(frozen=True)
class TaskTeam:
    """One team of a task with its members' user ids (the leaderboard's grouping)."""

    id: int
    name: str
    member_ids: tuple[int, ...]


def teams_of_task(session: Session, task: Task) -> list[TaskTeam]:
    """Every team of the task with its members, by name (empty teams included)."""
    rows = session.execute(
        sa.select(Team.id, Team.name, TeamMember.user_id)
        .outerjoin(TeamMember, TeamMember.team_id == Team.id)
        .where(Team.task_id == task.id).order_by(Team.name_key, Team.id, TeamMember.joined_at, TeamMember.id)
    ).all()
    members: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for team_id, name, user_id in rows:
        names[team_id] = name
        members.setdefault(team_id, [])
        if user_id is not None:
            members[team_id].append(user_id)
    return [TaskTeam(tid, names[tid], tuple(ids)) for tid, ids in members.items()]


def has_scored_submission(session: Session, team: Team) -> bool:
    """Whether a member's submission to the team's task has been scored (then no member may leave)."""
    return session.scalar(
        sa.select(Submission.id).join(TeamMember, TeamMember.user_id == Submission.user_id)
        .where(TeamMember.team_id == team.id, Submission.task_id == team.task_id,
               sa.or_(Submission.status == SubmissionStatus.SCORED, Submission.scored_at.is_not(None)))
        .limit(1)) is not None


# --- checks ------------------------------------------------------------------------------

def check_team_task(task: Task) -> None:
    if task.team_size <= 1:
        raise Conflict(f"task '{task.name}' is done alone (team_size 1): it has no teams", "individual_task")


def check_teams_open(task: Task) -> None:
    """Students form and leave teams only while the task is open: once it has closed, a change
    would move submissions between grades. Staff may still change teams."""
    closes = task.closes_at
    if closes is not None and task.private_revealed():
        raise NotAllowed(f"task '{task.name}' closed at {closes.isoformat()}; teams can no longer be changed "
                         "by students (course staff can still move members)", "teams_closed")


def check_room(session: Session, team: Team, task: Task, joining: int = 1, leaving: int = 0) -> None:
    """Refuse when `joining` more members (and `leaving` fewer) would pass `team_size`; call it
    holding the team's lock."""
    count = session.scalar(sa.select(sa.func.count(TeamMember.id)).where(TeamMember.team_id == team.id)) or 0
    if count - leaving + joining > task.team_size:
        raise Conflict(f"team '{team.name}' is full: {count} of {task.team_size} members", "team_full")


def check_team_name(session: Session, task: Task, name: str, *, team_id: int | None = None) -> tuple[str, str]:
    """The name normalised and its key; refused when it breaks the display-name rules, is taken
    by another team of the task (ignoring case), or is a course member's display name (a team
    must not pass for a student on the board)."""
    try:
        value = check_display_name(name or "")
    except InvalidDisplayName as exc:
        raise InvalidInput(f"team name: {exc.reason}") from None
    key = display_name_key(value)   # at most 40 characters, like the name_key column (the rules)
    taken = session.scalar(sa.select(Team.id).where(Team.task_id == task.id, Team.name_key == key,
                                                    Team.id != (team_id or -1)))
    if taken is not None:
        raise Conflict(f"team name: '{value}' is taken for task '{task.name}' (names are compared "
                       "ignoring case); choose another", "name_taken")
    person = session.scalar(sa.select(Enrollment.id).where(Enrollment.course_id == task.course_id,
                                                           Enrollment.display_key == key))
    if person is not None:
        raise Conflict(f"team name: '{value}' is a course member's display name; choose another", "name_taken")
    return value, key


def check_merge(session: Session, task: Task, team_name: str, user_ids: Iterable[int], *,
                joiner: int | None = None) -> None:
    """Refuse a team whose members would be `user_ids` (after a join, or a staff add or move)
    when their submissions together pass what one team may hold: today's past the daily limit,
    or marks past `final_count`. A member's submissions count for their team, so without this a
    pair who each used the day alone, then joined, would have twice the team's quota (and two
    final choices). `joiner`: the student joining by code (the message speaks to them);
    None: staff are changing the team. Staff cannot override: the change waits for the next
    UTC day, or for the students to unselect. Call it holding the users' and teams' locks."""
    ids = sorted(set(user_ids))
    if len(ids) < 2:
        return
    # Imported here: the task service imports this module (quota_holders).
    from grader_api.services.tasks import _used_today_by

    if task.daily_limit is not None:
        used = _used_today_by(session, task, ids, utcnow())
        if used > task.daily_limit:
            when = "join tomorrow" if joiner is not None else "make this change tomorrow (staff cannot override it)"
            raise Conflict(f"team '{team_name}' would have {used} of {task.daily_limit} submissions for "
                           f"'{task.name}' today (UTC; a team shares the daily limit): {when}", "team_daily_limit")
    marks = dict(session.execute(
        sa.select(Submission.user_id, sa.func.count(Submission.id))
        .where(Submission.task_id == task.id, Submission.user_id.in_(ids), Submission.selected.is_(True))
        .group_by(Submission.user_id)).all())
    total = sum(marks.values())
    if total > task.final_count:
        extra = total - task.final_count
        if joiner is not None and marks.get(joiner, 0) >= extra:
            who = f"unselect {extra} of your final submissions first"
        elif joiner is not None:
            who = f"you and the team must unselect {extra} of them first"
        else:
            who = f"its students must unselect {extra} of them first (staff cannot override it)"
        raise TooManySelected(f"team '{team_name}' would have {total} final submissions of "
                              f"{task.final_count} for '{task.name}' (a team makes one choice): {who}")


def normalize_join_code(code: str) -> str | None:
    """The code as given, without surrounding space, or None when it cannot be a join code."""
    code = (code or "").strip()
    return code if _JOIN_CODE.fullmatch(code) else None


# --- students ----------------------------------------------------------------------------

def create_team(session: Session, task: Task, member: Member, name: str,
                members: Iterable[str] | None = None) -> Team:
    """A new team for `task`. A student creates it for themselves (they are its first member);
    staff create it empty or with `members` (login names of the course's students)."""
    check_team_task(task)
    logins = list(members or [])
    if not member.is_staff:
        if logins:
            raise NotAllowed("only course staff name the members of a new team; "
                             "share the join code with your teammates instead")
        check_teams_open(task)
        _lock_users(session, [member.id])
        lock_row(session, sa.inspect(Task).columns.id, task.id)
        current = team_of(session, task, member.id)
        if current is not None:
            raise Conflict(f"you are already in team '{current.name}' for task '{task.name}'; "
                           "leave it first", "already_in_team")
        value, key = check_team_name(session, task, name)
        team = _new_team(session, task, value, key)
        session.add(TeamMember(team_id=team.id, task_id=task.id, user_id=member.id))
        session.flush()
        return team
    students = _course_students(session, task, logins)
    if len(students) > task.team_size:
        raise Conflict(f"a team of task '{task.name}' has at most {task.team_size} members; "
                       f"{len(students)} were named", "team_full")
    _lock_users(session, [u.id for u in students])
    lock_row(session, sa.inspect(Task).columns.id, task.id)
    value, key = check_team_name(session, task, name)
    for user in students:
        current = team_of(session, task, user.id)
        if current is not None:
            raise Conflict(f"'{user.name}' is already in team '{current.name}'; create the team without "
                           "them, then add them to it (that moves them)", "already_in_team")
    check_merge(session, task, value, [u.id for u in students])
    team = _new_team(session, task, value, key)
    for user in students:
        session.add(TeamMember(team_id=team.id, task_id=task.id, user_id=user.id))
    session.flush()
    return team


def _new_team(session: Session, task: Task, name: str, key: str) -> Team:
    team = Team(task_id=task.id, name=name, name_key=key, join_code=secrets.token_urlsafe(JOIN_CODE_BYTES))
    session.add(team)
    session.flush()
    return team


def join_team(session: Session, code: str, user: User | Member) -> tuple[Team, Task, Member]:
    """Join the team whose join code is `code`, as an active student of its task's course.

    Not found for a code of no team and for a team of another course alike (nothing about the
    team is revealed); the code is looked up by the unique column, never compared piecewise.
    The team's row is locked before its size is counted, so two joins cannot both take the
    last seat (nor two joiners' submissions both fit the day's limit)."""
    given = normalize_join_code(code)
    team = session.scalar(sa.select(Team).where(Team.join_code == given)) if given else None
    task = session.get(Task, team.task_id) if team is not None else None
    member = member_of(session, user, task.course_id) if task is not None else None
    if team is None or task is None or member is None:
        raise NotFound("team with that join code")
    if member.is_staff:
        raise NotAllowed("course staff are not team members; staff add students to a team by changing the team")
    check_team_task(task)
    check_teams_open(task)
    _lock_users(session, [member.id])
    lock_row(session, sa.inspect(Team).columns.id, team.id)
    current = team_of(session, task, member.id)
    if current is not None and current.id == team.id:
        return team, task, member
    if current is not None:
        raise Conflict(f"you are already in team '{current.name}' for task '{task.name}'; leave it first",
                       "already_in_team")
    check_room(session, team, task)
    check_merge(session, task, team.name, [*member_ids(session, team), member.id], joiner=member.id)
    session.add(TeamMember(team_id=team.id, task_id=task.id, user_id=member.id))
    session.flush()
    return team, task, member


def leave_team(session: Session, task: Task, member: Member) -> TeamLeaveOut:
    """Leave one's team for `task`, while no member's submission has been scored. The last
    member to leave dissolves the team (its name is free again)."""
    check_teams_open(task)
    _lock_users(session, [member.id])
    team = lock_team_of(session, task, member.id)
    if team is None:
        raise NotFound(f"your team for task '{task.name}'")
    if has_scored_submission(session, team):
        raise Conflict(f"team '{team.name}' has a scored submission: its members can no longer leave "
                       "(course staff can move you)", "team_locked")
    session.execute(sa.delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == member.id))
    dissolved = not member_ids(session, team)
    if dissolved:
        session.delete(team)
    session.flush()
    return TeamLeaveOut(task=task.name, team=team.name, dissolved=dissolved)


# --- staff -------------------------------------------------------------------------------

def team_for_staff(session: Session, team_id: int, user: User | Member) -> tuple[Team, Task, Member]:
    """The team with the caller's membership of its course, for staff: not found outside the
    caller's courses, not allowed for a student of the course."""
    team = session.get(Team, team_id)
    task = session.get(Task, team.task_id) if team is not None else None
    member = member_of(session, user, task.course_id) if task is not None else None
    if team is None or task is None or member is None:
        raise NotFound(f"team {team_id}")
    if not member.is_staff:
        raise NotAllowed("changing a team needs the instructor or TA role in this course")
    return team, task, member


def edit_team(session: Session, team: Team, task: Task, *, name: str | None = None,
              add: Iterable[str] = (), remove: Iterable[str] = ()) -> Team:
    """Staff: rename, remove members, add members (a student in another team of the task is
    moved from it, with their submissions). `team_size` still holds. Everything is checked
    before anything is written: a refused change leaves the team as it was."""
    add_logins, remove_logins = list(dict.fromkeys(add)), list(dict.fromkeys(remove))
    both = set(add_logins) & set(remove_logins)
    if both:
        raise InvalidInput(f"'{sorted(both)[0][:100]}' is both added to and removed from the team")
    if len(remove_logins) > MAX_NAMES:
        raise InvalidInput(f"remove: at most {MAX_NAMES} names per request")
    adding = _course_students(session, task, add_logins)
    _lock_users(session, [u.id for u in adding])
    lock_row(session, sa.inspect(Task).columns.id, task.id)
    current = {u.id: team_of(session, task, u.id) for u in adding}
    _lock_teams(session, [team.id, *(t.id for t in current.values() if t is not None)])
    renamed = check_team_name(session, task, name, team_id=team.id) if name is not None else None
    # Members are removed by login whatever their enrollment now (a dropped student too).
    by_login = dict(session.execute(sa.select(User.name, User.id).join(TeamMember, TeamMember.user_id == User.id)
                                    .where(TeamMember.team_id == team.id)).all())
    for login in remove_logins:
        _check_login(login, "remove")
        if login not in by_login:
            raise InvalidInput(f"remove: '{login[:100]}' is not a member of team '{team.name}'")
    staying = {uid for login, uid in by_login.items() if login not in remove_logins}
    newcomers = [u for u in adding if u.id not in staying]
    check_room(session, team, task, joining=len(newcomers), leaving=len(remove_logins))
    if newcomers:
        check_merge(session, task, renamed[0] if renamed else team.name, [*staying, *(u.id for u in newcomers)])

    if renamed is not None:
        team.name, team.name_key = renamed
    session.execute(sa.delete(TeamMember).where(
        TeamMember.team_id == team.id, TeamMember.user_id.in_([by_login[n] for n in remove_logins] or [-1])))
    for user in newcomers:
        old = current[user.id]
        if old is not None:
            session.execute(sa.delete(TeamMember).where(TeamMember.team_id == old.id,
                                                        TeamMember.user_id == user.id))
        session.add(TeamMember(team_id=team.id, task_id=task.id, user_id=user.id))
    session.flush()
    return team


def dissolve_team(session: Session, team: Team) -> None:
    """Staff: delete the team; its members submit alone again, keeping their own submissions."""
    lock_row(session, sa.inspect(Team).columns.id, team.id)
    session.execute(sa.delete(TeamMember).where(TeamMember.team_id == team.id))
    session.delete(team)
    session.flush()


def _course_users(session: Session, task: Task, logins: list[str]) -> list[User]:
    """The users of these login names who are active members of the task's course, in order."""
    if len(logins) > MAX_NAMES:
        raise InvalidInput(f"members: at most {MAX_NAMES} names per request")
    for name in logins:
        _check_login(name, "members")
    found = {u.name: u for u in session.scalars(
        sa.select(User).join(Enrollment, Enrollment.user_id == User.id)
        .where(User.name.in_(logins or [""]), Enrollment.course_id == task.course_id,
               Enrollment.status == EnrollmentStatus.ACTIVE))}
    missing = [name for name in logins if name not in found]
    if missing:
        raise InvalidInput(f"members: '{missing[0][:100]}' is not an active member of this course")
    return [found[name] for name in dict.fromkeys(logins)]


def _check_login(name: str, field: str) -> None:
    # Never sent to the database as it is: PostgreSQL refuses NUL in text, and a login is plain.
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise InvalidInput(f"{field}: '{name[:40].encode('unicode_escape').decode('ascii')}' is not a login name "
                           "(1–100 printable characters)")


def _course_students(session: Session, task: Task, logins: list[str]) -> list[User]:
    users = _course_users(session, task, logins)
    roles = dict(session.execute(sa.select(Enrollment.user_id, Enrollment.role).where(
        Enrollment.course_id == task.course_id, Enrollment.user_id.in_([u.id for u in users] or [-1]))).all())
    for user in users:
        if Role(roles[user.id]) != Role.STUDENT:
            raise InvalidInput(f"members: '{user.name}' is course staff; only students are team members")
    return users


def _lock_users(session: Session, user_ids: Iterable[int]) -> None:
    for user_id in sorted(set(user_ids)):
        lock_row(session, sa.inspect(User).columns.id, user_id)


def _lock_teams(session: Session, team_ids: Iterable[int]) -> None:
    for team_id in sorted(set(team_ids)):
        lock_row(session, sa.inspect(Team).columns.id, team_id)


# --- views -------------------------------------------------------------------------------

def team_view(session: Session, team: Team, task: Task, viewer: Member) -> TeamOut:
    """The team as `viewer` sees it: members by display name (staff also see login and real
    name); the join code for members and staff only."""
    rows = session.execute(
        sa.select(User.id, User.name, User.full_name, Enrollment.display_name)
        .join(TeamMember, TeamMember.user_id == User.id)
        .outerjoin(Enrollment, sa.and_(Enrollment.user_id == User.id, Enrollment.course_id == task.course_id))
        .where(TeamMember.team_id == team.id).order_by(TeamMember.joined_at, TeamMember.id)).all()
    ids = [r[0] for r in rows]
    staff = viewer.is_staff
    return TeamOut(
        id=team.id, task=task.name, course=viewer.course_slug, name=team.name, team_size=task.team_size,
        members=[TeamMemberOut(display_name=display or "", login=login if staff else None,
                               real_name=(full or login) if staff else None, is_me=uid == viewer.id)
                 for uid, login, full, display in rows],
        join_code=team.join_code if staff or viewer.id in ids else None,
        locked=has_scored_submission(session, team),
    )


def my_team(session: Session, task: Task, viewer: Member) -> MyTeamOut:
    team = team_of(session, task, viewer.id)
    return MyTeamOut(task=task.name, course=viewer.course_slug, team_size=task.team_size,
                     team=team_view(session, team, task, viewer) if team is not None else None)


def list_teams(session: Session, task: Task, viewer: Member) -> list[TeamOut]:
    """Staff: every team of the task, by name."""
    teams = session.scalars(sa.select(Team).where(Team.task_id == task.id).order_by(Team.name_key, Team.id))
    return [team_view(session, t, task, viewer) for t in teams]
