"""Request-scoped dependencies and their `Annotated` aliases.

The session dependency is the request's unit of work (the transaction story is in
grader_api/db.py): it commits when the endpoint returns (before the response is sent,
`scope="function"`), rolls back on error, then runs after-commit callbacks (dispatching queued
submissions). Routes that wait on a body take `DatabaseDep` instead and open short transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from grader_api.config import Settings
from grader_api.db import Database, unit_of_work
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.ratelimit import RateLimiter
from grader_api.storage import LocalStorage


def get_database_dep(request: Request) -> Database:
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    db: Database = request.app.state.db
    with db.sessionmaker() as session, unit_of_work(session):
        yield session


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> LocalStorage:
    return request.app.state.storage


def get_relay(request: Request) -> OutboxRelay:
    return request.app.state.relay


def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database_dep)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]
RelayDep = Annotated[OutboxRelay, Depends(get_relay)]
LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]


# Submission ids are 64-bit (BIGINT on PostgreSQL, SQLite's rowid): a larger number in a path
# or query is answered 422 by validation and never reaches the database, so an out-of-range
# value there is the server's own (errors.py answers it as a server-side limit).
DB_ID_MAX = 2**63 - 1
SubmissionId = Annotated[int, Path(ge=1, le=DB_ID_MAX, description="submission id")]
CourseQuery = Annotated[str | None, Query(max_length=40, description="course slug: needed only when a task of "
                                           "this name exists in several of your courses")]
