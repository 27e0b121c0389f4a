"""Bearer tokens and roles.

Tokens are `secrets.token_urlsafe(32)`, shown once, stored as sha256 hex (a fast hash is
right here: the token has 256 bits of entropy, so there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from grader_api.db import lock_row, unit_of_work
from grader_api.errors import ApiError
from grader_api.models import ApiToken, Role, User, utcnow
from grader_api.ratelimit import RateLimiter
from grader_api.routers.deps import LimiterDep, SessionDep


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User) -> str:
    """Create a token for `user`; the caller shows the returned value once."""
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    return token


def revoke_tokens(session: Session, user: User) -> int:
    # The lock an upload holds from its token re-check to its commit: a revocation waits for
    # an upload in flight, and one that commits first makes the upload's re-check fail.
    lock_row(session, User.__table__.c.id, user.id)
    res = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return res.rowcount or 0


def _live(token: str) -> tuple[sa.ColumnElement[bool], ...]:
    return ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)


def authenticate(session: Session, token: str) -> User | None:
    """The user a token belongs to, or None for an unknown or revoked token."""
    if not token:
        return None
    return session.scalar(sa.select(User).join(ApiToken, ApiToken.user_id == User.id).where(*_live(token)))


def live_token(session: Session, token: str) -> ApiToken | None:
    """The token's row, or None for an unknown or revoked token."""
    if not token:
        return None
    return session.scalar(sa.select(ApiToken).where(*_live(token)))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(msg: str) -> ApiError:
    return ApiError(401, msg, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


def client_address(request: Request) -> str:
    """The address failed authentications are counted against (behind a reverse proxy, uvicorn
    takes it from X-Forwarded-For when the proxy is in FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


class LiveTokenIndex:
    """The hashes of all live tokens, re-read at most once per `refresh_s`, for throttled addresses.

    A throttled address may be a campus NAT shared by a whole class: one student spraying bad
    tokens must not lock classmates out, nor make the database pay for each bad token. So a
    throttled request is decided against this in-memory set, and the set is refreshed (one
    SELECT) at most once per `refresh_s` however many requests arrive. A token found here still
    goes through the ordinary lookup, which checks revocation.
    """

    def __init__(self, refresh_s: float = 5.0):
        self.refresh_s = refresh_s
        self._hashes: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def may_be_live(self, session: Session, token_hash: str) -> bool:
        if token_hash in self._hashes:
            return True
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
                with unit_of_work(session):
                    self._hashes = frozenset(session.scalars(
                        sa.select(ApiToken.token_hash).where(ApiToken.revoked_at.is_(None))))
                self._loaded_at = now
        return token_hash in self._hashes


def refuse_if_throttled(request: Request, session: Session, limiter: RateLimiter, client: str,
                        token_hash: str) -> None:
    """429 once `client` has used up its failed authentications, unless the token is live."""
    retry = limiter.auth_retry_after(client)
    if retry is not None and not request.app.state.token_index.may_be_live(session, token_hash):
        raise ApiError(429, f"too many failed authentications from your address; retry in {retry} s",
                       "rate_limited", headers={"Retry-After": str(retry)})


def current_user(request: Request, session: SessionDep, limiter: LimiterDep) -> User:
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing 'Authorization: Bearer <token>' header")
    client = client_address(request)
    refuse_if_throttled(request, session, limiter, client, hash_token(token))
    # Ended at once: a request must not hold a pooled connection while it waits for its body
    # or for a thread (under a rush, waiting holders starved the pool and answered 500s).
    with unit_of_work(session):
        user = authenticate(session, token)
    if user is None:
        limiter.count_auth_failure(client)
        raise _unauthorized("invalid or revoked token")
    limiter.check("api", user.id)
    return user


def instructor_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != Role.INSTRUCTOR:
        raise ApiError(403, "this action needs the instructor role", "forbidden")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
Instructor = Annotated[User, Depends(instructor_user)]
