"""Split inputs prepared once per worker and handed to each sandbox without re-reading them.

A split's inputs file is copied once into the worker's private cache (keyed by path, mtime
and size) as a plain C-ordered .npy; each job gets a hard link to it (no copy) in its
read-only input dir, and the guest memory-maps it, so repeated evaluations share the page cache.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DTYPES = (np.uint8, np.float32)


@dataclass(frozen=True)
class PreparedInputs:
    path: Path
    shape: tuple[int, ...]
    dtype: str
    temporary: bool = False      # written for one call (an in-memory array): delete after


def _validated(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(f"{what}: expected inputs of shape (N, C, H, W), (N, H, W, C) or (N, H, W), found {arr.shape}")
    if arr.dtype not in _DTYPES:
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"{what}: expected uint8 or float inputs, found {arr.dtype}")
        arr = arr.astype(np.float32)
    return arr


def _load_array(path: Path) -> np.ndarray:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = z.files
            key = "inputs" if "inputs" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise ValueError(f"{path.name}: expected one array or one named 'inputs', found {names}")
            return z[key]
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _backing_file(arr: np.ndarray) -> Path | None:
    """The .npy file a memory-mapped array is exactly the whole of (as scoring.splits.load_inputs gives)."""
    name = getattr(arr, "filename", None)
    if not isinstance(arr, np.memmap) or not name or not str(name).endswith(".npy"):
        return None
    try:
        whole = np.load(name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    same = whole.shape == arr.shape and whole.dtype == arr.dtype and arr.offset == whole.offset
    return Path(name) if same and arr.flags.c_contiguous else None


class InputCache:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(mode=0o711, exist_ok=True)
        self._entries: dict[tuple[str, int, int], PreparedInputs] = {}
        self._lock = threading.Lock()

    def prepare(self, inputs: np.ndarray | Path) -> PreparedInputs:
        file = _backing_file(inputs) if isinstance(inputs, np.ndarray) else None
        if file is not None:
            inputs = file        # a memory-mapped split file: cache it by path like a Path
        if isinstance(inputs, np.ndarray):
            arr = np.ascontiguousarray(_validated(inputs, "inputs"))
            path = self.dir / f"array-{uuid.uuid4().hex}.npy"
            self._write(path, arr)
            return PreparedInputs(path, arr.shape, arr.dtype.str, temporary=True)
        src = Path(inputs).resolve()
        st = src.stat()
        key = (str(src), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit.path.exists():
                return hit
            arr = _validated(_load_array(src), src.name)
            path = self.dir / f"split-{uuid.uuid4().hex}.npy"
            self._write(path, np.ascontiguousarray(arr))
            for old_key in [k for k in self._entries if k[0] == key[0]]:   # stale versions
                self._entries.pop(old_key).path.unlink(missing_ok=True)
            prepared = PreparedInputs(path, tuple(arr.shape), arr.dtype.str)
            self._entries[key] = prepared
            return prepared

    @staticmethod
    def _write(path: Path, arr: np.ndarray) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.chmod(tmp, 0o444)          # the guest's uid may read it, never write it
        os.replace(tmp, path)

    @staticmethod
    def stage(prepared: PreparedInputs, dest: Path) -> None:
        """Hard link (no copy) into a job's input dir; copy across file systems."""
        try:
            os.link(prepared.path, dest)
        except OSError:
            shutil.copyfile(prepared.path, dest)
            os.chmod(dest, 0o444)

    def release(self, prepared: PreparedInputs) -> None:
        if prepared.temporary:
            prepared.path.unlink(missing_ok=True)
