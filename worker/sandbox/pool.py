"""The worker's sandbox runtime: a private directory, the input cache and one warm spare.

Starting Python and importing torch in a fresh sandbox takes 1–3 s. Each sandbox serves one job,
so after a job we start the next sandbox right away and let it import while the worker is idle;
the next job then finds it ready. Isolation is unchanged: one process tree per job.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from worker.sandbox.errors import SandboxUnavailable
from worker.sandbox.inputs import InputCache
from worker.sandbox.isolation import prefer_fallback, sandbox_status
from worker.sandbox.process import SandboxProcess

_DIR_PREFIX = "heldout-sandbox-"


def remove_dead_pools(parent: Path) -> list[Path]:
    """Remove runtime directories left by worker processes that no longer exist.

    A worker killed with SIGKILL cannot clean up; its directory (a copy of the split's inputs,
    the last job's files) would stay until the machine is wiped. The owner's pid is in the
    name; a directory whose owner is alive, or that is not ours, is left alone.
    """
    removed = []
    for path in parent.glob(f"{_DIR_PREFIX}*-*"):
        pid_text = path.name[len(_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            if path.lstat().st_uid != os.geteuid() or not path.is_dir() or path.is_symlink():
                continue
            os.kill(int(pid_text), 0)
            continue                                  # owner alive (or a reused pid): leave it
        except ProcessLookupError:
            pass
        except (PermissionError, OSError):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def runtime_parent(base_dir: Path | None) -> Path:
    """Where the pools' runtime directories live (the setting `sandbox_dir`, else the system temp)."""
    return Path(tempfile.gettempdir()) if base_dir is None else Path(base_dir)


class SandboxPool:
    def __init__(self, base_dir: Path | None = None, warm_spare: bool = True):
        status = sandbox_status()
        self.mode, self.mode_reason = status.mode, status.reason
        parent = runtime_parent(base_dir)
        remove_dead_pools(parent)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=parent))
        os.chmod(self.dir, 0o711)
        self.inputs = InputCache(self.dir / "inputs")
        self.warm_spare = warm_spare
        self._spares: dict[tuple[str, int, int], SandboxProcess] = {}
        self._lock = threading.Lock()

    def take(self, device: str, threads: int, output_bytes: int) -> SandboxProcess:
        """A started sandbox for one job: the warm spare if there is a live one, else a new one.

        `output_bytes`: what the job may write to its output directory (SandboxLimits.max_file_bytes).
        """
        if self.mode == "none":
            raise SandboxUnavailable(f"model files cannot be evaluated on this worker: {self.mode_reason}")
        with self._lock:
            spare = self._spares.pop((device, threads, output_bytes), None)
        if spare is not None and spare.alive:
            return spare
        if spare is not None:
            spare.close()
        return SandboxProcess(self.dir, self.mode, threads, device, output_bytes)

    def refill(self, device: str, threads: int, output_bytes: int) -> None:
        """Start the next job's sandbox now (non-blocking: it imports in the background)."""
        if not self.warm_spare or self.mode == "none":
            return
        key = (device, threads, output_bytes)
        with self._lock:
            if key in self._spares:
                return
            self._spares[key] = SandboxProcess(self.dir, self.mode, threads, device, output_bytes)

    def wait_warm(self, timeout: float = 120.0) -> None:
        """Block until every spare has finished importing (benchmarks, tests)."""
        with self._lock:
            spares = list(self._spares.values())
        for spare in spares:
            spare.wait_ready(timeout)

    def close(self) -> None:
        with self._lock:
            spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            spare.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SandboxPool:
    """The worker process's pool, created on first use and cleaned up at exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SandboxPool()
            atexit.register(_pool.close)
        return _pool


def configure(base_dir: Path | None = None, warm_spare: bool = True, *, skip_bwrap: bool = False) -> SandboxPool:
    """Replace the worker's pool (e.g. a runtime dir on fast local disk, or no warm spare)."""
    prefer_fallback(skip_bwrap)
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
        _pool = SandboxPool(base_dir=base_dir, warm_spare=warm_spare)
        atexit.register(_pool.close)
        return _pool

