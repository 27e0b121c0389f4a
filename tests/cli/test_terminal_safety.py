"""Student-written text (notes, names, file names, error echoes, task titles) reaches the
terminal as plain text: Rich markup in it prints literally, escape sequences and bidi controls
never reach the output, and every command still succeeds.

The server is faked with httpx.MockTransport; Rich is forced to write a colour terminal's
escape codes, so a hyperlink or style that leaked from student text would be in the output.
"""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from grader_api import client as client_module
from grader_api.cli.main import app
from grader_api.cli.safe_text import for_rich, for_terminal

LINK = "[link=https://evil.example]click[/link]"
CLEAR = "\x1b[2J\x1b[Hall grades reset"
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
RLO = "evil\u202egnp.exe"
HOSTILE = (LINK, "[/]", CLEAR, OSC8, RLO, "\x9b2J", "[bold red]x")
FORBIDDEN = ("\x1b[2J", "\x1b]8;", "\x1b[H", "\u202e", "\x9b")


def _submission(text: str, status: str = "scored") -> dict:
    part = {"metrics": {"accuracy": 0.5, text: 0.25}, "n": 10, "primary": 0.5,
            "per_class": {text: {"accuracy": 0.5}, "cat": {"accuracy": 1.0}},
            "most_confused": [{"true": text, "predicted": "cat", "count": 3}],
            "undefined": [{"class": text, "metric": "recall", "reason": text}]}
    return {"id": 7, "task": text, "status": status, "note": text, "error": text, "created_at": text,
            "public": part, "model_stats": {"device": text, "autocast": text, "params": 10}}


def _server(text: str, status: str = "scored"):
    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path.removeprefix("/api/v1")
        if path == "/tasks":
            return httpx.Response(200, json={"tasks": [{"name": text, "title": text, "metric": text,
                                                         "accepts": [text], "deadline": text,
                                                         "daily_limit": 5, "submissions_left_today": text}]})
        if path.startswith("/tasks/") and path.endswith("/leaderboard"):
            return httpx.Response(200, json={"metric": text, "deadline": None, "rows": [
                {"rank": 1, "user": text, "score": 0.5, "entries": text, "submitted_at": text}]})
        if path.startswith("/tasks/"):
            return httpx.Response(200, json={"name": text, "higher_is_better": True})
        if path == "/me/submissions":
            return httpx.Response(200, json={"submissions": [
                {"id": 7, "note": text, "status": text, "created_at": text, "public_score": text}]})
        if path == "/me/submissions/diff":
            return httpx.Response(200, json={"metric": text, "primary": {"a": text, "b": 0.5, "delta": 0.1},
                                             "per_class": {text: {text: {"a": 0.1, "b": 0.2, "delta": 0.1}}}})
        if path.startswith("/submissions/"):
            return httpx.Response(200, json=_submission(text, status))
        if path == "/me":
            return httpx.Response(200, json={"name": text, "role": text})
        return httpx.Response(404, json={"detail": f"no such thing: {text}", "code": "not_found"})

    return handler


@pytest.fixture
def grade(monkeypatch, tmp_path):
    """`grade ARGS` against a fake server that puts `text` in every string field."""
    real = client_module.Client

    def run(text: str, *args: str, status: str = "scored"):
        transport = httpx.MockTransport(_server(text, status))
        monkeypatch.setattr(client_module, "Client",
                            lambda server, token, **kw: real(server, token, transport=transport, **kw))
        env = {"GRADE_CONFIG_DIR": str(tmp_path / "cfg"), "GRADE_SERVER": "http://127.0.0.1:9",
               "GRADE_TOKEN": "tok", "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "300"}
        return CliRunner().invoke(app, list(args), env=env)

    return run


def _assert_clean(result) -> None:
    for seq in FORBIDDEN:
        assert seq not in result.stdout and seq not in result.stderr, (seq, result.stdout)


def test_markup_close_tag_note_does_not_crash_grade_status(grade) -> None:
    r = grade("[/]", "status", "7")
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 0, r.stdout
    assert "note: [/]" in r.stdout


def test_link_markup_in_a_note_prints_literally_without_a_hyperlink(grade) -> None:
    r = grade(LINK, "status", "7")
    assert r.exit_code == 0, r.stdout
    assert f"note: {LINK}" in r.stdout
    assert "\x1b]8;" not in r.stdout


def test_raw_escape_sequences_in_a_note_never_reach_the_terminal(grade) -> None:
    for text in (CLEAR, OSC8, "\x9b2J"):
        r = grade(text, "status", "7")
        assert r.exit_code == 0, r.stdout
        _assert_clean(r)
        assert "all grades reset" in r.stdout or "click" in r.stdout or "2J" in r.stdout


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("args", [("status", "7"), ("submissions", "-t", "pets"), ("diff", "1", "2"),
                                  ("leaderboard", "-t", "pets"), ("tasks",), ("login", "--server",
                                                                               "http://127.0.0.1:9", "--token", "t")])
def test_every_command_prints_hostile_server_text_safely(grade, args, text) -> None:
    r = grade(text, *args)
    assert r.exit_code == 0, (r.exception, r.stdout, r.stderr)
    _assert_clean(r)
    if text in (LINK, "[/]", "[bold red]x"):
        assert text in r.stdout  # shown as written, not interpreted


def test_failure_reason_prints_literally_on_one_line(grade) -> None:
    r = grade(CLEAR + LINK + "\npoints: 100/100", "status", "7", status="failed")
    assert r.exit_code == 1
    _assert_clean(r)
    reason = next(line for line in r.stdout.splitlines() if "reason:" in line)
    assert reason.endswith(f"{for_terminal(CLEAR)}{LINK} points: 100/100")
    assert not any(line.startswith("points:") for line in r.stdout.splitlines())  # no forged line


def test_server_error_message_is_one_clean_line(grade, monkeypatch) -> None:
    real = client_module.Client
    transport = httpx.MockTransport(lambda req: httpx.Response(
        422, json={"detail": f"bad id {CLEAR}\nerror: forged", "code": "x", "line": 2, "column": 1}))
    monkeypatch.setattr(client_module, "Client", lambda s, t, **kw: real(s, t, transport=transport, **kw))
    r = CliRunner().invoke(app, ["status", "7"], env={"GRADE_SERVER": "http://127.0.0.1:9", "GRADE_TOKEN": "t"})
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1
    _assert_clean(r)


def test_helpers_remove_controls_and_escape_markup() -> None:
    assert for_terminal("a\x1b[2Jb\u202ec\td\ne\x00f\x7f") == "a\ufffd[2Jb\ufffdc d e\ufffdf\ufffd"
    assert for_terminal("plain · café → ★") == "plain · café → ★"
    assert for_rich("[/]") == "\\[/]" and for_rich(LINK).startswith("\\[link=")
