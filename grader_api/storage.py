"""Content-addressed local file storage for uploads.

Files are named by the sha256 of their bytes (`objects/ab/abcdef…`), never by anything the
client sent. Uploads land first in `tmp/` (same filesystem) and are moved into place with an
atomic rename, so a reader never sees a half-written object.

Objects are shared by every upload of the same bytes, so only the storage GC removes them,
and only under the storage lock: `put` refreshes or stores an object under the same lock, so
an upload whose row is about to commit never loses its file to a GC pass that found it
unreferenced a moment earlier.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> None:
        # Owner-only whatever the umask: uploads are other students' work (files are 0600, mkstemp).
        for directory in (self.root, self.root / "objects", self.root / "tmp"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def temp_file(self) -> Path:
        """A fresh empty temp file in storage's own tmp dir; the caller removes or `put`s it."""
        self.ensure()
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.root / "tmp")
        os.close(fd)
        return Path(name)

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / "objects" / sha256[:2] / sha256

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Between processes (API, workers, the sweeper): storing an object vs removing one."""
        self.ensure()
        fd = os.open(self.root / "objects.lock", os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(self, temp: Path, sha256: str) -> bool:
        """Move `temp` into place as object `sha256`, fresh (the storage GC only takes objects
        left alone for long). Returns False when it was already stored."""
        dest = self.path(sha256)
        with self._locked():
            try:
                os.utime(dest)
            except OSError:
                pass
            else:
                temp.unlink(missing_ok=True)
                return False
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.utime(temp)   # the time it is stored, not when its last byte arrived
            os.replace(temp, dest)
        return True

    def temp_files(self) -> list[Path]:
        tmp = self.root / "tmp"
        return sorted(p for p in tmp.iterdir() if p.is_file()) if tmp.is_dir() else []

    def objects(self) -> list[tuple[str, Path]]:
        """Every stored object as (sha256, path)."""
        objects = self.root / "objects"
        if not objects.is_dir():
            return []
        return sorted((p.name, p) for p in objects.glob("??/*") if _SHA256.match(p.name))

    def remove_if_idle(self, sha256: str, cutoff: float) -> int | None:
        """Remove object `sha256` if it was last stored or re-used before `cutoff` (a time);
        returns the bytes freed, or None when it is fresh or gone."""
        path = self.path(sha256)
        with self._locked():
            try:
                st = path.stat()
                if st.st_mtime >= cutoff:
                    return None
                path.unlink()
            except OSError:
                return None
        return st.st_size
