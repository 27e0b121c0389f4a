"""Bearer tokens and roles at the HTTP edge: the header, failed-authentication throttling,
and the `CurrentUser` / `Instructor` dependencies (token storage is in `grader_api.tokens`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from grader_api.errors import ApiError
from grader_api.models import Role, User
from grader_api.ratelimit import RateLimiter
from grader_api.routers.deps import DatabaseDep, LimiterDep
from grader_api.tokens import authenticate, hash_token


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


def refuse_if_throttled(request: Request, limiter: RateLimiter, client: str, token_hash: str) -> None:
    """429 once `client` has used up its failed authentications, unless the token is live."""
    retry = limiter.auth_retry_after(client)
    if retry is not None and not request.app.state.token_index.may_be_live(request.app.state.db, token_hash):
        raise ApiError(429, f"too many failed authentications from your address; retry in {retry} s",
                       "rate_limited", headers={"Retry-After": str(retry)})


def current_user(request: Request, db: DatabaseDep, limiter: LimiterDep) -> User:
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing 'Authorization: Bearer <token>' header")
    client = client_address(request)
    refuse_if_throttled(request, limiter, client, hash_token(token))
    # Its own short transaction, ended at once: a request must not hold a pooled connection
    # while it waits for its body or for a thread (under a rush, waiting holders starved the
    # pool and answered 500s). The user row comes back detached, plain data.
    with db.transaction() as session:
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
