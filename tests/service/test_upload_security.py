"""Hostile uploads on the embedded stack, and on PostgreSQL where the database matters: control
characters in notes, bodies far beyond the file's cap, a revoked token, one student's slow
uploads in front of a classmate's, lateness judged after a wait, slow, padded or very wide CSVs,
a body cut before its closing boundary, and a failed upload next to a classmate's upload of the
same bytes."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from grader_api.db import unit_of_work
from grader_api.models import Submission, Task, User
from grader_api.services import submissions as submission_service
from grader_api.storage import LocalStorage
from grader_api.validation_slots import ValidationSlots
from tests.service.helpers import auth, predictions_csv, stored_files, upload, wait_for_status
from tests.service.pg_course import course_on_postgres

BOUNDARY = "b0undary"


def _rows(course) -> list[dict]:
    r = course.client.get("/api/v1/tasks/pets/submissions", headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    return r.json()


def _assert_nothing_left(course) -> None:
    assert _rows(course) == []
    storage = course.settings.effective_storage_dir
    assert stored_files(storage) == []
    assert list((storage / "tmp").iterdir()) == []


def _count_validations(monkeypatch) -> list[str | None]:
    """Record the note of every upload that reaches file validation."""
    seen: list[str | None] = []
    inspect = submission_service.inspect_upload

    def counting(**kwargs):
        seen.append(kwargs.get("note"))
        return inspect(**kwargs)

    monkeypatch.setattr(submission_service, "inspect_upload", counting)
    return seen


def _file_part(content: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode() + content + b"\r\n"


def _multipart_headers(token: str) -> dict:
    return {**auth(token), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@contextmanager
def _served_on_loopback(app, body_bytes_read: list[int]) -> Iterator[str]:
    """The (already started) app behind a real uvicorn on 127.0.0.1, counting the body bytes
    the app reads (the test client would buffer the whole body before the app sees any)."""
    import uvicorn

    async def counting(scope, receive, send):
        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                body_bytes_read[0] += len(message.get("body", b""))
            return message

        await app(scope, counted_receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(counting, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- notes with control characters --------------------------------------------------------

def test_note_with_nul_is_refused_before_the_file_is_validated(any_course, monkeypatch):
    course = any_course
    validated = _count_validations(monkeypatch)
    good = predictions_csv(course.labels, 0.8)
    r = upload(course.client, course.alice, "pets", good, note="a\x00b")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_request"
    assert "U+0000" in r.json()["detail"] and "character 2" in r.json()["detail"]
    r = upload(course.client, course.alice, "pets", good, note="\x1b[2Jfake grade: 10/10")
    assert r.status_code == 422 and "U+001B" in r.json()["detail"], r.text
    assert validated == []
    _assert_nothing_left(course)

    r = upload(course.client, course.alice, "pets", good, note="tried:\n\t+BatchNorm\r\n\t+dropout")
    assert r.status_code == 202, r.text
    sub = wait_for_status(course.client, course.alice, r.json()["id"])
    assert sub["status"] == "scored" and sub["note"] == "tried:\n\t+BatchNorm\r\n\t+dropout"


# --- the whole body is capped, not only the file part -------------------------------------

def test_thousands_of_nameless_parts_are_refused_early(course):
    sent = [0]

    def body():
        yield _file_part(predictions_csv(course.labels, 0.8))
        for _ in range(2000):   # 10 KB each, under the per-field cap; 20 MB in all
            part = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 10_000 + b"\r\n"
            sent[0] += len(part)
            yield part
        yield f"--{BOUNDARY}--\r\n".encode()

    r = course.client.post("/api/v1/tasks/pets/submissions", content=body(), headers=_multipart_headers(course.alice))
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    assert "too many parts" in r.json()["detail"]
    assert sent[0] == 20_084_000   # the test client sends it all; the refusal came at the 10th part
    _assert_nothing_left(course)


def test_too_many_parts_is_a_400_naming_the_limit(course):
    parts = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(20))
    r = course.client.post("/api/v1/tasks/pets/submissions",
                           content=_file_part(b"id,label\n") + parts + f"--{BOUNDARY}--\r\n".encode(),
                           headers=_multipart_headers(course.alice))
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    assert "too many parts" in r.json()["detail"] and "at most 9" in r.json()["detail"]
    _assert_nothing_left(course)


def test_a_205_mb_body_around_a_small_file_is_413_without_reading_it_all(course):
    chunk, read = b"\0" * 1_000_000, [0]

    def body():   # streamed (chunked, no Content-Length), generated as it goes out
        yield _file_part(predictions_csv(course.labels, 0.8))
        yield f"--{BOUNDARY}--\r\n".encode()
        for _ in range(205):    # after the closing boundary: the parser would skip it all
            yield chunk

    with _served_on_loopback(course.app, read) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/api/v1/tasks/pets/submissions", content=body(), headers=_multipart_headers(course.alice))
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    assert "request too large" in r.json()["detail"]
    # The app stops at the 1 MB file cap + 64 KB (+ the chunk that crossed it).
    assert read[0] < 3_000_000, f"the app read {read[0]} bytes of the body"
    _assert_nothing_left(course)


# --- a token revoked while the upload was in flight ---------------------------------------

def test_token_revoked_during_validation_records_nothing(any_course, monkeypatch):
    from grader_api.tokens import revoke_tokens

    course = any_course
    inspect = submission_service.inspect_upload

    def validate_then_revoke(**kwargs):
        result = inspect(**kwargs)
        with course.app.state.db.transaction() as s:   # the instructor revokes alice's token now
            revoke_tokens(s, s.scalars(sa.select(User).where(User.name == "alice")).one())
        return result

    monkeypatch.setattr(submission_service, "inspect_upload", validate_then_revoke)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    assert "revoked" in r.json()["detail"] and "nothing was stored" in r.json()["detail"]
    _assert_nothing_left(course)


def _revoke_alice(course) -> None:
    from grader_api.tokens import revoke_tokens

    with course.app.state.db.transaction() as s:
        revoke_tokens(s, s.scalars(sa.select(User).where(User.name == "alice")).one())


def test_a_revocation_waits_for_an_upload_past_its_token_check(any_course, monkeypatch):
    """The upload holds the per-user lock from its token re-check to its commit; a revocation
    in between waits for the commit instead of slipping under the re-check."""
    course = any_course
    checked, release = threading.Event(), threading.Event()
    require = submission_service._require_live_token

    def check_then_pause(*args):
        require(*args)
        checked.set()
        release.wait(20)

    monkeypatch.setattr(submission_service, "_require_live_token", check_then_pause)
    with ThreadPoolExecutor(1) as pool:
        try:
            sent = pool.submit(upload, course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
            assert checked.wait(20), "the upload did not reach its token re-check"
            revoker = threading.Thread(target=_revoke_alice, args=(course,), daemon=True)
            revoker.start()
            revoker.join(1.0)
            revoke_waited = revoker.is_alive()
        finally:
            release.set()
        r = sent.result(timeout=30)
    revoker.join(30)
    assert revoke_waited, "the revocation committed while the upload was between its re-check and commit"
    assert not revoker.is_alive()
    assert r.status_code == 202, r.text      # recorded before the revocation, in that order
    assert wait_for_status(course.client, course.instructor, r.json()["id"])["status"] == "scored"
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert r.status_code == 401, r.text


def test_an_upload_reaching_its_token_check_during_a_revocation_is_refused(any_course):
    """A revocation holds the same lock until it commits: the upload's re-check waits for it,
    then sees the token revoked."""
    from grader_api.tokens import revoke_tokens

    course = any_course
    revoking, release = threading.Event(), threading.Event()

    def revoke_and_hold():
        with course.app.state.db.transaction() as s:
            revoke_tokens(s, s.scalars(sa.select(User).where(User.name == "alice")).one())
            revoking.set()
            release.wait(20)

    revoker = threading.Thread(target=revoke_and_hold, daemon=True)
    with ThreadPoolExecutor(1) as pool:
        try:
            revoker.start()
            assert revoking.wait(20)
            sent = pool.submit(upload, course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
            time.sleep(1.0)
            upload_waited = not sent.done()
        finally:
            release.set()
        r = sent.result(timeout=30)
    revoker.join(30)
    assert upload_waited, f"the upload did not wait for the revocation: {sent.result().text}"
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    _assert_nothing_left(course)


# --- a body cut short before its closing boundary ---------------------------------------

def test_a_body_without_its_closing_boundary_is_refused(course):
    good = predictions_csv(course.labels, 0.8)
    r = course.client.post("/api/v1/tasks/pets/submissions", content=_file_part(good),
                           headers=_multipart_headers(course.alice))
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    assert r.json()["detail"] == "malformed multipart body: it ended before the closing boundary"
    # Cut inside the file part: the file's bytes so far must not be recorded as the upload.
    cut = _file_part(good)[: len(good) // 2]
    r = course.client.post("/api/v1/tasks/pets/submissions", content=cut, headers=_multipart_headers(course.alice))
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"], r.text
    # Cut inside the closing boundary itself.
    r = course.client.post("/api/v1/tasks/pets/submissions",
                           content=_file_part(good) + f"--{BOUNDARY}-".encode(),
                           headers=_multipart_headers(course.alice))
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"], r.text
    _assert_nothing_left(course)

    r = course.client.post("/api/v1/tasks/pets/submissions",
                           content=_file_part(good) + f"--{BOUNDARY}--\r\n".encode(),
                           headers=_multipart_headers(course.alice))
    assert r.status_code == 202, r.text


# --- one student's slow uploads, a classmate's upload, the deadline ---------------------

def _set_deadline(course, deadline: datetime) -> None:
    r = course.client.patch("/api/v1/tasks/pets", json={"deadline": deadline.isoformat(), "late_days": 0},
                            headers=auth(course.instructor))
    assert r.status_code == 200, r.text


def test_lateness_is_judged_when_the_upload_arrived_not_after_validation(course, monkeypatch):
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    _set_deadline(course, deadline)
    inspect = submission_service.inspect_upload

    def slow(**kwargs):   # a queue of validations ahead of this one: done after the deadline
        time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.5)
        return inspect(**kwargs)

    monkeypatch.setattr(submission_service, "inspect_upload", slow)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
    assert datetime.now(UTC) > deadline
    assert r.status_code == 202, r.text
    assert r.json()["late"] is False and r.json()["late_days_used"] == 0


def test_a_classmates_upload_is_not_stuck_behind_one_students_slow_invalid_uploads(course, monkeypatch):
    course.app.state.upload_slots = ValidationSlots(2)
    release, entered = threading.Event(), []
    inspect = submission_service.inspect_upload

    def slow_for_bob(**kwargs):
        if kwargs.get("note") == "slow":
            entered.append(time.monotonic())
            release.wait(20)
        return inspect(**kwargs)

    monkeypatch.setattr(submission_service, "inspect_upload", slow_for_bob)
    invalid = b"id,label\nnot-an-id,cat\n"
    with ThreadPoolExecutor(5) as pool:
        try:
            bobs = [pool.submit(upload, course.client, course.bob, "pets", invalid, "slow") for _ in range(4)]
            deadline = time.monotonic() + 10
            while not entered and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5)        # time for bob's other uploads to take whatever slots they can
            t0 = time.monotonic()
            alice = pool.submit(upload, course.client, course.alice, "pets", predictions_csv(course.labels, 0.8))
            r = alice.result(timeout=10)
            waited = time.monotonic() - t0
            in_flight = len(entered)
            still_blocked = not release.is_set()
        finally:
            release.set()
        bob_codes = sorted(f.result(timeout=30).status_code for f in bobs)
    assert r.status_code == 202, r.text
    assert still_blocked and waited < 5, f"alice waited {waited:.1f} s"
    assert in_flight == 1, f"{in_flight} of bob's uploads were validating at once"
    assert bob_codes == [422] * 4


# --- CSVs that would cost the API a lot of CPU ------------------------------------------

def test_csv_padded_with_blank_lines_is_refused_before_parsing(course, monkeypatch):
    from scoring.parsers import csv_format

    decoded = []
    decode = csv_format.decode_csv_text
    monkeypatch.setattr(csv_format, "decode_csv_text", lambda data, *a: decoded.append(len(data)) or decode(data, *a))
    good = predictions_csv(course.labels, 0.8)
    padded = good[:-1] + b"\n" * 900_000 + b"img00000,cat\n"   # fails only on its last line
    r = upload(course.client, course.alice, "pets", padded)
    assert r.status_code == 422 and r.json()["code"] == "too_many_lines", r.text
    assert "900201 lines" in r.json()["detail"] and "at most 1201" in r.json()["detail"]
    assert decoded == []
    _assert_nothing_left(course)


def test_csv_of_one_very_wide_line_is_422_naming_its_length(course):
    wide = b"id," + b"ab," * 300_000 + b"\n"      # 900 KB on one line, under the 1 MB cap
    r = upload(course.client, course.alice, "pets", wide)
    assert r.status_code == 422 and r.json()["code"] == "line_too_long", r.text
    assert r.json()["line"] == 1 and f"the line is {len(wide) - 1:,} bytes long" in r.json()["detail"]
    _assert_nothing_left(course)


def test_validation_past_its_cpu_budget_is_422_naming_the_limit(course):
    lines = predictions_csv(course.labels, 0.8).decode().splitlines()
    # Blank lines and an error on the last line: the row-by-row validator reads all of it.
    slow = "\n\n".join(lines[:-1] + ["img99999,cat"]).encode() + b"\n"
    r = upload(course.client, course.alice, "pets", slow)
    assert r.status_code == 422 and r.json()["code"] == "unknown_id", r.text

    course.app.state.settings.upload_validation_cpu_s = 1e-6
    r = upload(course.client, course.alice, "pets", slow)
    assert r.status_code == 422 and r.json()["code"] == "validation_time_limit", r.text
    assert "1e-06 s of CPU time" in r.json()["detail"] and r.json()["line"] is not None
    _assert_nothing_left(course)


# --- a failed upload next to a classmate's upload of the same bytes ------------------------

def _record(course, session, user_name: str, content: bytes, tmp_path, note: str):
    """Validate and record an upload in `session` as the API does (the caller commits)."""
    temp = tmp_path / f"{user_name}-{note}.csv"
    temp.write_bytes(content)
    task = session.scalars(sa.select(Task).where(Task.name == "pets")).one()
    user = session.scalars(sa.select(User).where(User.name == user_name)).one()
    return submission_service.accept_upload(
        session, relay=course.app.state.relay, storage=course.app.state.storage,
        data_root=course.settings.effective_data_root, task=task, user=user, temp_path=temp,
        sha256=hashlib.sha256(content).hexdigest(), size=len(content), filename="p.csv", note=note)


@pytest.mark.postgres
def test_rolled_back_upload_leaves_a_concurrent_upload_of_the_same_bytes_its_file(tmp_path):
    with course_on_postgres(tmp_path / "pg") as course:
        content = predictions_csv(course.labels, 0.8)
        db = course.app.state.db
        with db.sessionmaker() as attacker, db.sessionmaker() as victim:
            with pytest.raises(RuntimeError), unit_of_work(attacker):
                _record(course, attacker, "bob", content, tmp_path, "attacker")   # stores the file first
                # The victim's upload of the same bytes re-uses the object; its row is written
                # but not committed yet when the attacker's transaction fails.
                sid = _record(course, victim, "alice", content, tmp_path, "victim").id
                raise RuntimeError("the attacker's INSERT was refused")
            with unit_of_work(victim):
                pass
        assert course.app.state.storage.path(hashlib.sha256(content).hexdigest()).exists()
        body = wait_for_status(course.client, course.alice, sid)
        assert body["status"] == "scored" and body["attempts"] == 1, body
        with db.transaction() as s:
            assert s.scalar(sa.select(sa.func.count(Submission.id))) == 1


def test_rolled_back_upload_leaves_its_stored_file_to_the_storage_gc(course, tmp_path):
    from worker.storage_gc import collect_garbage

    content = predictions_csv(course.labels, 0.8)
    db = course.app.state.db
    with db.sessionmaker() as session, pytest.raises(RuntimeError), unit_of_work(session):
        sha = _record(course, session, "bob", content, tmp_path, "fails").file_sha256
        raise RuntimeError("the INSERT was refused")
    storage: LocalStorage = course.app.state.storage
    # Another transaction may still refer to it: only the age-bound GC takes it away.
    assert storage.path(sha).exists()
    assert collect_garbage(db, storage, max_age_s=3600).orphan_objects == 0
    r = upload(course.client, course.alice, "pets", content)
    assert r.status_code == 202 and r.json()["sha256"] == sha, r.text
    assert wait_for_status(course.client, course.alice, r.json()["id"])["status"] == "scored"
