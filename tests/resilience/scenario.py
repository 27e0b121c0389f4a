"""Small building blocks the scenarios share: sending submissions into a ledger, waiting for a
worker to be mid-grading."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.resilience.audit import Ledger
from tests.resilience.course import TaskHandle, post_file


def answer_kind(resp: httpx.Response | None, exc: Exception | None = None) -> str:
    if exc is not None:
        return f"conn_error:{type(exc).__name__}"
    return str(resp.status_code)


def send(client: httpx.Client, token: str, task: TaskHandle, ledger: Ledger, note: str, *, seed: int,
         filename: str = "preds.csv", timeout: float = 60) -> httpx.Response | None:
    """Upload one CSV (distinct bytes per seed) and note the answer; never raises on transport errors."""
    content = task.csv(0.5 + (seed % 40) / 100, seed)
    try:
        r = post_file(client, token, task.name, content, filename=filename, note=note, timeout=timeout)
    except httpx.HTTPError as exc:
        ledger.add(note, content, answer_kind(None, exc))
        return None
    ledger.add(note, content, answer_kind(r), r.json().get("id") if r.status_code == 202 else None)
    return r


def wait_marked(mark_dir: Path, sid: int, timeout: float = 30) -> None:
    """Block until a worker has started grading `sid` (hooks.py drops the mark)."""
    deadline = time.monotonic() + timeout
    while not (mark_dir / f"started-{sid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker started grading submission {sid} within {timeout} s")
        time.sleep(0.05)
