"""Users and their tokens."""

from __future__ import annotations

import re
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.models import Course, Enrollment, EnrollmentStatus, Role, User
from grader_api.schemas import CourseMembership, UserOut
from grader_api.services.courses import DEFAULT_COURSE, course_for_new_task, enroll, get_course
from grader_api.services.errors import Conflict, InvalidInput, NotFound
from grader_api.tokens import issue_token, revoke_tokens

# Names show up on leaderboards and in CSV exports: keep them plain (no spreadsheet formulas).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@ -]{0,99}$")
_CHUNK = 500   # values per IN (...) list


def create_user(session: Session, name: str, role: str, *, course: Course | None = None) -> tuple[User, str]:
    """Create a user enrolled in `course` (default: the `default` course) with `role` there, and a
    first token; returns (user, token) — the token is shown once."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput("name: 1–100 characters, letters, digits, space, '_', '.', '@' or '-', "
                           "starting with a letter or digit")
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidInput("role: expected 'student', 'ta' or 'instructor'") from None
    if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user '{name}' already exists")
    user = User(name=name, role=role_value)
    session.add(user)
    session.flush()
    enroll(session, course or get_course(session, DEFAULT_COURSE), user, role_value)
    return user, issue_token(session, user)


def create_user_as(session: Session, caller: User, name: str, role: str, course: str | None) -> tuple[User, str]:
    """An instructor creates a user in a course they teach (TAs do not enrol anyone)."""
    found, _member = course_for_new_task(session, caller, course)
    return create_user(session, name, role, course=found)


def _taught(caller: User) -> sa.Select[int]:
    return sa.select(Enrollment.course_id).where(Enrollment.user_id == caller.id, Enrollment.role == Role.INSTRUCTOR,
                                                 Enrollment.status == EnrollmentStatus.ACTIVE)


def beyond_reach(session: Session, caller: User, user_ids: Iterable[int]) -> set[int]:
    """Those of `user_ids` enrolled in some course the caller does not instruct: one instructor
    may not sign in (token, sign-in link) as a student of another instructor's course."""
    wanted = sorted(set(user_ids))
    outside: set[int] = set()
    for start in range(0, len(wanted), _CHUNK):
        outside.update(session.scalars(sa.select(Enrollment.user_id).distinct().where(
            Enrollment.user_id.in_(wanted[start:start + _CHUNK]), Enrollment.course_id.not_in(_taught(caller)))))
    return outside


def managed_user(session: Session, caller: User, name: str) -> User:
    """The user `name` if the caller instructs every course that user is enrolled in (a new token
    for a student of another course would let one instructor act as that student there).
    Not found otherwise: the caller learns nothing about users outside their courses."""
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user '{name}'")
    enrolled = session.scalar(sa.select(Enrollment.id).where(Enrollment.user_id == user.id).limit(1))
    if enrolled is None or beyond_reach(session, caller, [user.id]):
        raise NotFound(f"user '{name}'")
    return user


def revocable_user(session: Session, caller: User, name: str) -> User:
    """The user `name` if the caller may end their tokens: `managed_user`, or a student of a course
    the caller instructs whatever other courses they are in (revoking signs nobody in, and another
    course's roster must not keep an instructor from ending a leaked token of their own student).
    Not found otherwise."""
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is not None and session.scalar(sa.select(Enrollment.id).where(
            Enrollment.user_id == user.id, Enrollment.role == Role.STUDENT,
            Enrollment.course_id.in_(_taught(caller))).limit(1)) is not None:
        return user
    return managed_user(session, caller, name)


def get_user(session: Session, name: str) -> User:
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user '{name}'")
    return user


def new_token(session: Session, name: str, *, revoke_old: bool = False) -> str:
    user = get_user(session, name)
    if revoke_old:
        revoke_tokens(session, user)
    return issue_token(session, user)


def revoke(session: Session, name: str) -> int:
    return revoke_tokens(session, get_user(session, name))


_RANK = {Role.STUDENT: 0, Role.TA: 1, Role.INSTRUCTOR: 2}


def user_view(session: Session, user: User) -> UserOut:
    """The user with every active course membership; `role` is the highest of them."""
    rows = session.execute(
        sa.select(Course.slug, Course.title, Course.timezone, Enrollment.role, Enrollment.display_name)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .where(Enrollment.user_id == user.id, Enrollment.status == EnrollmentStatus.ACTIVE)
        .order_by(Course.slug)).all()
    courses = [CourseMembership(course=slug, title=title, timezone=tz, role=Role(role).value, display_name=display)
               for slug, title, tz, role, display in rows]
    roles = [Role(r[3]) for r in rows]
    top = max(roles, key=_RANK.__getitem__) if roles else user.role
    return UserOut(id=user.id, name=user.name, role=top.value, courses=courses)
