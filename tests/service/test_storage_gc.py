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


def test_an_object_stored_from_a_temp_file_that_waited_long_is_fresh(course):
    """An upload may wait for validation longer than the GC's age bound; once stored (its row
    about to commit) GC must still see it as new."""
    storage = LocalStorage(course.settings.effective_storage_dir)
    tmp = storage.temp_file()
    tmp.write_bytes(b"received two hours ago, validated just now")
    _age(tmp, 2 * HOUR)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    assert storage.put(tmp, sha)
    assert collect_garbage(course.app.state.db, storage, max_age_s=HOUR).orphan_objects == 0
    assert storage.path(sha).exists()


def test_an_upload_reusing_an_object_while_gc_removes_it_keeps_its_file(course, monkeypatch):
    """GC found the object old and unreferenced; an upload of the same bytes re-uses it at the
    moment GC removes it. Whichever goes first, the upload's row must find its file."""
    import pathlib
    import threading

    storage = LocalStorage(course.settings.effective_storage_dir)
    content = b"a course baseline many students upload unchanged"
    obj = _orphan(storage, content)
    _age(obj, 2 * HOUR)
    unlink, fired = pathlib.PosixPath.unlink, []

    def upload_same_bytes():
        tmp = storage.temp_file()
        tmp.write_bytes(content)
        storage.put(tmp, hashlib.sha256(content).hexdigest())

    def unlink_after_a_concurrent_put(self, *args, **kwargs):
        if self == obj and not fired:
            fired.append(threading.Thread(target=upload_same_bytes))
            fired[0].start()
            fired[0].join(0.5)     # let the upload go first if nothing holds it back
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.PosixPath, "unlink", unlink_after_a_concurrent_put)
    collect_garbage(course.app.state.db, storage, max_age_s=HOUR)
    assert fired, "GC did not try to remove the old object"
    fired[0].join(5)
    assert obj.exists(), "the upload's stored file was removed under it"
