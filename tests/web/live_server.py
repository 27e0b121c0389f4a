"""A real heldout server in a subprocess (`grade serve`, embedded default: SQLite, local
storage, in-process worker) on 127.0.0.1 and a free port, with its own temporary var dir.

Used by the CLI end-to-end tests and the browser tests: what they drive is exactly what a
student runs, over real HTTP.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from tests.support.databases import copy_migrated_sqlite

REPO = Path(__file__).resolve().parents[2]
# Browser tests: the system Chromium, driven by Playwright, and where their screenshots go.
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-output" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CLASSES = ("cat", "dog", "bird")
N_ITEMS = 60


@dataclass
class LiveServer:
    url: str
    var_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    labels: np.ndarray | None = None
    log: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELDOUT_", "GRADE_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(HELDOUT_VAR_DIR=str(var_dir), HELDOUT_DATASETS_DIR=str(REPO / "datasets"),
               HELDOUT_RATE_LIMIT="100000/minute", HELDOUT_UPLOAD_RATE_LIMIT="100000/minute",
               HELDOUT_LOG_LEVEL="WARNING", **extra)
    return env


def ids(n: int = N_ITEMS) -> list[str]:
    return [f"item{i:03d}" for i in range(n)]


def seed_course(var_dir: Path) -> tuple[dict[str, str], np.ndarray]:
    """Users prof/alice/bob and three tasks on one small split: `pets` (open, 10 a day),
    `pets-limited` (1 a day), `pets-closed` (deadline passed), in a database that is a copy of
    the schema migrated once per session (start-up finds it at head). Returns (tokens, labels)."""
    from sqlalchemy.engine import make_url

    from grader_api.config import Settings
    from grader_api.db import get_database
    from grader_api.services.tasks import CourseOptions, create_task
    from grader_api.services.users import create_user
    from scoring.splits import write_split

    settings = Settings(var_dir=var_dir, database_url=None, redis_url=None, datasets_dir=REPO / "datasets")
    settings.ensure_dirs()
    labels = np.random.default_rng(0).integers(0, len(CLASSES), N_ITEMS)
    write_split(settings.effective_data_root / "pets" / "test", labels, ids=ids(), seed=0, overwrite=True)
    url = settings.effective_database_url
    copy_migrated_sqlite(Path(make_url(url).database))
    db = get_database(url)
    tokens: dict[str, str] = {}
    with db.transaction() as s:
        for name, role in (("prof", "instructor"), ("alice", "student"), ("bob", "student")):
            tokens[name] = create_user(s, name, role)[1]
        from tests.service.helpers import set_display_names

        set_display_names(s)
        past = datetime.now(UTC) - timedelta(days=3)
        for name, opts in (("pets", CourseOptions(daily_limit=10, deadline=datetime.now(UTC) + timedelta(days=5))),
                           ("pets-limited", CourseOptions(daily_limit=1)),
                           ("pets-closed", CourseOptions(deadline=past, late_days=0))):
            create_task(s, settings, task_yaml(name), opts)
    from grader_api.db import dispose_database

    dispose_database(url)
    return tokens, labels


def task_yaml(name: str) -> str:
    return (f"name: {name}\ntitle: Pets ({name})\nkind: classification\nclasses: [{', '.join(CLASSES)}]\n"
            "metric: accuracy\nsplit: pets/test\npublic_fraction: 0.5\nmax_upload_mb: 1\n"
            "points: {kind: threshold, max_points: 10, bar: 0.9, baseline: 0.34}\n")


def predictions_csv(labels: np.ndarray, accuracy: float, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    pred = labels.copy()
    wrong = rng.random(len(labels)) > accuracy
    pred[wrong] = (pred[wrong] + rng.integers(1, len(CLASSES), int(wrong.sum()))) % len(CLASSES)
    out = io.StringIO()
    out.write("id,label\n")
    for i, p in zip(ids(len(labels)), pred, strict=True):
        out.write(f"{i},{CLASSES[p]}\n")
    return out.getvalue().encode()


@contextmanager
def running_server(var_dir: Path, *, demo: bool = False, timeout: float = 120.0) -> Iterator[LiveServer]:
    """Start `grade serve` and wait for /api/v1/health; stop it (its process group) afterwards."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    log = var_dir.parent / f"server-{port}.log"
    cmd = [sys.executable, "-m", "grader_api.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if demo:
        cmd.append("--demo")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=server_env(var_dir), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"grade serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/api/v1/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"grade serve did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        server = LiveServer(url=url, var_dir=var_dir, log=log)
        if demo:
            server.tokens = dict(re.findall(r"^\s+(\w+)\s+\((?:instructor|student)\): (\S+)$",
                                            log.read_text(), flags=re.M))
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def wait_scored(url: str, token: str, task: str, count: int, timeout: float = 60.0) -> None:
    """Wait until `count` of the user's submissions to `task` are scored or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/v1/me/submissions", params={"task": task},
                      headers={"Authorization": f"Bearer {token}"}, timeout=5)
        rows = r.json().get("submissions", [])
        if len([x for x in rows if x["status"] in ("scored", "failed")]) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{task}: fewer than {count} submissions graded in {timeout} s")
