"""Fixtures for the service tests. The embedded stack (SQLite + in-process worker) is cheap
and used by default; the real stack (PostgreSQL, Redis, a celery worker subprocess) lives in
`test_integration_real.py` and skips with the address of whatever server is not reachable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from grader_api.app import create_app
from grader_api.config import Settings
from tests.service.helpers import make_split, set_display_names, task_yaml
from tests.support.databases import copy_migrated_sqlite


@dataclass
class Course:
    client: TestClient
    settings: Settings
    instructor: str
    alice: str
    bob: str
    labels: object   # numpy labels of the default split

    @property
    def app(self):
        return self.client.app


def seed_users(app) -> dict[str, str]:
    from grader_api.services.users import create_user

    tokens = {}
    with app.state.db.transaction() as s:
        for name, role in (("prof", "instructor"), ("alice", "student"), ("bob", "student")):
            tokens[name] = create_user(s, name, role)[1]
        set_display_names(s)
    return tokens


def embedded_settings(tmp_path: Path, *, fresh_database: bool = False, **overrides) -> Settings:
    """Settings of the embedded stack under `tmp_path`. Its SQLite database is already there,
    migrated (a copy of the schema migrated once per session; start-up's `migrate` finds it at
    head), unless `fresh_database`: for tests of what start-up itself creates."""
    values = dict(var_dir=tmp_path / "var", database_url=None, redis_url=None, sweeper_enabled=False,
                  datasets_dir=Path("datasets"), rate_limit="10000/minute", upload_rate_limit="10000/minute")
    values.update(overrides)
    settings = Settings(**values)
    url = make_url(settings.effective_database_url)
    if not fresh_database and url.get_backend_name() == "sqlite" and not Path(url.database).exists():
        copy_migrated_sqlite(Path(url.database))
    return settings


@pytest.fixture
def course(request, tmp_path) -> Course:
    """Embedded app with three users and a 'pets' task (200 items, deadline unset). Marked
    `fresh_database`, the app starts on an empty var dir and migrates a new database."""
    settings = embedded_settings(tmp_path, fresh_database=request.node.get_closest_marker("fresh_database") is not None)
    labels = make_split(settings.effective_data_root, "pets/test", n=200)
    app = create_app(settings)
    with TestClient(app) as client:
        tokens = seed_users(app)
        r = client.post("/api/v1/tasks", content=task_yaml(), headers={
            "Authorization": f"Bearer {tokens['prof']}", "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        yield Course(client, settings, tokens["prof"], tokens["alice"], tokens["bob"], labels)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_course(request, tmp_path):
    """The `course` above on the embedded SQLite default, and the same on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("course")
        return
    from tests.service.pg_course import course_on_postgres

    with course_on_postgres(tmp_path) as course:
        yield course
