"""One private stack per test session (see stack.py), users seeded in its database, and a
fixture that puts the stack back together (servers up, one worker, API up) after a scenario
broke it, so scenarios do not depend on each other's order."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.resilience import stack as stack_mod
from tests.service.real_stack import REPO_ROOT

# Short timings so recoveries fit in CI; their ratios are the production ones: the hard time
# limit stays below the broker's visibility timeout and below the sweeper's "running too long".
TIMINGS = {
    "HELDOUT_TASK_TIME_LIMIT_S": "20",      # room for a sandbox cold start plus an 8 s model limit
    "HELDOUT_VISIBILITY_TIMEOUT_S": "50",
    "HELDOUT_STUCK_RUNNING_AFTER_S": "25",
    "HELDOUT_STUCK_QUEUED_AFTER_S": "20",
    "HELDOUT_OUTBOX_GRACE_S": "1",
    "HELDOUT_SWEEP_INTERVAL_S": "1",
    "HELDOUT_MAX_ATTEMPTS": "3",
}


@dataclass
class Env:
    stack: stack_mod.Stack
    db_url: str
    prof: str
    alice: str
    bob: str
    client: httpx.Client
    # The rest of the authorization matrix's cast: a TA and a spare student (whose tokens the
    # matrix may revoke) of the same course, and an instructor, a TA and a student of another one.
    others: dict[str, str] = field(default_factory=dict)

    @property
    def data_root(self) -> Path:
        return Path(self.stack.env["HELDOUT_VAR_DIR"]) / "data"

    @property
    def storage(self) -> Path:
        return Path(self.stack.env["HELDOUT_VAR_DIR"]) / "storage"

    def heal(self) -> None:
        """Servers running, exactly one worker, API answering."""
        s = self.stack
        if s.redis.proc is None or s.redis.proc.poll() is not None:
            s.redis.start()
        if not stack_mod._port_open(s.pg.port):
            s.pg.start()
        for w in list(s.workers):
            if not w.alive():
                s.workers.remove(w)
        while len(s.workers) > 1:
            s.workers.pop().kill()
        if not s.workers:
            s.start_worker()
        if s.api is None or not s.api.alive():
            s.start_api()


def _seed_users(db_url: str) -> dict[str, str]:
    """prof, alice, bob, tara (TA) and victim in the default course; oprof, ota and olga in 'other'."""
    from grader_api.db import get_database
    from grader_api.services.courses import create_course
    from grader_api.services.users import create_user

    tokens = {}
    with get_database(db_url).transaction() as s:
        for name, role in (("prof", "instructor"), ("alice", "student"), ("bob", "student"), ("tara", "ta"),
                           ("victim", "student")):
            tokens[name] = create_user(s, name, role)[1]
        other = create_course(s, "other", "Another course", "Europe/Berlin")
        for name, role in (("oprof", "instructor"), ("ota", "ta"), ("olga", "student")):
            tokens[name] = create_user(s, name, role, course=other)[1]
    return tokens


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    missing = stack_mod.missing_binaries()
    if missing:
        pytest.skip("resilience suite needs " + " and ".join(missing))
    root = tmp_path_factory.mktemp("resilience")
    pg = stack_mod.PgServer()
    redis = stack_mod.RedisServer(root / "redis")
    st = None
    try:   # everything started is stopped again, whichever step fails
        pg.init()
        pg.start()
        redis.start()
        db_url = pg.create_database("heldout")
        var = root / "var"
        (var / "marks").mkdir(parents=True)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HELDOUT_")}
        environ.update(TIMINGS)
        environ.update({
            "DATABASE_URL": db_url, "REDIS_URL": redis.url, "HELDOUT_VAR_DIR": str(var),
            "HELDOUT_QUEUE_PREFIX": f"res-{secrets.token_hex(3)}-", "HELDOUT_SWEEPER_ENABLED": "true",
            "HELDOUT_RATE_LIMIT": "1000000/minute", "HELDOUT_UPLOAD_RATE_LIMIT": "1000000/minute",
            "HELDOUT_AUTH_FAILURE_LIMIT": "1000000/minute",
            "HELDOUT_MODEL_DEVICE": "cpu", "HELDOUT_DATASETS_DIR": str(REPO_ROOT / "datasets"),
            "HELDOUT_TEST_MARK_DIR": str(var / "marks"), "PYTHONPATH": str(REPO_ROOT),
            "HELDOUT_LOG_LEVEL": "WARNING",
        })
        st = stack_mod.Stack(root, pg, redis, environ)
        st.start_api()  # runs the migrations
        tokens = _seed_users(db_url)
        st.start_worker()
        with httpx.Client(base_url=st.base_url, timeout=60) as client:
            yield Env(st, db_url, tokens["prof"], tokens["alice"], tokens["bob"], client,
                      {k: v for k, v in tokens.items() if k not in ("prof", "alice", "bob")})
    finally:
        if st is not None:
            st.stop_all()
        from grader_api.db import dispose_database

        try:
            dispose_database(pg.url("heldout"))
        except Exception:
            pass
        redis.stop()
        pg.stop("immediate")
        pg.remove()


@pytest.fixture
def healthy(env):
    """The stack as a scenario expects to find it; healed again afterwards for the next one."""
    env.heal()
    yield env
    env.heal()
