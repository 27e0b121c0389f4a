"""A course's members as staff see and manage them (the roster), and the display name a member
chooses for themselves.

Staff read the roster with logins, real names and emails; only instructors change a member's
role, section or status, and a course always keeps one active instructor. A display name is
checked by `grader_api.display_names` and unique in the course ignoring case, team names of
the course's tasks included; a taken name is refused without saying whose it is.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from types import EllipsisType

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grader_api.db import lock_row
from grader_api.display_names import InvalidDisplayName, check_display_name, display_name_key
from grader_api.models import ApiToken, Course, Enrollment, EnrollmentStatus, Role, Task, Team, User, utcnow
from grader_api.services.courses import Member, require_instructor
from grader_api.services.errors import Conflict, InvalidInput, NotFound

MAX_SECTION = 100
MAX_QUERY = 100
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


@dataclass(frozen=True)
class RosterEntry:
    login: str
    full_name: str | None
    email: str | None
    display_name: str
    role: Role
    status: EnrollmentStatus
    section: str | None
    lms_id: str | None
    sis_user_id: str | None
    sis_login_id: str | None
    joined: bool          # holds a live token (signed in through an invite, or was given one)


def _parse_role(value: str | None) -> Role | None:
    if value is None or value == "":
        return None
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("role: expected 'student', 'ta' or 'instructor'") from None


def _parse_status(value: str | None) -> EnrollmentStatus | None:
    if value is None or value == "":
        return None
    try:
        return EnrollmentStatus(value)
    except ValueError:
        raise InvalidInput("status: expected 'active' or 'dropped'") from None


_ROLE_ORDER = sa.case({Role.INSTRUCTOR.value: 0, Role.TA.value: 1}, value=Enrollment.role, else_=2)


def _entries(session: Session, where: list[sa.ColumnElement[bool]]) -> list[RosterEntry]:
    live = sa.select(ApiToken.user_id).where(ApiToken.revoked_at.is_(None))
    rows = session.execute(
        sa.select(User.name, User.full_name, User.email, Enrollment.display_name, Enrollment.role,
                  Enrollment.status, Enrollment.section, Enrollment.lms_id, Enrollment.sis_user_id,
                  Enrollment.sis_login_id, User.id.in_(live))
        .join(Enrollment, Enrollment.user_id == User.id).where(*where)
        .order_by(_ROLE_ORDER, User.name)).all()
    return [RosterEntry(login, full, email, display, Role(role), EnrollmentStatus(status), section, lms, sis_user,
                        sis_login, bool(joined))
            for login, full, email, display, role, status, section, lms, sis_user, sis_login, joined in rows]


def roster(session: Session, course: Course, *, q: str | None = None, role: str | None = None,
           status: str | None = None) -> list[RosterEntry]:
    """The members of `course` (staff first), optionally only those whose login, real name,
    display name or section contains `q` (ignoring case), of one role, or of one status."""
    where: list[sa.ColumnElement[bool]] = [Enrollment.course_id == course.id]
    role_value, status_value = _parse_role(role), _parse_status(status)
    if role_value is not None:
        where.append(Enrollment.role == role_value)
    if status_value is not None:
        where.append(Enrollment.status == status_value)
    text = " ".join((q or "").split())
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"q: at most {MAX_QUERY} characters")
    if text:
        needle = text.lower()
        where.append(sa.or_(*(sa.func.lower(sa.func.coalesce(column, "")).contains(needle, autoescape=True)
                              for column in (User.name, User.full_name, Enrollment.display_name,
                                             Enrollment.section))))
    return _entries(session, where)


def member_entry(session: Session, course: Course, login: str) -> RosterEntry:
    enrollment = _enrolled(session, course, login)
    return _entries(session, [Enrollment.id == enrollment.id])[0]


def _enrolled(session: Session, course: Course, login: str) -> Enrollment:
    """The enrollment of `login` (exact, else ignoring case) in `course`; not found otherwise."""
    rows = session.execute(
        sa.select(Enrollment, User.name).join(User, User.id == Enrollment.user_id)
        .where(Enrollment.course_id == course.id, sa.func.lower(User.name) == login.lower())).all()
    exact = [e for e, name in rows if name == login]
    found = exact or [e for e, _name in rows]
    if not found:
        raise NotFound(f"member '{login}'")
    return found[0]


def check_section(value: str | None) -> str | None:
    """A section name: stripped, empty means none; printable, no markup, at most 100 characters."""
    text = unicodedata.normalize("NFC", value or "").strip()
    if not text:
        return None
    if len(text) > MAX_SECTION:
        raise InvalidInput(f"section: {len(text)} characters; the limit is {MAX_SECTION}")
    for position, char in enumerate(text, start=1):
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            raise InvalidInput(f"section: the control or invisible character U+{ord(char):04X} at position {position}")
    if "<" in text or ">" in text:
        raise InvalidInput("section: '<' and '>' are not allowed")
    return text


def update_member(session: Session, course: Course, login: str, *, actor: Member | None,
                  role: str | None = None, section: str | None | EllipsisType = ...,
                  status: str | None = None) -> RosterEntry:
    """Change a member's role, section (None: none; `...`: unchanged) or status. Instructors
    only (`actor` None: the site administrator). The last active instructor stays one."""
    if actor is not None:
        if actor.course_id != course.id:
            raise NotFound(f"course '{course.slug}'")
        require_instructor(actor)
    role_value, status_value = _parse_role(role), _parse_status(status)
    new_section = section if isinstance(section, EllipsisType) else check_section(section)
    # Two instructors demoting each other at once: the second sees the first's change.
    lock_row(session, sa.inspect(Course).columns.id, course.id)
    enrollment = _enrolled(session, course, login)
    stays_instructor = ((role_value or enrollment.role) == Role.INSTRUCTOR
                        and (status_value or enrollment.status) == EnrollmentStatus.ACTIVE)
    if enrollment.role == Role.INSTRUCTOR and enrollment.status == EnrollmentStatus.ACTIVE and not stays_instructor:
        others = session.scalar(sa.select(sa.func.count(Enrollment.id)).where(
            Enrollment.course_id == course.id, Enrollment.role == Role.INSTRUCTOR,
            Enrollment.status == EnrollmentStatus.ACTIVE, Enrollment.id != enrollment.id))
        if not others:
            raise Conflict(f"'{login}' is the only instructor of '{course.slug}': make someone else an "
                           "instructor first", "last_instructor")
    changed = False
    for attr, value in (("role", role_value), ("status", status_value)):
        if value is not None and getattr(enrollment, attr) != value:
            setattr(enrollment, attr, value)
            changed = True
    if not isinstance(new_section, EllipsisType) and enrollment.section != new_section:
        enrollment.section = new_section
        changed = True
    if changed:
        enrollment.updated_at = utcnow()
        session.flush()
    return member_entry(session, course, login)


def set_display_name(session: Session, member: Member, name: str) -> str:
    """Set the caller's display name in their course (the member's); returns it as stored."""
    try:
        value = check_display_name(name)
    except InvalidDisplayName as exc:
        raise InvalidInput(f"display name: {exc.reason}", "invalid_display_name") from None
    key = display_name_key(value)
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.course_id == member.course_id,
                                                            Enrollment.user_id == member.id))
    if enrollment is None:
        raise NotFound(f"course '{member.course_slug}'")
    taken = Conflict(f"the display name '{value}' is taken in this course; choose another", "display_name_taken")
    other = session.scalar(sa.select(Enrollment.id).where(
        Enrollment.course_id == member.course_id, Enrollment.display_key == key, Enrollment.id != enrollment.id))
    # A team's name too (any task of the course): a student must not pass for a team on the board.
    team = session.scalar(sa.select(Team.id).join(Task, Task.id == Team.task_id).where(
        Task.course_id == member.course_id, Team.name_key == key))
    if other is not None or team is not None:
        raise taken
    if enrollment.display_name == value:
        return value
    enrollment.display_name, enrollment.display_key, enrollment.updated_at = value, key, utcnow()
    try:
        session.flush()
    except IntegrityError:   # a classmate took it a moment ago: the unique key says so (rolled back)
        raise taken from None
    return value
