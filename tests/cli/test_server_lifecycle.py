"""`grade serve` and `grade worker` as processes: what they say about the model sandbox at start,
what they refuse to start with, and what they leave behind after a normal SIGTERM stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.model_eval.helpers import save_torchscript
from tests.service.helpers import CLASSES, ids_for, task_yaml
from worker.sandbox.isolation import sandbox_status

REPO_ROOT = Path(__file__).resolve().parents[2]
N = 16


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, len(CLASSES))

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_course(var_dir: Path) -> dict[str, str]:
    """A split with inputs and two users in an embedded database under `var_dir`; their tokens."""
    from grader_api.config import Settings
    from grader_api.db import dispose_database, get_database, migrate
    from grader_api.services.users import create_user
    from scoring.splits import write_split

    settings = Settings(var_dir=var_dir, database_url=None, redis_url=None)
    rng = np.random.default_rng(0)
    write_split(settings.effective_data_root / "pets/test", rng.integers(0, len(CLASSES), N), ids=ids_for(N),
                inputs=rng.integers(0, 256, (N, 3, 8, 8), dtype=np.uint8), seed=1)
    url = settings.effective_database_url
    migrate(url)
    with get_database(url).transaction() as s:
        tokens = {name: create_user(s, name, role)[1] for name, role in (("prof", "instructor"), ("alice", "student"))}
    dispose_database(url)
    return tokens


def _sandbox_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob("heldout-sandbox-*"))


def _wait_scored(client: httpx.Client, token: str, sid: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/submissions/{sid}", headers={"Authorization": f"Bearer {token}"}).json()
        if body["status"] in ("scored", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"submission {sid} not graded after {timeout} s")


@pytest.mark.slow
def test_grade_serve_stopped_with_sigterm_removes_its_sandbox_runtime_dir(tmp_path):
    if sandbox_status().mode == "none":
        pytest.skip("no sandbox on this machine")
    tokens = _model_course(tmp_path / "var")
    sandbox_parent = tmp_path / "sandbox"
    sandbox_parent.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELDOUT_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(HELDOUT_VAR_DIR=str(tmp_path / "var"), HELDOUT_SANDBOX_DIR=str(sandbox_parent),
               HELDOUT_SWEEPER_ENABLED="false", HELDOUT_MODEL_DEVICE="cpu", PYTHONPATH=str(REPO_ROOT))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "grader_api.cli.main", "serve", "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/api/v1/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            extra = "accepts: [predictions, model]\nmodel_time_limit_s: 60\n"
            r = client.post("/api/v1/tasks", content=task_yaml(extra=extra),
                            headers={"Authorization": f"Bearer {tokens['prof']}", "Content-Type": "application/yaml"})
            assert r.status_code == 201, r.text
            model = save_torchscript(TinyNet().eval(), tmp_path / "model.pt", torch.zeros(1, 3, 8, 8))
            r = client.post("/api/v1/tasks/pets/submissions", headers={"Authorization": f"Bearer {tokens['alice']}"},
                            files={"file": ("model.pt", model.read_bytes(), "application/octet-stream")})
            assert r.status_code == 202, r.text
            body = _wait_scored(client, tokens["prof"], r.json()["id"])
            assert body["status"] == "scored", body
        # The pool of the in-process worker: its cached inputs and the next job's warm spare.
        assert [p.name.split("-")[2] for p in _sandbox_dirs(sandbox_parent)] == [str(proc.pid)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _sandbox_dirs(sandbox_parent) == [], log.read_text()[-3000:]
    assert f"model sandbox: {sandbox_status().mode}" in log.read_text()


# --- fallback mode: refused while the sandbox's user could read the service's data ----------------

def _fallback_available() -> bool:
    from worker.sandbox import isolation

    isolation.prefer_fallback(True)
    try:
        return isolation.sandbox_status().mode == "fallback"
    finally:
        isolation.prefer_fallback(False)


needs_fallback = pytest.mark.skipif(os.geteuid() != 0, reason="the fallback sandbox needs root")


@pytest.fixture
def restore_process_state():
    """The commands set the umask and the sandbox mode of this process: put both back."""
    from worker.sandbox import isolation

    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)
    isolation.prefer_fallback(False)


@needs_fallback
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_fallback_mode_refuses_to_start_while_nobody_can_read_the_labels(command, world_traversable, monkeypatch,
                                                                        restore_process_state):
    import uvicorn
    from typer.testing import CliRunner

    import grader_api.db
    from grader_api.cli.main import app
    from grader_api.config import get_settings
    from scoring.splits import write_split

    if not _fallback_available():
        pytest.skip("unshare/setpriv cannot run here")
    _python_usable_by_nobody(monkeypatch)
    var = world_traversable / "var"
    split = var / "data" / "pets" / "test"
    write_split(split, np.arange(4) % 2, seed=0)
    for path in (var, var / "data", var / "data" / "pets", split):
        os.chmod(path, 0o755)
    os.chmod(split / "labels.npy", 0o644)         # as a deployment made before this check might have
    for key in [k for k in os.environ if k.startswith("HELDOUT_") or k in ("DATABASE_URL", "REDIS_URL")]:
        monkeypatch.delenv(key)

    def started(*_a, **_k):
        raise AssertionError("started although nobody can read the labels")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(grader_api.db, "migrate", started)
    monkeypatch.setenv("HELDOUT_VAR_DIR", str(var))
    monkeypatch.setenv("HELDOUT_SANDBOX_MODE", "fallback")
    if command == "worker":
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")     # never reached: refused before
        get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, [command, "--port", str(_free_port())] if command == "serve" else [command])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "model sandbox: fallback" in result.output
    assert "HELDOUT_SANDBOX_MODE=fallback runs models as nobody" in result.output
    assert str(split / "labels.npy") in result.output


@needs_fallback
def test_fallback_mode_starts_when_the_data_is_owner_only(world_traversable, restore_process_state, monkeypatch):
    """Files the service created itself pass the check (the worker then goes on to Celery)."""
    from grader_api.cli import server
    from grader_api.config import Settings
    from scoring.splits import write_split

    if not _fallback_available():
        pytest.skip("unshare/setpriv cannot run here")
    _python_usable_by_nobody(monkeypatch)
    var = world_traversable / "var"
    write_split(var / "data" / "pets" / "test", np.arange(4) % 2, seed=0)
    for path in (var, var / "data", var / "data" / "pets"):
        os.chmod(path, 0o755)
    server._check_sandbox(Settings(var_dir=var, database_url=None, redis_url=None, sandbox_mode="fallback"))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery
def test_grade_worker_stopped_with_sigterm_removes_its_pools_runtime_dirs(tmp_path):
    """Celery's pool processes end with os._exit, past any atexit cleanup: `grade worker` removes
    their runtime directories once they are gone."""
    import secrets

    from fastapi.testclient import TestClient

    from grader_api.app import create_app
    from grader_api.config import Settings
    from scoring.splits import write_split
    from tests.service import real_stack
    from tests.service.conftest import seed_users

    if sandbox_status().mode == "none":
        pytest.skip("no sandbox on this machine")
    real_stack.require_postgres()
    real_stack.require_redis()
    sandbox_parent = tmp_path / "sandbox"
    sandbox_parent.mkdir()
    prefix = f"heldout-test-{secrets.token_hex(4)}-"
    with real_stack.throwaway_database() as db_url:
        settings = Settings(var_dir=tmp_path / "var", database_url=db_url, redis_url=real_stack.REDIS_URL,
                            queue_prefix=prefix, sweeper_enabled=False,
                            rate_limit="10000/minute", upload_rate_limit="10000/minute")
        rng = np.random.default_rng(0)
        write_split(settings.effective_data_root / "pets/test", rng.integers(0, len(CLASSES), N), ids=ids_for(N),
                    inputs=rng.integers(0, 256, (N, 3, 8, 8), dtype=np.uint8), seed=1)
        env = {**real_stack.worker_env(settings), "HELDOUT_SANDBOX_DIR": str(sandbox_parent),
               "HELDOUT_MODEL_DEVICE": "cpu"}
        log = tmp_path / "worker.log"
        try:
            with TestClient(create_app(settings)) as client:
                tokens = seed_users(client.app)
                extra = "accepts: [predictions, model]\nmodel_time_limit_s: 60\n"
                r = client.post("/api/v1/tasks", content=task_yaml(extra=extra),
                                headers={"Authorization": f"Bearer {tokens['prof']}",
                                         "Content-Type": "application/yaml"})
                assert r.status_code == 201, r.text
                with open(log, "wb") as out:
                    proc = subprocess.Popen([sys.executable, "-m", "grader_api.cli.main", "worker", "--no-sweeper"],
                                            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                try:
                    model = save_torchscript(TinyNet().eval(), tmp_path / "model.pt", torch.zeros(1, 3, 8, 8))
                    r = client.post("/api/v1/tasks/pets/submissions",
                                    headers={"Authorization": f"Bearer {tokens['alice']}"},
                                    files={"file": ("model.pt", model.read_bytes(), "application/octet-stream")})
                    assert r.status_code == 202, r.text
                    body = _wait_scored(client, tokens["prof"], r.json()["id"])
                    assert body["status"] == "scored", (body, log.read_text()[-3000:])
                    assert len(_sandbox_dirs(sandbox_parent)) == 1      # the Celery pool process's
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                finally:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
        finally:
            real_stack.clear_redis_prefix(prefix)
    assert _sandbox_dirs(sandbox_parent) == [], log.read_text()[-3000:]
    assert f"model sandbox: {sandbox_status().mode}" in log.read_text()


def _python_usable_by_nobody(monkeypatch) -> None:
    """These tests are about the data check; whether nobody can run this Python (not the case for a
    venv under a 0700 home, as on CI) is tested in tests/model_eval/test_sandbox_modes.py."""
    monkeypatch.setattr("worker.sandbox.exposure.guest_python_problem", lambda *_a, **_k: None)
