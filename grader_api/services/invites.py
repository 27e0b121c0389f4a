"""One-time sign-in links: how 400 imported students get their token without an instructor
copying 400 strings.

A link is `<base URL>/join/<code>`; the code is `secrets.token_urlsafe(24)` (192 bits), kept only
as its sha256 in `invites.code_hash` (a fast hash is right: there is nothing to brute-force).
A code is valid for 14 days and for one sign-in. Issuing links again for a course replaces the
earlier unused ones of the same students, so the latest invites.csv is the valid one. An
instructor gets links only for students all of whose courses they instruct; the site
administrator's CLI issues them for everyone.

Redeeming a code gives the student a new API token (shown once, stored hashed). An unknown, used
or expired code, or one of a student since dropped, gets the same answer: the caller learns
nothing about which codes exist. Issuing a token voids the user's unused links, and a user who
holds a live token is refused (told to log in with it): a link left in a mailbox never signs in
beside the token its owner holds. Guessing is throttled per address at the HTTP edge.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.db import lock_row
from grader_api.models import ApiToken, Course, Enrollment, EnrollmentStatus, Invite, Role, User, utcnow
from grader_api.services.errors import InvalidInput, NotFound
from grader_api.services.spreadsheet import spreadsheet_safe
from grader_api.services.users import beyond_reach
from grader_api.tokens import issue_token

VALID_FOR = timedelta(days=14)
CODE_BYTES = 24
# token_urlsafe(24) is 32 characters of the URL-safe alphabet; anything else is not a code.
_CODE_SHAPE = re.compile(r"[A-Za-z0-9_-]{32}")
_CHUNK = 500
CSV_HEADER = ("student", "email", "link")


@dataclass(frozen=True)
class InviteLink:
    student_login: str
    full_name: str | None
    email: str | None
    link: str


class InviteNotValid(NotFound):
    """The one answer for a code that is unknown, used, expired or of a dropped student."""

    def __init__(self) -> None:
        super().__init__("sign-in link")
        self.message = ("this sign-in link is not valid: it may have been used already or have expired; "
                        "ask your instructor for a new one")
        self.args = (self.message,)


class AlreadyJoined(InviteNotValid):
    """A valid code of a user who holds a live token: a second token beside theirs would go unnoticed."""

    def __init__(self) -> None:
        super().__init__()
        self.message = ("you already have a token: log in with it, or ask your instructor for a new one "
                        "(this sign-in link no longer works)")
        self.args = (self.message,)


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def looks_like_code(code: str) -> bool:
    return bool(_CODE_SHAPE.fullmatch(code))


def check_base_url(base_url: str) -> str:
    url = (base_url or "").strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise InvalidInput(f"base URL: expected http(s)://host[/path], the address students open; found '{url[:80]}'")
    return url


@dataclass(frozen=True)
class IssuedInvites:
    links: list[InviteLink]
    withheld: tuple[str, ...]   # logins of students the issuer may not sign in as (see issue_invites)

    @property
    def note(self) -> str | None:
        if not self.withheld:
            return None
        return (f"{len(self.withheld)} student(s) are enrolled in other courses too and got no link here: ask the "
                "site administrator (grade admin roster import COURSE FILE --invites)")


def issue_invites(session: Session, course: Course, *, base_url: str, issuer: User | None,
                  now: datetime | None = None) -> IssuedInvites:
    """A new sign-in link for each active student of `course` who has not joined yet (holds no
    live token), by login; their earlier unused links stop working.

    `issuer`: the instructor asking, or None for the site administrator. A link signs its holder
    in as the student everywhere, so an instructor gets links only for students all of whose
    courses they instruct (the rule for minting tokens, services/users.py::managed_user): anyone
    may list any login in their own roster. The others are withheld, counted and named."""
    base = check_base_url(base_url)
    now = now or utcnow()
    lock_row(session, sa.inspect(Course).columns.id, course.id)   # one issuing per course at a time
    has_token = sa.select(ApiToken.user_id).where(ApiToken.revoked_at.is_(None))
    rows = session.execute(
        sa.select(Enrollment.id, User.id, User.name, User.full_name, User.email)
        .join(User, User.id == Enrollment.user_id)
        .where(Enrollment.course_id == course.id, Enrollment.role == Role.STUDENT,
               Enrollment.status == EnrollmentStatus.ACTIVE, User.id.not_in(has_token))
        .order_by(User.name)).all()
    outside = beyond_reach(session, issuer, [row[1] for row in rows]) if issuer is not None else set()
    withheld = tuple(row[2] for row in rows if row[1] in outside)
    rows = [row for row in rows if row[1] not in outside]
    ids = [row[0] for row in rows]
    for start in range(0, len(ids), _CHUNK):
        session.execute(sa.update(Invite).where(Invite.enrollment_id.in_(ids[start:start + _CHUNK]),
                                                Invite.used_at.is_(None), Invite.expires_at > now)
                        .values(expires_at=now))
    links = []
    for enrollment_id, _user_id, login, full_name, email in rows:
        code = secrets.token_urlsafe(CODE_BYTES)
        session.add(Invite(enrollment_id=enrollment_id, code_hash=hash_code(code), created_at=now,
                           expires_at=now + VALID_FOR))
        links.append(InviteLink(student_login=login, full_name=full_name, email=email, link=f"{base}/join/{code}"))
    session.flush()
    return IssuedInvites(links=links, withheld=withheld)


def invites_csv(links: Sequence[InviteLink]) -> str:
    """invites.csv for a mail merge: student (full name, else login), email, link; every cell
    made safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for link in links:
        writer.writerow([spreadsheet_safe(cell) for cell in
                         (link.full_name or link.student_login, link.email or "", link.link)])
    return out.getvalue()


def redeem(session: Session, code: str, now: datetime | None = None) -> tuple[User, str]:
    """The invited user and a new API token for them (the caller shows it once); the code is
    used up. `InviteNotValid` for any code that does not sign anyone in."""
    now = now or utcnow()
    if not isinstance(code, str) or not looks_like_code(code):
        raise InviteNotValid()
    digest = hash_code(code)
    found = session.execute(
        sa.select(Invite.id, Invite.code_hash, Invite.expires_at, Invite.used_at, Enrollment.status, User)
        .join(Enrollment, Enrollment.id == Invite.enrollment_id)
        .join(User, User.id == Enrollment.user_id)
        .where(Invite.code_hash == digest)).one_or_none()
    if found is None:
        raise InviteNotValid()
    invite_id, stored, expires_at, used_at, status, user = found
    if (not hmac.compare_digest(stored, digest) or used_at is not None or expires_at <= now
            or status != EnrollmentStatus.ACTIVE):
        raise InviteNotValid()
    # Issuing a token voids the user's links (tokens.issue_token); this covers a link issued
    # while a token was being issued. The lock: the one revoking and rotating take.
    lock_row(session, sa.inspect(User).columns.id, user.id)
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.user_id == user.id,
                                                   ApiToken.revoked_at.is_(None)).limit(1)) is not None:
        raise AlreadyJoined()
    # Conditional: of two sign-ins racing with one code, exactly one uses it.
    result = cast(sa.CursorResult[Any], session.execute(
        sa.update(Invite).where(Invite.id == invite_id, Invite.used_at.is_(None)).values(used_at=now)))
    if result.rowcount != 1:
        raise InviteNotValid()
    return user, issue_token(session, user)
