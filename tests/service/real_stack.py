"""The production stack for tests: a throwaway PostgreSQL database, an isolated Redis
namespace (own db number, unique queue/key prefix) and a real `celery worker` subprocess.

Server addresses come from HELDOUT_TEST_POSTGRES (a SQLAlchemy URL of an admin database) and
HELDOUT_TEST_REDIS; the defaults are this project's CI servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import databases

PG_ADMIN_URL = os.environ.get("HELDOUT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HELDOUT_TEST_REDIS", "redis://127.0.0.1:6379/13")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _where(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"{u.host or 'localhost'}:{u.port or ''}"


def require_postgres() -> None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {_where(PG_ADMIN_URL)} ({type(exc).__name__}); "
                    "start it (see .ci/run) or set HELDOUT_TEST_POSTGRES")


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {_where(REDIS_URL)} ({type(exc).__name__}); "
                    "start it (see .ci/run) or set HELDOUT_TEST_REDIS")


@contextmanager
def throwaway_database(*, migrated: bool = False):
    """A database heldout_test_<random> on the test server: its URL; dropped afterwards, even if
    tests fail. Empty, or with `migrated` a copy of the schema migrated once per session."""
    template = databases.migrated_postgres_template(PG_ADMIN_URL) if migrated else None
    with databases.throwaway_database(PG_ADMIN_URL, template=template) as url:
        yield url


def clear_redis_prefix(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


@dataclass
class CeleryWorker:
    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def worker_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELDOUT_")}
    env.update({
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "HELDOUT_QUEUE_PREFIX": settings.queue_prefix, "HELDOUT_VAR_DIR": str(settings.var_dir),
        "HELDOUT_MAX_ATTEMPTS": str(settings.max_attempts), "PYTHONPATH": str(REPO_ROOT),
    })
    return env


@contextmanager
def celery_worker(settings, log_path: Path, *, pool: str = "solo", concurrency: int = 1, name: str = "w1"):
    """A `celery worker` subprocess consuming this settings' cpu and gpu queues."""
    queues = f"{settings.queue_name('cpu')},{settings.queue_name('gpu')}"
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", f"--pool={pool}",
           f"--concurrency={concurrency}", "-Q", queues, "-n", f"{name}-{settings.queue_prefix}@%h",
           "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"]
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    worker = CeleryWorker(proc, log_path)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready after 60 s:\n{worker.log_tail()}")
            time.sleep(0.1)
        yield worker
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
