"""Migrations: the models and the migrated schema agree on every backend, and 0002 widens the
submission and outbox ids to BIGINT on PostgreSQL without losing rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from grader_api.db import alembic_config, migrate
from grader_api.models import Base
from tests.service import real_stack

WIDENED = {("submissions", "id"), ("outbox", "id"), ("outbox", "submission_id")}
INT32_MAX = 2**31 - 1


def _column_types(conn) -> dict[tuple[str, str], str]:
    rows = conn.execute(sa.text(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE (table_name, column_name) IN (('submissions', 'id'), ('outbox', 'id'), ('outbox', 'submission_id'))"))
    return {(t, c): d for t, c, d in rows}


def _sequence_types(conn) -> dict[str, tuple[str, int]]:
    rows = conn.execute(sa.text("SELECT sequencename, data_type::text, max_value FROM pg_sequences "
                                "WHERE sequencename IN ('submissions_id_seq', 'outbox_id_seq')"))
    return {name: (kind, top) for name, kind, top in rows}


def _drift(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_models_match_the_migrated_schema(backend, tmp_path: Path):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        migrate(url)
        assert _drift(url) == []
        return
    real_stack.require_postgres()
    with real_stack.throwaway_database() as url:
        migrate(url)
        assert _drift(url) == []


def test_0002_round_trip_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "0001")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert "selected_at" not in {c["name"] for c in sa.inspect(conn).get_columns("submissions")}
    engine.dispose()
    command.upgrade(cfg, "head")
    assert _drift(url) == []


@pytest.mark.postgres
def test_0002_makes_ids_bigint_on_postgresql_and_keeps_rows():
    real_stack.require_postgres()
    with real_stack.throwaway_database() as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0001")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            assert set(_column_types(conn).values()) == {"integer"}
            conn.execute(sa.text(
                "INSERT INTO users (id, name, role, created_at) VALUES (1, 'alice', 'student', now());"
                "INSERT INTO tasks (id, name, title, kind, metric, higher_is_better, spec, spec_yaml, spec_version,"
                " late_days, final_rule, final_count, created_at, updated_at) VALUES (1, 'pets', 'Pets',"
                " 'classification', 'accuracy', true, '{}', '', 1, 0, 'selected', 1, now(), now());"))
            conn.execute(sa.text(
                "INSERT INTO submissions (id, task_id, user_id, kind, status, file_sha256, file_size, late,"
                " late_days_used, selected, attempts, public_primary, created_at, updated_at)"
                " VALUES (:id, 1, 1, 'predictions', 'scored', 'ab', 10, false, 0, true, 1, 0.5, now(), now())"),
                [{"id": 7}, {"id": INT32_MAX}])
            conn.execute(sa.text("INSERT INTO outbox (id, submission_id, queue, created_at, send_attempts)"
                                 " VALUES (:id, :sid, 'cpu', now(), 0)"), [{"id": INT32_MAX, "sid": INT32_MAX}])
            conn.execute(sa.text(f"SELECT setval('submissions_id_seq', {INT32_MAX}); "
                                 f"SELECT setval('outbox_id_seq', {INT32_MAX})"))
        engine.dispose()

        command.upgrade(cfg, "head")

        engine = sa.create_engine(url)
        with engine.begin() as conn:
            assert _column_types(conn) == dict.fromkeys(WIDENED, "bigint")
            assert _sequence_types(conn) == {"submissions_id_seq": ("bigint", 2**63 - 1),
                                             "outbox_id_seq": ("bigint", 2**63 - 1)}
            kept = conn.execute(sa.text("SELECT id, selected, public_primary, selected_at FROM submissions"
                                        " ORDER BY id")).all()
            assert [tuple(r) for r in kept] == [(7, True, 0.5, None), (INT32_MAX, True, 0.5, None)]
            assert conn.execute(sa.text("SELECT id, submission_id FROM outbox")).one() == (INT32_MAX, INT32_MAX)
            new_id = conn.execute(sa.text(
                "INSERT INTO submissions (task_id, user_id, kind, status, file_sha256, file_size, late,"
                " late_days_used, selected, attempts, created_at, updated_at)"
                " VALUES (1, 1, 'predictions', 'queued', 'cd', 10, false, 0, false, 0, now(), now()) RETURNING id"
            )).scalar_one()
            assert new_id == 2**31
            outbox_id = conn.execute(sa.text("INSERT INTO outbox (submission_id, queue, created_at, send_attempts)"
                                             " VALUES (:sid, 'cpu', now(), 0) RETURNING id"), {"sid": new_id}
                                     ).scalar_one()
            assert outbox_id == 2**31
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the foreign key still holds
            conn.execute(sa.text("INSERT INTO outbox (submission_id, queue, created_at, send_attempts)"
                                 " VALUES (99, 'cpu', now(), 0)"))
        engine.dispose()
        assert _drift(url) == []


@pytest.mark.postgres
def test_0002_downgrades_on_an_empty_postgresql_database():
    real_stack.require_postgres()
    with real_stack.throwaway_database() as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "0001")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert set(_column_types(conn).values()) == {"integer"}
            assert {kind for kind, _top in _sequence_types(conn).values()} == {"integer"}
        engine.dispose()
        command.upgrade(cfg, "head")
        assert _drift(url) == []
