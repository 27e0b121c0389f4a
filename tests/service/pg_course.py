"""The `course` of conftest.py on a throwaway PostgreSQL database (in-process worker, no Redis):
for behaviour that depends on the database's locking or column types."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from grader_api.app import create_app
from tests.service import real_stack
from tests.service.conftest import Course, embedded_settings, seed_users
from tests.service.helpers import auth, make_split, task_yaml


@contextmanager
def course_on_postgres(tmp_path: Path):
    """Three users and a 'pets' task (200 items, deadline unset), as the `course` fixture; its
    database is a copy of the schema migrated once per session (start-up finds it at head)."""
    real_stack.require_postgres()
    with real_stack.throwaway_database(migrated=True) as url:
        settings = embedded_settings(tmp_path, database_url=url)
        labels = make_split(settings.effective_data_root, "pets/test", n=200)
        with TestClient(create_app(settings)) as client:
            tokens = seed_users(client.app)
            r = client.post("/api/v1/tasks", content=task_yaml(), headers={
                **auth(tokens["prof"]), "Content-Type": "application/yaml"})
            assert r.status_code == 201, r.text
            yield Course(client, settings, tokens["prof"], tokens["alice"], tokens["bob"], labels)
