"""What the service writes is owner-only whatever the umask: the database (and its -wal/-shm),
split files (labels), stored uploads and their directories. In the fallback sandbox a model
runs as another user on the host's file system; none of these may be readable by it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from tests.service.helpers import ids_for, predictions_csv, upload


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    """The usual default (022), under which files were created 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_split_files_are_owner_only(tmp_path, permissive_umask):
    from scoring.splits import write_split

    root = write_split(tmp_path / "pets" / "test", np.arange(6) % 3, ids=ids_for(6),
                       inputs=np.zeros((6, 1, 2, 2), dtype=np.uint8), seed=0)
    assert _mode(root) == 0o700
    files = sorted(p.name for p in root.iterdir())
    assert files == ["ids.txt", "inputs.npy", "labels.npy", "split.json"]
    assert {name: _mode(root / name) for name in files} == {name: 0o600 for name in files}


@pytest.mark.fresh_database  # the start-up must create the database file owner-only itself
def test_database_uploads_and_their_directories_are_owner_only(permissive_umask, course):
    # permissive_umask comes first: it is in force while `course` creates the app and its files.
    client, settings = course.client, course.settings
    r = upload(client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert r.status_code == 202, r.text
    db = Path(settings.var_dir) / "heldout.sqlite3"
    written = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert all(p.exists() for p in written)          # WAL mode, while the app holds it open
    assert {p.name: _mode(p) for p in written} == {p.name: 0o600 for p in written}
    storage = settings.effective_storage_dir
    objects = [p for p in (storage / "objects").rglob("*") if p.is_file()]
    assert objects
    assert {str(p): _mode(p) for p in objects} == {str(p): 0o600 for p in objects}
    # (the storage root itself is made by start-up, under `grade serve`'s umask 077)
    dirs = [storage / "objects", storage / "tmp", *(p.parent for p in objects)]
    assert {str(d): _mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}
