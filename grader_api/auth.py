"""Bearer tokens and roles.

Tokens are `secrets.token_urlsafe(32)`, shown once, stored as sha256 hex (a fast hash is
right here: the token has 256 bits of entropy, so there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from grader_api.db import unit_of_work
from grader_api.errors import ApiError
from grader_api.models import ApiToken, Role, User, utcnow
from grader_api.routers.deps import LimiterDep, SessionDep


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User) -> str:
    """Create a token for `user`; the caller shows the returned value once."""
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    return token


def revoke_tokens(session: Session, user: User) -> int:
    res = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return res.rowcount or 0


def authenticate(session: Session, token: str) -> User | None:
    """The user a token belongs to, or None for an unknown or revoked token."""
    if not token:
        return None
    return session.scalar(
        sa.select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(msg: str) -> ApiError:
    return ApiError(401, msg, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


def current_user(request: Request, session: SessionDep, limiter: LimiterDep) -> User:
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing 'Authorization: Bearer <token>' header")
    # Ended at once: a request must not hold a pooled connection while it waits for its body
    # or for a thread (under a rush, waiting holders starved the pool and answered 500s).
    with unit_of_work(session):
        user = authenticate(session, token)
    if user is None:
        raise _unauthorized("invalid or revoked token")
    limiter.check("api", user.id)
    return user


def instructor_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != Role.INSTRUCTOR:
        raise ApiError(403, "this action needs the instructor role", "forbidden")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
Instructor = Annotated[User, Depends(instructor_user)]
