"""Hostile uploads: every one is answered with a clear 4xx naming the problem (or accepted and
handled safely), the service stays up, and a normal submission is still scored afterwards."""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from tests.resilience import hostile_files
from tests.resilience.course import make_task, post_file
from tests.resilience.record import pick, record
from tests.service.helpers import auth

pytestmark = [pytest.mark.resilience, pytest.mark.slow]


@pytest.fixture(scope="module")
def hostile(env):
    env.heal()
    task = make_task(env.client, env.prof, env.data_root, n=hostile_files.N, k=hostile_files.K, prefix="hostile",
                     max_upload_mb=16)
    return env, task


def _outcome(name, status, code, detail, ok):
    record("hostile", name, status=status, code=code, detail=(detail or "")[:160], ok=ok)


def test_malformed_prediction_files_get_a_clear_4xx(hostile):
    env, task = hostile
    problems = []
    for name, content, filename, status, code, words in hostile_files.cases(pick(256, 1024)):
        t0 = time.monotonic()
        r = post_file(env.client, env.alice, task.name, content, filename=filename, note=name, timeout=120)
        body = r.json()
        detail = body.get("detail", "")
        ok = (r.status_code == status and (code is None or body.get("code") == code)
              and all(w.lower() in detail.lower() for w in words) and len(detail) < 2000)
        _outcome(name, r.status_code, body.get("code"), detail, ok)
        if not ok:
            problems.append(f"{name}: got {r.status_code} {body.get('code')} {detail[:200]!r}, "
                            f"expected {status} {code} mentioning {words}")
        assert time.monotonic() - t0 < 60, f"{name} took too long"
    assert env.client.get("/api/v1/health").status_code == 200
    assert not problems, "\n".join(problems)
    # Nothing was stored for any of them.
    rows = env.client.get(f"/api/v1/tasks/{task.name}/submissions", headers=auth(env.prof)).json()
    assert rows == []


def _raw_upload(port: int, token: str, task: str, total: int, *, declare: bool) -> tuple[int, int, float]:
    """Stream `total` bytes of file part at the server over a raw socket, stopping as soon as it
    answers. Returns (status, bytes sent, seconds). Never holds the body in memory."""
    boundary = "hostileboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\nid,label\n").encode()
    length = f"Content-Length: {len(head) + total}\r\n" if declare else "Transfer-Encoding: chunked\r\n"
    req = (f"POST /api/v1/tasks/{task}/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
           f"{length}Connection: close\r\n\r\n").encode()
    chunk = b"img00000,c000\n" * 75_000   # ~1 MB
    sent, t0 = 0, time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(req)
        first = head if declare else b"%x\r\n%s\r\n" % (len(head), head)
        s.sendall(first)
        while sent < total:
            if select.select([s], [], [], 0)[0]:
                break  # the server answered before the body ended
            data = chunk if declare else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        s.settimeout(30)
        reply = b""
        while len(reply) < 1 << 16:       # the whole answer (Connection: close), bounded
            try:
                part = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            reply += part
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1") else 0
    head_end = reply.find(b"\r\n\r\n")
    try:
        code = json.loads(reply[head_end + 4:]).get("code") if head_end >= 0 else None
    except ValueError:
        code = None
    return status, code, sent, time.monotonic() - t0


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
def test_two_gigabyte_body_is_refused_early(hostile, declare):
    env, task = hostile
    total = 2 * 1024**3
    status, code, sent, seconds = _raw_upload(env.stack.api_port, env.alice, task.name, total, declare=declare)
    name = f"2 GB body ({'Content-Length' if declare else 'chunked, no length'})"
    ok = status == 413 and code == "too_large" and sent < 64 * 1024**2
    _outcome(name, status, code, f"answered after {sent / 1e6:.0f} MB sent, {seconds:.1f} s", ok)
    assert status == 413 and code == "too_large", (status, code)
    assert sent < 64 * 1024**2, f"the server read {sent} bytes before refusing"
    assert env.client.get("/api/v1/health").status_code == 200


def test_request_shape_problems(hostile):
    env, task = hostile
    url, h = f"/api/v1/tasks/{task.name}/submissions", auth(env.alice)
    good = task.csv(0.5, 1)
    checks = [
        ("no file part", env.client.post(url, headers=h, data={"note": "x"}, files={"other": ("a", b"1")}),
         400, "missing_file"),
        ("not multipart", env.client.post(url, headers=h, content=good), 415, "unsupported_media_type"),
        ("two file parts",
         env.client.post(url, headers=h, files=[("file", ("a.csv", good)), ("file", ("b.csv", good))]),
         400, "bad_request"),
        ("note over 2000 characters", post_file(env.client, env.alice, task.name, good, note="n" * 2001), 422,
         "invalid_request"),
        ("broken multipart boundary",
         env.client.post(url, headers={**h, "Content-Type": "multipart/form-data; boundary=zz"},
                         content=b"--yy\r\ngarbage"), 400, None),
    ]
    problems = []
    for name, r, status, code in checks:
        ok = r.status_code == status and (code is None or r.json().get("code") == code)
        _outcome(name, r.status_code, r.json().get("code"), r.json().get("detail"), ok)
        if not ok:
            problems.append(f"{name}: {r.status_code} {r.text[:200]}")
    assert not problems, problems


def test_path_tricks_and_lying_extensions_are_harmless(hostile, tmp_path):
    env, task = hostile
    storage = env.storage
    before = {p for p in storage.parent.rglob("*")}
    # A name that, joined to any directory and resolved, lands on a file this test can look for.
    target = tmp_path / "escaped.csv"
    climbing = "../" * 40 + str(target).lstrip("/")
    cases = [
        ("../ in the file name", task.csv(0.6, 2), "../../../../etc/passwd.csv", 202),
        ("../ climbing to a known path", task.csv(0.6, 6), climbing, 202),
        ("control characters in the file name", task.csv(0.6, 3), "a\x00b\x07c.csv", 202),
        ("CSV named .npy", task.csv(0.6, 4), "preds.npy", 202),
        ("npy named .csv", task.npy(5), "preds.csv", 202),
        ("PNG named .csv", b"\x89PNG\r\n\x1a\n" + bytes(3000), "preds.csv", 415),
    ]
    for name, content, filename, status in cases:
        r = post_file(env.client, env.alice, task.name, content, filename=filename, note=name)
        ok = r.status_code == status
        if status == 202 and ok:
            sid = r.json()["id"]
            deadline = time.monotonic() + 60
            while (body := env.client.get(f"/api/v1/submissions/{sid}", headers=auth(env.alice)).json())["status"] \
                    not in ("scored", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            shown = body["filename"] or ""
            ok = body["status"] == "scored" and "/" not in shown and "\\" not in shown and shown.isprintable()
            ok = ok and body["public"]["primary"] == task.offline_report(content)["parts"]["public"]["primary"]
        shown_name = "../ x40, then this test's temp folder/escaped.csv" if filename == climbing else filename
        _outcome(name, r.status_code, r.json().get("code") or r.json().get("status"), shown_name, ok)
        assert ok, (name, r.status_code, r.text[:300])
    created = {p for p in storage.parent.rglob("*")} - before
    outside = [p for p in created if storage not in p.parents and p.parent != storage.parent / "marks"]
    assert not outside, f"files written outside storage: {outside}"
    assert not target.exists(), "an upload was written where its ../ file name pointed"
