"""`grade tasks` and `grade leaderboard` word time left as the web pages do (scoring.deadlines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from typer.testing import CliRunner

from grader_api import client as client_module
from grader_api.cli.main import app
from grader_api.client import Client as RealClient


def _grade(monkeypatch, tmp_path, task: dict, *args: str) -> str:
    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path.removeprefix("/api/v1")
        if path == "/tasks":
            return httpx.Response(200, json={"tasks": [task]})
        if path.endswith("/leaderboard"):
            return httpx.Response(200, json={"metric": "accuracy", "rows": []})
        return httpx.Response(200, json=task)

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(client_module, "Client",
                        lambda server, token, **kw: RealClient(server, token, transport=transport, **kw))
    env = {"GRADE_CONFIG_DIR": str(tmp_path / "cfg"), "GRADE_SERVER": "http://127.0.0.1:9",
           "GRADE_TOKEN": "tok", "COLUMNS": "300", "NO_COLOR": "1"}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _task(deadline: datetime, closes_at: datetime | None) -> dict:
    return {"name": "pets", "title": "Pets", "metric": "accuracy", "accepts": ["predictions"],
            "daily_limit": 5, "submissions_left_today": 5, "open": True,
            "deadline": deadline.isoformat(), "closes_at": closes_at.isoformat() if closes_at else None}


def test_tasks_and_leaderboard_name_the_late_day_window(monkeypatch, tmp_path):
    # 30 s of slack: the minutes shown do not tick over while the test runs.
    now = datetime.now(UTC)
    task = _task(now - timedelta(hours=1), now + timedelta(hours=5, minutes=30, seconds=30))
    assert "late days only: 5h 30m left" in _grade(monkeypatch, tmp_path, task, "tasks")
    board = _grade(monkeypatch, tmp_path, task, "leaderboard", "--task", "pets")
    assert "(late days only: 5h 30m left)" in board


def test_before_the_deadline_and_after_late_days(monkeypatch, tmp_path):
    now = datetime.now(UTC)
    before = _task(now + timedelta(days=3, hours=2, seconds=30), now + timedelta(days=5))
    assert "3d 2h left" in _grade(monkeypatch, tmp_path, before, "tasks")
    over = _task(now - timedelta(days=2), now - timedelta(days=1))
    assert "(closed)" in _grade(monkeypatch, tmp_path, over, "leaderboard", "--task", "pets")
