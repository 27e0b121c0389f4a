"""Fixtures for the direct service tests: a real SQLite database at the latest migration, one
per test (a copy of the schema migrated once per session, tests/support/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from grader_api.db import Database
from tests.services.factory import Factory
from tests.support.databases import copy_migrated_sqlite


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    path = tmp_path / "heldout.sqlite"
    copy_migrated_sqlite(path)
    db = Database(f"sqlite:///{path}")
    try:
        with db.sessionmaker() as s:
            yield s
    finally:
        db.dispose()


@pytest.fixture
def make(session: Session) -> Factory:
    return Factory(session)
