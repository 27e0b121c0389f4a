"""Engine, sessions, the one transaction helper, and migrations.

The transaction story (every module follows it):

1. A unit of work is `unit_of_work(session)`: commit on success, roll back on any error, then
   run the callbacks registered with `after_commit` — only once the commit has succeeded. That
   is how queue messages are sent strictly after the rows they announce exist (the outbox).
   Nothing else calls `commit()` or `rollback()`.
2. Every write happens in exactly one unit of work, and a unit of work never waits on anything
   slow (a request body, file validation, a model run, the network): it holds locks and a pooled
   connection for milliseconds.
3. HTTP: authentication reads in its own short `Database.transaction()`. A route that only reads
   or writes quickly takes the request's session (`routers/deps.py::get_session`): one unit of
   work per request, committed when the endpoint returns, before the response is sent. A route
   that waits (the upload: the body streams in, then validation runs) takes no request session:
   it reads in one short transaction, waits with no connection held, and writes everything in
   one `Database.transaction()` (the user lock, the re-checks, the row, the outbox entry).
4. Worker, sweeper and CLI: one `Database.transaction()` per step; every state change of a
   submission is one conditional UPDATE (`grader_api.lifecycle.transitions`), so two processes
   racing on a row cannot both win.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_AFTER_COMMIT_KEY = "heldout.after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction has committed (never on rollback)."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


def _run_callbacks(session: Session, key: str) -> None:
    for cb in session.info.pop(key, []):
        try:
            cb()
        except Exception:  # e.g. a failed send leaves the outbox row unsent; the sweeper retries it
            log.exception("transaction callback failed")


@contextmanager
def unit_of_work(session: Session) -> Iterator[Session]:
    """Commit on success, roll back on error, then run after-commit callbacks."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop(_AFTER_COMMIT_KEY, None)
        raise
    _run_callbacks(session, _AFTER_COMMIT_KEY)


def lock_row(session: Session, column: sa.Column, row_id: int) -> None:
    """Hold a write lock tied to one row until the transaction ends, on every backend.

    PostgreSQL: SELECT ... FOR UPDATE. SQLite has no row locks, and its driver opens a
    transaction only at the first write, so two threads could both read a count before either
    writes; a no-op UPDATE takes SQLite's single writer lock at once instead (the others wait,
    up to busy_timeout, and then read what the first one committed).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.update(column.table).where(column == row_id).values({column.name: column}))
    else:
        session.execute(sa.select(column).where(column == row_id).with_for_update())


def _create_private_sqlite_file(url: str) -> None:
    """Create the database file owner-only (0600) before SQLite does: SQLite gives its -wal and
    -shm files the database file's mode, and would create the database with the umask's."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass        # exists already, or its directory does not (SQLite will say so)


def _make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: readers do not block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = _make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessionmaker() as session, unit_of_work(session):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_lock = threading.Lock()


def get_database(url: str) -> Database:
    """One engine per URL per process (the worker and the sweeper share it)."""
    with _lock:
        db = _databases.get(url)
        if db is None:
            db = _databases[url] = Database(url)
        return db


def dispose_database(url: str) -> None:
    with _lock:
        db = _databases.pop(url, None)
    if db is not None:
        db.dispose()


# --- migrations --------------------------------------------------------------------------

_MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the schema to the latest revision (safe to run from several processes at once)."""
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        _create_private_sqlite_file(url)
    command.upgrade(alembic_config(url), "head")
