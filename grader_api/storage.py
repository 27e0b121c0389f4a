"""Content-addressed local file storage for uploads.

Files are named by the sha256 of their bytes (`objects/ab/abcdef…`), never by anything the
client sent. Uploads land first in `tmp/` (same filesystem) and are moved into place with an
atomic rename, so a reader never sees a half-written object.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> None:
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

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

    def put(self, temp: Path, sha256: str) -> bool:
        """Move `temp` into place as object `sha256`. Returns False when it was already stored."""
        dest = self.path(sha256)
        if dest.exists():
            temp.unlink(missing_ok=True)
            try:
                os.utime(dest)  # fresh again: storage GC only takes objects left alone for long
            except OSError:
                pass
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
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

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
