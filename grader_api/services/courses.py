"""Courses, enrollments and who may do what in a course.

A user acts in a course through their enrollment: `Member` carries the user's id and name
with the role of that one course, so the services check `member.role` where they once checked a
server-wide role. A task, a submission or a board of a course the caller is not (actively)
enrolled in is `NotFound`, exactly like another student's submission.

Roles: instructor (everything in the course), ta (reads every submission, the private board,
failures and grades, may rescore and grant extensions; may not change task files, deadlines or
limits, nor enrol instructors), student.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.display_names import display_name_key, unique_pseudonym
from grader_api.models import Course, Enrollment, EnrollmentStatus, Role, Task, User, utcnow
from grader_api.services.errors import Conflict, InvalidInput, NotAllowed, NotFound

DEFAULT_COURSE = "default"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
STAFF = (Role.INSTRUCTOR, Role.TA)


@dataclass(frozen=True)
class Member:
    """A user acting in one course (the fields the services read from a user, with the course's role)."""

    id: int
    name: str
    role: Role
    course_id: int
    course_slug: str
    display_name: str

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    @property
    def is_instructor(self) -> bool:
        return self.role == Role.INSTRUCTOR


# --- courses -----------------------------------------------------------------------------

def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone: '{name}' is not an IANA time zone name "
                           "(e.g. America/Chicago, Europe/Berlin, UTC)") from None
    if name not in available_timezones() and name != "UTC":
        raise InvalidInput(f"timezone: '{name}' is not an IANA time zone name "
                           "(e.g. America/Chicago, Europe/Berlin, UTC)")
    return name


def create_course(session: Session, slug: str, title: str, timezone: str = "UTC") -> Course:
    slug = (slug or "").strip()
    if not _SLUG.match(slug):
        raise InvalidInput("course: 2–40 characters, lowercase letters, digits and '-', "
                           f"starting with a letter or digit; found '{slug[:60]}'")
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= 200 or not title.isprintable():
        raise InvalidInput("title: 1–200 printable characters")
    if session.scalar(sa.select(Course.id).where(Course.slug == slug)) is not None:
        raise Conflict(f"course '{slug}' already exists")
    course = Course(slug=slug, title=title, timezone=check_timezone(timezone))
    session.add(course)
    session.flush()
    return course


def get_course(session: Session, slug: str) -> Course:
    course = session.scalar(sa.select(Course).where(Course.slug == slug))
    if course is None:
        raise NotFound(f"course '{slug}'")
    return course


def list_courses(session: Session) -> list[Course]:
    return list(session.scalars(sa.select(Course).order_by(Course.slug)))


# --- enrollments -------------------------------------------------------------------------

def enroll(session: Session, course: Course, user: User, role: Role, *, display_name: str | None = None,
           section: str | None = None, rng: random.Random | None = None) -> Enrollment:
    """Enrol `user` (or change their role and re-activate them when already enrolled)."""
    found = session.scalar(sa.select(Enrollment).where(Enrollment.course_id == course.id,
                                                       Enrollment.user_id == user.id))
    if found is not None:
        found.role, found.status, found.updated_at = role, EnrollmentStatus.ACTIVE, utcnow()
        if section is not None:
            found.section = section
        return found
    if display_name is None:
        display_name = unique_pseudonym(lambda name: _display_taken(session, course.id, name),
                                        rng or random.Random(secrets.randbits(64)))
    enrollment = Enrollment(course_id=course.id, user_id=user.id, role=role, display_name=display_name,
                            display_key=display_name_key(display_name), section=section)
    session.add(enrollment)
    session.flush()
    return enrollment


def _display_taken(session: Session, course_id: int, name: str) -> bool:
    return session.scalar(sa.select(Enrollment.id).where(
        Enrollment.course_id == course_id, Enrollment.display_key == display_name_key(name))) is not None


def member_of(session: Session, user: User | Member, course_id: int) -> Member | None:
    """The user's active membership of the course, or None."""
    row = session.execute(
        sa.select(Enrollment.role, Enrollment.display_name, Course.slug)
        .join(Course, Course.id == Enrollment.course_id)
        .where(Enrollment.course_id == course_id, Enrollment.user_id == user.id,
               Enrollment.status == EnrollmentStatus.ACTIVE)
    ).one_or_none()
    if row is None:
        return None
    return Member(id=user.id, name=user.name, role=Role(row[0]), course_id=course_id, course_slug=row[2],
                  display_name=row[1])


def memberships(session: Session, user: User | Member) -> list[Member]:
    """Every course the user is actively enrolled in, by course slug."""
    rows = session.execute(
        sa.select(Enrollment.course_id, Enrollment.role, Enrollment.display_name, Course.slug)
        .join(Course, Course.id == Enrollment.course_id)
        .where(Enrollment.user_id == user.id, Enrollment.status == EnrollmentStatus.ACTIVE)
        .order_by(Course.slug)
    ).all()
    return [Member(id=user.id, name=user.name, role=Role(role), course_id=cid, course_slug=slug,
                   display_name=display) for cid, role, display, slug in rows]


def require_member(session: Session, user: User | Member, course: Course) -> Member:
    member = member_of(session, user, course.id)
    if member is None:
        raise NotFound(f"course '{course.slug}'")
    return member


def require_staff(member: Member) -> Member:
    if not member.is_staff:
        raise NotAllowed("this action needs the instructor or TA role in this course")
    return member


def require_instructor(member: Member) -> Member:
    if not member.is_instructor:
        raise NotAllowed("this action needs the instructor role in this course")
    return member


# --- tasks in courses --------------------------------------------------------------------

def resolve_task(session: Session, user: User | Member, name: str, course: str | None = None) -> tuple[Task, Member]:
    """The task named `name` in one of the caller's courses (`course`: that course's slug), with
    the caller's membership there. Not found when it is not in any of their courses."""
    query = (sa.select(Task).join(Enrollment, Enrollment.course_id == Task.course_id)
             .where(Task.name == name, Enrollment.user_id == user.id,
                    Enrollment.status == EnrollmentStatus.ACTIVE))
    if course is not None:
        query = query.join(Course, Course.id == Task.course_id).where(Course.slug == course)
    tasks = list(session.scalars(query.order_by(Task.course_id).limit(10)))
    if not tasks:
        raise NotFound(f"task '{name}'")
    if len(tasks) > 1:
        slugs = ", ".join(session.scalars(sa.select(Course.slug).where(
            Course.id.in_([t.course_id for t in tasks])).order_by(Course.slug)))
        raise Conflict(f"task '{name}' exists in several of your courses ({slugs}); "
                       "name the course (?course=<slug>; with the CLI, GRADE_COURSE=<slug>)", "ambiguous_task")
    member = member_of(session, user, tasks[0].course_id)
    assert member is not None  # the join above found the active enrollment
    return tasks[0], member


def course_for_new_task(session: Session, user: User | Member, course: str | None) -> tuple[Course, Member]:
    """The course a new task goes into: the named one, or the caller's only course as instructor."""
    if course is not None:
        found = get_course(session, course)
        return found, require_instructor(require_member(session, user, found))
    teaching = [m for m in memberships(session, user) if m.is_instructor]
    if len(teaching) == 1:
        return get_course(session, teaching[0].course_slug), teaching[0]
    if not teaching:
        raise NotAllowed("this action needs the instructor role in a course")
    raise InvalidInput("course: you teach several courses (" + ", ".join(m.course_slug for m in teaching)
                       + "); name one (?course=<slug>, or 'course:' in the task file)")
