"""A private production stack the resilience scenarios may break: their own PostgreSQL and
Redis servers on free loopback ports (never the machine's shared ones: scenarios stop and
restart them), the API under uvicorn and Celery workers, all as subprocesses we can SIGKILL.

Every process is started here and stopped here, by its own pid or process group.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.service.real_stack import REPO_ROOT, CeleryWorker

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} not ready after {timeout} s\n{tail}")
        time.sleep(0.1)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def missing_binaries() -> list[str]:
    """Names of the server programs this machine lacks (the suite skips, naming them)."""
    missing = []
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") and not shutil.which("pg_ctl"):
        missing.append("PostgreSQL server binaries (initdb, pg_ctl)")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    return missing


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name) or name


# --- PostgreSQL -----------------------------------------------------------------------------

class PgServer:
    """initdb + pg_ctl in a temp dir. As root, runs as the `postgres` OS user (initdb refuses root)."""

    def __init__(self):
        # Its own temp dir, not pytest's: pytest's tree is private to root, and the server runs
        # as `postgres`, which must be able to reach its data and socket directories.
        import tempfile

        self.root, self.port = Path(tempfile.mkdtemp(prefix="heldout-pg-")), free_port()
        self.data, self.sock, self.log = self.root / "pgdata", self.root / "pgsock", self.root / "pg.log"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def init(self) -> PgServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self._as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
            os.chmod(self.root, 0o755)
        # fsync off: a throwaway cluster; the restart scenario is a clean fast stop/start.
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        return self

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses={HOST} -c fsync=off "
                "-c max_connections=300 -c synchronous_commit=off")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                  "start")
        _wait(lambda: _port_open(self.port), 30, "PostgreSQL", self.log)

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


# --- Redis ------------------------------------------------------------------------------------

class RedisServer:
    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
        self.log = root / "redis.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # No persistence: a restart empties the broker, the harshest case for lost messages.
        cmd = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", str(self.root)]
        with open(self.log, "ab") as log:   # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: _port_open(self.port), 20, "Redis", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


# --- API and workers ----------------------------------------------------------------------------

@dataclass
class Proc:
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker's children die with it)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (prefork pool), in MB."""
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def _children(pid: int) -> list[int]:
    """Descendants of `pid`. Every thread's list: a child started from a thread other than the
    main one (the sandbox's warm spare, say) is listed under that thread only."""
    out = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = children.read_text().split()
        except OSError:
            continue
        for child in kids:
            out.append(int(child))
            out.extend(_children(int(child)))
    return out


def _spawn(cmd: list[str], env: dict, log_path: Path) -> Proc:
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed with the process
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    return Proc(proc, log_path)


@dataclass
class Stack:
    """The running stack. `env` is the environment every service process gets."""

    root: Path
    pg: PgServer
    redis: RedisServer
    env: dict[str, str]
    api_port: int = field(default_factory=free_port)
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    # API
    def start_api(self) -> Proc:
        cmd = [sys.executable, "-m", "uvicorn", "grader_api.app:create_app", "--factory", "--host", HOST,
               "--port", str(self.api_port), "--log-level", "warning", "--no-access-log"]
        self.api = _spawn(cmd, self.env, self.root / "api.log")
        try:
            _wait(self._api_up, 90, "uvicorn API", self.api.log_path)
        except BaseException:
            self.api.kill()
            raise
        return self.api

    def _api_up(self) -> bool:
        if self.api is not None and not self.api.alive():
            raise RuntimeError(f"API exited:\n{self.api.log_tail()}")
        try:
            return httpx.get(f"{self.base_url}/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # workers
    def start_worker(self, name: str | None = None, concurrency: int = 1) -> Proc:
        """A prefork Celery worker: prefork, not solo, because only prefork enforces time limits.
        `-A tests.resilience.hooks` is the real app plus a test-only delay (see hooks.py)."""
        name = name or f"w{len(self.workers) + 1}"
        prefix = self.env["HELDOUT_QUEUE_PREFIX"]
        log_path = self.root / f"worker-{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "tests.resilience.hooks", "worker", "--pool=prefork",
               f"--concurrency={concurrency}", "-Q", f"{prefix}cpu,{prefix}gpu", "-n", f"{name}-{prefix}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"]
        start = log_path.stat().st_size if log_path.exists() else 0
        proc = _spawn(cmd, self.env, log_path)

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"celery worker exited:\n{proc.log_tail()}")
            return b" ready." in log_path.read_bytes()[start:]

        try:
            _wait(ready, 90, "celery worker", log_path)
        except BaseException:
            proc.kill()
            raise
        self.workers.append(proc)
        return proc

    def worker_view(self, proc: Proc) -> CeleryWorker:
        return CeleryWorker(proc.proc, proc.log_path)

    def stop_all(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers.clear()
        if self.api is not None:
            self.api.kill()
