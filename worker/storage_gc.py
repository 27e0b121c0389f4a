"""Storage garbage collection: files no submission will ever read.

Two kinds are left behind when a process dies at the wrong moment (the API killed while a
body streams in, or between storing the file and committing its row) or when an upload's
transaction rolls back after its file was stored (the request path never deletes objects:
another upload of the same bytes may be about to commit a row that refers to it):
  * temp files in `tmp/` not written to for `max_age_s` (an upload in progress keeps its
    file's mtime fresh);
  * objects older than `max_age_s` that no submission row refers to.
The age bound is what makes this safe next to uploads in flight: `LocalStorage.put` stores or
re-uses an object with a fresh mtime moments before its row commits, and the removal looks at
the mtime again under the same lock as `put`. So `max_age_s` must exceed the time from storing
a file to committing its row (milliseconds: the upload's short locked section).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from grader_api.db import Database
from grader_api.models import Submission
from grader_api.storage import LocalStorage

log = logging.getLogger(__name__)

_CHUNK = 500  # object names checked against the database per query


@dataclass
class GcResult:
    temp_files: int = 0
    orphan_objects: int = 0
    bytes_freed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def collect_garbage(db: Database, storage: LocalStorage, max_age_s: float, now: float | None = None) -> GcResult:
    now = time.time() if now is None else now
    cutoff = now - max_age_s
    result = GcResult()

    for path in storage.temp_files():
        size = _remove_if_older(path, cutoff)
        if size is not None:
            result.temp_files += 1
            result.bytes_freed += size

    old = [(sha, path) for sha, path in storage.objects() if _mtime(path) < cutoff]
    for i in range(0, len(old), _CHUNK):
        chunk = dict(old[i:i + _CHUNK])
        with db.transaction() as s:
            referenced = set(s.scalars(sa.select(Submission.file_sha256).distinct()
                                       .where(Submission.file_sha256.in_(chunk))))
        for sha in chunk:
            if sha in referenced:
                continue
            size = storage.remove_if_idle(sha, cutoff)  # re-checked: put() may have just re-used it
            if size is not None:
                result.orphan_objects += 1
                result.bytes_freed += size
    if result.temp_files or result.orphan_objects:
        log.info("storage gc: %s", result.as_dict())
    return result


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone already: nothing to do


def _remove_if_older(path, cutoff: float) -> int | None:
    try:
        st = path.stat()
        if st.st_mtime >= cutoff:
            return None
        path.unlink()
        return st.st_size
    except OSError:
        return None
