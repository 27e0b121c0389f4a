"""Users and their tokens."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grader_api.models import Role, User
from grader_api.schemas import UserOut
from grader_api.services.errors import Conflict, InvalidInput, NotFound
from grader_api.tokens import issue_token, revoke_tokens

# Names show up on leaderboards and in CSV exports: keep them plain (no spreadsheet formulas).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@ -]{0,99}$")


def create_user(session: Session, name: str, role: str) -> tuple[User, str]:
    """Create a user and a first token; returns (user, token) — the token is shown once."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput("name: 1–100 characters, letters, digits, space, '_', '.', '@' or '-', "
                           "starting with a letter or digit")
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidInput("role: expected 'student' or 'instructor'") from None
    if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user '{name}' already exists")
    user = User(name=name, role=role_value)
    session.add(user)
    session.flush()
    return user, issue_token(session, user)


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


def user_view(user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role.value)
