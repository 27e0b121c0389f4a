"""A parsed roster file (grader_api/roster.py) applied to one course: users created, enrolled,
updated, re-activated, and students missing from the file marked dropped.

Rules, all in one transaction (the caller's unit of work; nothing is committed here):

- A person is matched by the Canvas ID (`lms_id`) stored for them in this course, else by login
  (`User.name`, compared ignoring case): Canvas leaves the SIS cells empty in an export by an
  account that may not see them, and the same class exported so must not become a new one. New
  people become users with the login as their name, their full name and email; they get no
  token (an invite, see `services/invites.py`, gives them one).
- Importing the same file twice changes nothing: values are compared before they are written,
  and the second result counts everyone as unchanged.
- An empty cell (no section, no LMS id, a Canvas login that is not an email) leaves the stored
  value as it is: a plain `name,email` file must not wipe the Canvas ids an earlier import stored.
- Staff are never changed by a file: a row whose login is a TA or an instructor of the course
  with another role (a Canvas row is always a student) is refused with its line, so a roster can
  neither demote nor drop an instructor. Roles of staff change on the roster page.
- A person's full name and email are user-level (one per person, shown in every course they are
  in), so they belong to whoever enrolled the person first: a roster writes them only for people
  enrolled in no other course, and never fills them in for the others (an instructor of another
  course must not rename my students).
- Active students missing from the file are marked dropped: kept with their submissions, hidden
  from boards, back to active when a later file lists them. Nobody is dropped when the parser
  refused a row (that row may be a student already enrolled, whose name or id changed in the
  LMS): the result says so, and the next import after the fix drops them.
- A file with no importable row is refused as a whole (nothing changes), and a file with no
  student row (a list of TAs) drops nobody: an import never takes "nobody" for "everybody dropped".
- Two imports creating the same new person at once (PostgreSQL): the second is retried once in a
  fresh transaction, where it finds the person the first made (`import_roster_retrying`).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grader_api.db import Database, lock_row
from grader_api.display_names import display_name_key, unique_pseudonym
from grader_api.models import Course, Enrollment, EnrollmentStatus, Role, User, utcnow
from grader_api.roster import ParsedRoster, Refused, RosterFileError, RosterFormat, RosterRow, Skipped, parse_roster
from grader_api.services.courses import STAFF, Member, get_course, require_instructor, require_member
from grader_api.services.errors import Conflict, InvalidInput, NotFound

_CHUNK = 500          # values per IN (...) list: well under every backend's parameter limit
_SHOWN_REFUSALS = 3   # refusals quoted in the message of a file refused as a whole


@dataclass(frozen=True)
class RosterImportResult:
    format: RosterFormat
    added: int
    unchanged: int
    updated: int
    dropped: int
    dropped_logins: tuple[str, ...]
    refused: tuple[Refused, ...]      # the parser's and the import's, by line
    skipped: tuple[Skipped, ...]      # lines that are not people (Canvas's own lines)
    drops_withheld: str | None        # why students missing from the file were not dropped


def parse_roster_file(data: bytes, filename: str | None = None) -> ParsedRoster:
    """`parse_roster`, with a whole-file problem as the domain's `InvalidInput` (its line kept)."""
    try:
        return parse_roster(data, filename=filename)
    except RosterFileError as exc:
        raise InvalidInput(f"roster: {exc.message}", "invalid_roster", line=exc.line) from None


def import_roster(session: Session, course: Course, parsed: ParsedRoster, *,
                  actor: Member | None) -> RosterImportResult:
    """Apply `parsed` to `course`. `actor`: the instructor doing it (their membership of this
    course), or None for the site administrator at the server's terminal."""
    if actor is not None:
        if actor.course_id != course.id:
            raise NotFound(f"course '{course.slug}'")
        require_instructor(actor)
    # One import of a course at a time: the second waits and then sees what the first stored.
    lock_row(session, sa.inspect(Course).columns.id, course.id)

    users = _users_by_login(session, [row.login for row in parsed.rows])
    enrollments = {e.user_id: e for e in
                   session.scalars(sa.select(Enrollment).where(Enrollment.course_id == course.id))}
    by_lms_id = {e.lms_id: e for e in enrollments.values() if e.lms_id}
    by_id = _users_by_id(session, [by_lms_id[row.lms_id].user_id for row in parsed.rows if row.lms_id in by_lms_id])
    refused = list(parsed.refused)
    accepted: list[tuple[RosterRow, User | None, Enrollment | None]] = []
    line_of: dict[int, int] = {}   # user id -> the line that matched them
    for row in parsed.rows:
        known = by_lms_id.get(row.lms_id) if row.lms_id else None
        user = by_id[known.user_id] if known is not None else users.get(row.login)
        enrollment = enrollments.get(user.id) if user is not None else None
        problem = _staff_refusal(row, enrollment)
        if problem is None and user is not None and user.id in line_of:
            problem = (f"the same person as line {line_of[user.id]} (one by Canvas ID, the other by login): "
                       "fix the file in the LMS and export it again")
        if user is not None and problem is None:
            line_of[user.id] = row.line
        if problem is not None:
            refused.append(Refused(row.line, problem))
        else:
            accepted.append((row, user, enrollment))
    refused.sort(key=lambda r: r.line)
    if not accepted:
        raise _nothing_importable(refused)

    now = utcnow()
    shared = _enrolled_elsewhere(session, course, [u.id for _row, u, _e in accepted if u is not None])
    taken = {e.display_key for e in enrollments.values()}
    rng = random.Random(secrets.randbits(64))

    new_users = [User(name=row.login, role=Role(row.role), full_name=row.full_name, email=row.email, created_at=now)
                 for row, user, _e in accepted if user is None]
    session.add_all(new_users)
    session.flush()   # their ids, for the enrollments below
    created = {u.name: u for u in new_users}

    added = updated = unchanged = 0
    listed: set[int] = set()
    for row, found, enrollment in accepted:
        user = found or created[row.login]
        listed.add(user.id)
        person_changed = found is not None and user.id not in shared and _update_person(user, row)
        if enrollment is None:
            display = unique_pseudonym(lambda name: display_name_key(name) in taken, rng)
            taken.add(display_name_key(display))
            session.add(Enrollment(course_id=course.id, user_id=user.id, role=Role(row.role),
                                   status=EnrollmentStatus.ACTIVE, display_name=display,
                                   display_key=display_name_key(display), section=row.section,
                                   lms_id=row.lms_id, sis_user_id=row.sis_user_id,
                                   sis_login_id=row.sis_login_id, created_at=now, updated_at=now))
            added += 1
        elif _update_enrollment(enrollment, row, now) or person_changed:
            updated += 1
        else:
            unchanged += 1

    missing = sorted((e for e in enrollments.values()
                      if e.role == Role.STUDENT and e.status == EnrollmentStatus.ACTIVE and e.user_id not in listed),
                     key=lambda e: e.id)
    dropped_logins: list[str] = []
    withheld = None
    if missing and not any(row.role == Role.STUDENT.value for row, _u, _e in accepted):
        withheld = (f"{len(missing)} active student(s) are not in the file, but nobody was dropped because the file "
                    "lists no student (a list of staff?): import the class list to drop the students it leaves out.")
    elif missing and parsed.refused:
        withheld = (f"{len(missing)} active student(s) are not in the file, but nobody was dropped because "
                    f"{len(parsed.refused)} row(s) were refused: a refused row may be one of them. Fix or "
                    "remove the refused rows and import again to drop the students the file leaves out.")
    elif missing:
        logins = dict(session.execute(sa.select(User.id, User.name).where(
            User.id.in_([e.user_id for e in missing]))).all())
        for enrollment in missing:
            enrollment.status, enrollment.updated_at = EnrollmentStatus.DROPPED, now
            dropped_logins.append(logins[enrollment.user_id])
        dropped_logins.sort()
    session.flush()
    return RosterImportResult(format=parsed.format, added=added, unchanged=unchanged, updated=updated,
                              dropped=len(dropped_logins), dropped_logins=tuple(dropped_logins),
                              refused=tuple(refused), skipped=parsed.skipped, drops_withheld=withheld)


def import_roster_retrying(db: Database, course: str, parsed: ParsedRoster, user: User) -> RosterImportResult:
    """`import_roster` by `user` into the course with slug `course`, in a transaction of its own.
    Two imports creating the same new person at once: the second one's insert breaks the unique
    login when the first commits, so it is run once more in a fresh transaction, where it finds
    that person. A second clash is answered with a Conflict to import again."""
    def once() -> RosterImportResult:
        with db.transaction() as session:
            found = get_course(session, course)
            return import_roster(session, found, parsed, actor=require_member(session, user, found))

    try:
        return once()
    except IntegrityError:
        pass
    try:
        return once()
    except IntegrityError:
        raise Conflict("another import is creating the same students right now; import the file again") from None


def _chunks(values: Sequence[object]) -> Iterator[Sequence[object]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _users_by_login(session: Session, logins: Iterable[str]) -> dict[str, User]:
    """Existing users by lower-cased name (an exact match wins over one that differs in case)."""
    wanted = sorted(set(logins))
    found: dict[str, User] = {}
    for chunk in _chunks(wanted):
        for user in session.scalars(sa.select(User).where(sa.func.lower(User.name).in_(chunk)).order_by(User.id)):
            key = user.name.lower()
            if key not in found or user.name == key:
                found[key] = user
    return found


def _users_by_id(session: Session, ids: Sequence[int]) -> dict[int, User]:
    found: dict[int, User] = {}
    for chunk in _chunks(sorted(set(ids))):
        found.update((u.id, u) for u in session.scalars(sa.select(User).where(User.id.in_(chunk))))
    return found


def _enrolled_elsewhere(session: Session, course: Course, user_ids: Sequence[int]) -> set[int]:
    shared: set[int] = set()
    for chunk in _chunks(sorted(set(user_ids))):
        shared.update(session.scalars(sa.select(Enrollment.user_id).where(
            Enrollment.user_id.in_(chunk), Enrollment.course_id != course.id)))
    return shared


def _staff_refusal(row: RosterRow, enrollment: Enrollment | None) -> str | None:
    if enrollment is None or enrollment.role not in STAFF or Role(row.role) == enrollment.role:
        return None
    held = "an instructor" if enrollment.role == Role.INSTRUCTOR else "a TA"
    return (f"'{row.login}' is {held} of this course and this row makes them {row.role}: a roster file never "
            "changes the role of course staff (change it on the roster page)")


def _update_person(user: User, row: RosterRow) -> bool:
    """Only for a person enrolled in no other course: names and emails are user-level."""
    changed = False
    for attr, value in (("full_name", row.full_name), ("email", row.email)):
        if value is not None and getattr(user, attr) != value:
            setattr(user, attr, value)
            changed = True
    return changed


def _update_enrollment(enrollment: Enrollment, row: RosterRow, now) -> bool:
    changed = False
    if enrollment.status != EnrollmentStatus.ACTIVE:
        enrollment.status = EnrollmentStatus.ACTIVE
        changed = True
    if enrollment.role != Role(row.role):   # a student the file makes a TA or an instructor
        enrollment.role = Role(row.role)
        changed = True
    for attr in ("section", "lms_id", "sis_user_id", "sis_login_id"):
        value = getattr(row, attr)
        if value is not None and getattr(enrollment, attr) != value:
            setattr(enrollment, attr, value)
            changed = True
    if changed:
        enrollment.updated_at = now
    return changed


def _nothing_importable(refused: Sequence[Refused]) -> InvalidInput:
    shown = "; ".join(f"line {r.line}: {r.reason}" for r in refused[:_SHOWN_REFUSALS])
    more = f"; and {len(refused) - _SHOWN_REFUSALS} more" if len(refused) > _SHOWN_REFUSALS else ""
    return InvalidInput(f"roster: no row could be imported ({len(refused)} refused), so nothing was changed and "
                        f"nobody was dropped: {shown}{more}", "no_importable_rows",
                        line=refused[0].line if refused else None)
