"""Databases for the tests and the benchmarks: throwaway PostgreSQL databases, and the schema
migrated once per process so that each test copies it instead of running every migration again.

A copy of a migrated template (SQLite: the file; PostgreSQL: CREATE DATABASE ... TEMPLATE) is
exactly what `migrate` leaves in an empty database; the app's start-up still runs `migrate`,
which finds it at head. Migrating an empty database is tested where it is the subject:
tests/service/test_migrations.py, and the servers started on an empty var dir.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_url`."""
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _run_as_admin(admin_url: str, statement: str) -> None:
    import sqlalchemy as sa

    # CREATE/DROP DATABASE cannot run inside a transaction; NullPool: no connection outlives it.
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


@contextmanager
def throwaway_database(admin_url: str, *, prefix: str = "heldout_test", template: str | None = None) -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random> (a copy of database `template` when given), yield its
    URL, and drop it afterwards even if the body failed (WITH (FORCE) ends connections left open)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    copy_of = f' TEMPLATE "{template}"' if template else ""
    _run_as_admin(admin_url, f'CREATE DATABASE "{name}"{copy_of}')
    url = database_url(admin_url, name)
    try:
        yield url
    finally:
        from grader_api.db import dispose_database

        dispose_database(url)  # this process's cached engine for it, if one was made
        _run_as_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@functools.cache
def migrated_postgres_template(admin_url: str) -> str:
    """The name of a database migrated to head on the server of `admin_url`: made on first use in
    this process, dropped when it exits. Nothing may stay connected to it (a TEMPLATE must be idle),
    so tests get copies and never its URL."""
    from grader_api.db import migrate

    name = f"heldout_test_template_{secrets.token_hex(4)}"
    _run_as_admin(admin_url, f'CREATE DATABASE "{name}"')
    atexit.register(_run_as_admin, admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    migrate(database_url(admin_url, name))   # its engine is NullPool: nothing stays connected
    return name


@functools.cache
def _migrated_sqlite_template() -> Path:
    from grader_api.db import migrate

    directory = Path(tempfile.mkdtemp(prefix="heldout-schema-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "template.sqlite3"
    migrate(f"sqlite:///{path.as_posix()}")
    return path


def copy_migrated_sqlite(path: Path) -> None:
    """Create the SQLite database `path`, migrated to head: a copy of this process's template,
    owner-only as start-up creates it. `path` must not exist yet."""
    template = _migrated_sqlite_template()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, template.open("rb") as src:
        shutil.copyfileobj(src, out)
