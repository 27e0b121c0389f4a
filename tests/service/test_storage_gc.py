"""Storage GC removes what a crashed process left behind (old temp files, old objects no row
refers to) and nothing a submission needs or an upload in flight is writing."""

from __future__ import annotations

import hashlib
import os
import time

from grader_api.storage import LocalStorage
from tests.service.helpers import predictions_csv, upload, wait_for_status
from worker.storage_gc import collect_garbage

HOUR = 3600.0


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _orphan(storage: LocalStorage, content: bytes):
    tmp = storage.temp_file()
    tmp.write_bytes(content)
    sha = hashlib.sha256(content).hexdigest()
    assert storage.put(tmp, sha)
    return storage.path(sha)


def test_gc_removes_only_old_leftovers(course):
    storage = LocalStorage(course.settings.effective_storage_dir)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert r.status_code == 202, r.text
    wait_for_status(course.client, course.alice, r.json()["id"])
    used = storage.path(r.json()["sha256"])
    _age(used, 10 * HOUR)                                  # old, but a submission refers to it

    old_orphan = _orphan(storage, b"stored, then the API died before the commit")
    _age(old_orphan, 2 * HOUR)
    fresh_orphan = _orphan(storage, b"stored a moment ago; its row is about to commit")
    old_tmp, live_tmp = storage.temp_file(), storage.temp_file()
    old_tmp.write_bytes(b"x" * 1000)
    _age(old_tmp, 2 * HOUR)
    live_tmp.write_bytes(b"an upload still streaming")

    result = collect_garbage(course.app.state.db, storage, max_age_s=HOUR)

    assert (result.temp_files, result.orphan_objects) == (1, 1)
    assert result.bytes_freed == 1000 + len(b"stored, then the API died before the commit")
    assert used.exists() and fresh_orphan.exists() and live_tmp.exists()
    assert not old_orphan.exists() and not old_tmp.exists()
    # The graded submission still reads its file.
    again = course.client.get(f"/api/v1/submissions/{r.json()['id']}",
                              headers={"Authorization": f"Bearer {course.alice}"})
    assert again.json()["status"] == "scored"


def test_reusing_a_stored_object_makes_it_fresh_again(tmp_path):
    storage = LocalStorage(tmp_path)
    obj = _orphan(storage, b"same bytes")
    _age(obj, 2 * HOUR)
    tmp = storage.temp_file()
    tmp.write_bytes(b"same bytes")
    assert storage.put(tmp, hashlib.sha256(b"same bytes").hexdigest()) is False
    assert time.time() - obj.stat().st_mtime < 60      # GC's age bound now protects it again
    assert not tmp.exists()
