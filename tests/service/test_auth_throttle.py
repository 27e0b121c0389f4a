"""Failed authentications are throttled per client address before the token is looked up, and a
token sent in a query string is refused and never written to a log."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.service.helpers import auth
from tests.web.live_server import free_port

LIMIT = 20  # the default HELDOUT_AUTH_FAILURE_LIMIT: 20/minute


@contextmanager
def token_lookups(app):
    """Counts the SQL statements that read the token table."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "api_tokens" in statement:
            seen.append(statement)

    engine = app.state.db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def from_address(app, host: str) -> TestClient:
    """A client of the running app whose requests come from `host` (the app's lifespan is already up)."""
    return TestClient(app, client=(host, 40000))


def test_random_tokens_from_one_address_are_throttled_before_the_lookup(course):
    attacker = from_address(course.app, "203.0.113.7")
    with token_lookups(course.app) as lookups:
        statuses = [attacker.get("/api/v1/me", headers=auth(secrets.token_urlsafe(32))) for _ in range(300)]
        codes = [r.status_code for r in statuses]
        assert codes[:LIMIT] == [401] * LIMIT
        assert codes[LIMIT:] == [429] * (300 - LIMIT)
        # the 280 throttled requests cost one read of the live-token set between them, not a lookup each
        assert len(lookups) == LIMIT + 1
        last = statuses[-1]
        assert 1 <= int(last.headers["Retry-After"]) <= 60
        assert last.json()["code"] == "rate_limited" and "failed authentications" in last.json()["detail"]
        # A valid token still works from the throttled address (decided from the live-token set).
        assert attacker.get("/api/v1/me", headers=auth(course.alice)).status_code == 200
    # ... while everyone else is unaffected.
    assert from_address(course.app, "198.51.100.4").get("/api/v1/me", headers=auth(course.alice)).status_code == 200


def test_a_classmate_behind_the_same_address_keeps_working_while_it_is_throttled(course):
    """One student spraying bad tokens from a shared campus NAT does not lock classmates out,
    not even one whose token this process has never seen; the bad tokens cost the database at
    most one read of the live-token set per refresh period, however many arrive."""
    nat = from_address(course.app, "203.0.113.9")
    for _ in range(LIMIT):
        assert nat.get("/api/v1/me", headers=auth(secrets.token_urlsafe(32))).status_code == 401
    with token_lookups(course.app) as lookups:
        codes = [nat.get("/api/v1/me", headers=auth(secrets.token_urlsafe(32))).status_code for _ in range(200)]
        assert codes == [429] * 200
        assert len(lookups) <= 1  # the set of live hashes, read once
        assert nat.get("/api/v1/me", headers=auth(course.alice)).status_code == 200
        assert nat.get("/api/v1/me", headers=auth(course.bob)).status_code == 200
    # A token created after the set was read works once the set is refreshed ...
    course.app.state.token_index.refresh_s = 0.2
    with course.app.state.db.transaction() as s:
        from grader_api.services.users import create_user
        fresh = create_user(s, "carol", "student")[1]
    time.sleep(0.25)
    assert nat.get("/api/v1/me", headers=auth(fresh)).status_code == 200
    # ... and a revoked one is refused by the ordinary lookup.
    with course.app.state.db.transaction() as s:
        from grader_api.models import User
        from grader_api.tokens import revoke_tokens
        revoke_tokens(s, s.scalar(sa.select(User).where(User.name == "alice")))
    assert nat.get("/api/v1/me", headers=auth(course.alice)).status_code in (401, 429)


def test_valid_tokens_and_missing_headers_do_not_use_the_failure_budget(course):
    c = from_address(course.app, "203.0.113.8")
    for _ in range(3 * LIMIT):
        assert c.get("/api/v1/me", headers=auth(course.alice)).status_code == 200
        assert c.get("/api/v1/me").status_code == 401  # no token: nothing was guessed, nothing looked up
    for _ in range(LIMIT - 1):
        assert c.get("/api/v1/me", headers=auth("wrong")).status_code == 401
    assert c.get("/api/v1/me", headers=auth(course.alice)).status_code == 200


def test_the_failure_window_passes(tmp_path):
    from grader_api.app import create_app
    from tests.service.conftest import embedded_settings, seed_users

    app = create_app(embedded_settings(tmp_path, auth_failure_limit="3 per 1 second"))
    with TestClient(app) as c:
        alice = seed_users(app)["alice"]
        assert [c.get("/api/v1/me", headers=auth("x")).status_code for _ in range(4)] == [401, 401, 401, 429]
        time.sleep(1.1)
        assert c.get("/api/v1/me", headers=auth(alice)).status_code == 200


@pytest.mark.parametrize("query", ["token={t}", "access_token={t}", "api_key={t}", "Token={t}",
                                   "to%6Ben={t}", "task=pets&API-KEY={t}"])
def test_a_token_in_the_query_string_is_refused(course, query):
    r = course.client.get(f"/api/v1/me?{query.format(t=course.alice)}")
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "token_in_url" and "Authorization header" in body["detail"]
    assert set(body) == {"detail", "code", "line", "column"}
    assert course.alice not in r.text
    # refused even with a valid header: the URL is what gets logged
    r = course.client.get(f"/tasks/pets?{query.format(t=course.alice)}", headers=auth(course.alice))
    assert r.status_code == 400


def test_ordinary_query_parameters_still_work(course):
    r = course.client.get("/api/v1/tasks/pets/leaderboard", params={"board": "public"}, headers=auth(course.alice))
    assert r.status_code == 200
    r = course.client.post("/api/v1/users/bob/tokens", params={"revoke_old": "false"}, headers=auth(course.instructor))
    assert r.status_code == 201


@contextmanager
def uvicorn_serving(app):
    """The app under uvicorn as `grade serve` runs it (default logging config, access log at info)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_token_in_the_url_never_reaches_any_log_record(course, caplog):
    access = logging.getLogger("uvicorn.access")
    with uvicorn_serving(course.app) as url:
        # uvicorn's access logger does not propagate to the root logger caplog listens on
        access.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.DEBUG):
                queries = (f"token={course.alice}", f"x=1&access_token={course.bob}", f"api_key={course.instructor}")
                for query in queries:
                    assert httpx.get(f"{url}/api/v1/me?{query}").status_code == 400
                    assert httpx.get(f"{url}/tasks/pets?{query}").status_code == 400
                ok = httpx.get(f"{url}/api/v1/tasks/pets/leaderboard?board=public", headers=auth(course.alice))
                assert ok.status_code == 200
        finally:
            access.removeHandler(caplog.handler)
    # The test's own HTTP client (httpx, httpcore) logs the URLs it sends; every other record is the server's.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [r.getMessage() for r in server_records]
    access_lines = [r for r in server_records if r.name == "uvicorn.access"]
    assert len(access_lines) == 7, lines  # every request was logged ...
    assert sum("/api/v1/me?[redacted]" in m for m in lines) == 3  # ... with its query redacted
    assert any("board=public" in m for m in lines)                  # ordinary queries stay readable
    from uvicorn.logging import AccessFormatter

    printed = [AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(r) for r in access_lines]
    for secret in (course.alice, course.bob, course.instructor):
        assert not any(secret in m or secret in str(r.args) for m, r in zip(lines, server_records, strict=True))
        assert not any(secret in p for p in printed)


@pytest.mark.redis
def test_the_failure_budget_is_shared_through_redis():
    """Several API processes (one RateLimiter each) share one budget per address in Redis."""
    from grader_api.config import Settings
    from grader_api.ratelimit import RateLimiter
    from tests.service import real_stack

    real_stack.require_redis()
    prefix = f"t-{secrets.token_hex(4)}-"
    settings = Settings(redis_url=real_stack.REDIS_URL, queue_prefix=prefix, auth_failure_limit="3/minute")
    try:
        first, second = RateLimiter(settings), RateLimiter(settings)
        for limiter in (first, second, first):
            assert limiter.auth_retry_after("192.0.2.1") is None
            limiter.count_auth_failure("192.0.2.1")
        assert 1 <= (second.auth_retry_after("192.0.2.1") or 0) <= 60
        assert first.auth_retry_after("192.0.2.2") is None
    finally:
        real_stack.clear_redis_prefix(prefix)
