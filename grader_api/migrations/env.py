"""Alembic environment: one connection, batch mode on SQLite, an advisory lock on PostgreSQL
so an API process and several workers starting together migrate once, in turn."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from grader_api.models import Base

_PG_LOCK_KEY = 0x68656C64  # "held"


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from grader_api.config import get_settings

    return get_settings().effective_database_url


def run_migrations_online() -> None:
    url = _url()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    is_pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if is_pg:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
        try:
            context.configure(
                connection=conn,
                target_metadata=Base.metadata,
                render_as_batch=engine.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        finally:
            if is_pg:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
