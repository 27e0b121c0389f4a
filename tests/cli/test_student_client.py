"""The Python client maps every HTTP failure to a typed error carrying the server's message,
and the config store keeps the token in a 0600 file that the environment can override."""

from __future__ import annotations

import json
import stat

import httpx
import pytest

from grader_api import client as c
from grader_api.cli import config_store


def make(handler, slept: list | None = None) -> c.Client:
    sleep = slept.append if slept is not None else (lambda s: None)
    return c.Client("http://127.0.0.1:9", "tok", transport=httpx.MockTransport(handler), sleep=sleep)


def envelope(status: int, detail: str, code: str, **kw) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail, "code": code, "line": kw.get("line"),
                                        "column": kw.get("column")})


@pytest.mark.parametrize(
    ("status", "code", "detail", "exc"),
    [
        (401, "unauthorized", "invalid or revoked token", c.AuthError),
        (429, "daily_limit", "daily limit of 5 submissions reached", c.QuotaExceeded),
        (403, "task_closed", "task cifar10 closed on 2025-01-01", c.TaskClosed),
        (409, "not_scored", "submission 4 is queued, not scored", c.ClientError),
        (403, "forbidden", "the private board is hidden until the deadline", c.PermissionDenied),
        (404, "not_found", "submission not found", c.NotFound),
        (422, "wrong_header", "expected header id,label", c.ValidationFailed),
        (413, "too_large", "file exceeds 64 MB", c.ValidationFailed),
        (503, "split_unavailable", "split not available", c.ServerError),
    ],
)
def test_error_mapping(status, code, detail, exc) -> None:
    cl = make(lambda req: envelope(status, detail, code, line=1, column=2))
    with pytest.raises(exc) as info:
        cl.me()
    assert str(info.value).endswith(detail)
    assert info.value.status == status and info.value.code == code and info.value.line == 1


def test_unreachable_is_one_line() -> None:
    def boom(req):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(c.ServerUnreachable, match="cannot reach http://127.0.0.1:9: .*refused"):
        make(boom).tasks()


def test_not_a_heldout_server() -> None:
    cl = make(lambda req: httpx.Response(200, text="<html>", headers={"content-type": "text/html"}))
    with pytest.raises(c.ServerUnreachable, match="did not answer like a heldout server"):
        cl.me()


def test_submit_sends_multipart_with_note_and_reports_progress(tmp_path) -> None:
    f = tmp_path / "preds.csv"
    f.write_bytes(b"id,label\n" + b"".join(b"%d,1\n" % i for i in range(50_000)))
    seen: dict = {}

    def handler(req: httpx.Request) -> httpx.Response:
        body = req.read()
        seen.update(path=req.url.path, auth=req.headers["authorization"], body=body,
                    length=req.headers.get("content-length"))
        return httpx.Response(202, json={"id": 7, "status": "queued"})

    progress: list[tuple[int, int]] = []
    out = make(handler).submit(f, "cifar10", "+BatchNorm", progress=lambda s, t: progress.append((s, t)))
    assert out == {"id": 7, "status": "queued"}
    assert seen["path"] == "/api/v1/tasks/cifar10/submissions" and seen["auth"] == "Bearer tok"
    assert b'name="note"' in seen["body"] and b"+BatchNorm" in seen["body"] and b"49999,1" in seen["body"]
    assert progress[-1][0] == f.stat().st_size == progress[-1][1] and len(progress) > 2
    assert seen["length"] is not None  # Content-Length known, no chunked upload


def test_wait_polls_until_final(monkeypatch) -> None:
    monkeypatch.setattr(c.time, "sleep", lambda s: None)
    states = iter(["queued", "running", "running", "scored"])
    statuses: list[str] = []
    cl = make(lambda req: httpx.Response(200, json={"id": 3, "status": next(states)}))
    out = cl.wait(3, on_status=lambda s: statuses.append(s["status"]))
    assert out["status"] == "scored" and statuses == ["queued", "running", "scored"]


def test_wait_times_out(monkeypatch) -> None:
    monkeypatch.setattr(c.time, "sleep", lambda s: None)
    cl = make(lambda req: httpx.Response(200, json={"id": 3, "status": "queued"}))
    with pytest.raises(c.WaitTimeout, match="grade status 3"):
        cl.wait(3, timeout=0)


def test_config_file_is_private_and_env_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADE_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("GRADE_SERVER", raising=False)
    monkeypatch.delenv("GRADE_TOKEN", raising=False)
    assert config_store.load().source == "none"
    path = config_store.save("127.0.0.1:8000/", "secret-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"server": "http://127.0.0.1:8000", "token": "secret-token"}
    creds = config_store.load()
    assert (creds.server, creds.token, creds.source) == ("http://127.0.0.1:8000", "secret-token", "file")
    monkeypatch.setenv("GRADE_TOKEN", "from-env")
    creds = config_store.load()
    assert (creds.token, creds.source) == ("from-env", "env+file")
    monkeypatch.setenv("GRADE_SERVER", "http://127.0.0.1:9000")
    assert config_store.load().server == "http://127.0.0.1:9000"


def test_xdg_config_home(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GRADE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_store.config_path() == tmp_path / "heldout" / "config.json"


def test_503_is_retried_as_the_server_asks_and_the_upload_is_sent_whole_again(tmp_path) -> None:
    f = tmp_path / "preds.csv"
    f.write_bytes(b"id,label\n" + b"".join(b"%d,1\n" % i for i in range(20_000)))
    bodies: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        bodies.append(req.read())
        if len(bodies) < 3:  # the database restarting: nothing stored, come back in 2 s
            return httpx.Response(503, json={"detail": "briefly unavailable", "code": "unavailable"},
                                  headers={"Retry-After": "2"})
        return httpx.Response(202, json={"id": 9, "status": "queued"})

    slept: list[float] = []
    assert make(handler, slept).submit(f, "cifar10") == {"id": 9, "status": "queued"}
    assert slept == [2.0, 2.0]
    same = [b.replace(b.split(b"\r\n", 1)[0], b"--BOUNDARY") for b in bodies]  # boundary differs per request
    assert len(bodies) == 3 and same[0] == same[2] and f.read_bytes() in bodies[2]


def test_503_that_persists_ends_in_one_clear_error() -> None:
    calls: list[int] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, json={"detail": "briefly unavailable", "code": "unavailable"},
                              headers={"Retry-After": "600"})

    slept: list[float] = []
    with pytest.raises(c.ServerError, match=r"server error \(503\): briefly unavailable"):
        make(handler, slept).me()
    assert len(calls) == 4 and slept == [c.MAX_RETRY_AFTER_S] * 3   # capped, bounded


def test_model_statistics_are_shown_in_words() -> None:
    from grader_api.cli.student import model_summary

    stats = {"params": 44426, "ms_per_image": 0.21391404666853, "peak_memory_mb": 891.48828125, "device": "cpu",
             "autocast": None, "batch_size": 300, "format": "state_dict", "sandbox": "bwrap"}
    assert model_summary(stats) == "44,426 parameters · 0.21 ms/image · peak memory 891 MB · cpu · batch 300"
    gpu = model_summary({"params": 11_227_812, "ms_per_image": 0.0312, "device": "cuda", "autocast": "bfloat16"})
    assert gpu == "11,227,812 parameters · 0.03 ms/image · cuda (bfloat16)"
    assert model_summary({"odd": 1}) == "odd 1"
