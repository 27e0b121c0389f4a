"""Log-out ends the browser session on the server: a copy of the cookie taken before log-out no
longer opens any page, while the user's CLI token and other browser sessions keep working.
Failed web log-ins are throttled per address like bearer tokens."""

from __future__ import annotations

import hashlib
import secrets

from fastapi.testclient import TestClient

from tests.web.test_pages import csrf_of, login

COOKIE = "heldout_session"


def _browser(web, host: str = "testclient") -> TestClient:
    """A separate cookie jar (a second browser) on the running app."""
    return TestClient(web.client.app, base_url="http://127.0.0.1", client=(host, 50000))


def test_a_cookie_copied_before_logout_is_refused_after_it(web) -> None:
    c = _browser(web)
    assert login(c, web.tokens["alice"]).status_code == 303
    stolen = c.cookies[COOKIE]
    assert c.get("/tasks/pets", follow_redirects=False).status_code == 200

    r = c.post("/logout", data={"csrf_token": csrf_of(c.get("/").text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"

    replay = _browser(web)
    replay.cookies.set(COOKIE, stolen)
    for path in ("/", "/tasks/pets", f"/submissions/{web.ids['alice'][0]}", "/tasks/pets/history"):
        r = replay.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), (path, r.status_code)
    # the CLI token the browser logged in with still works
    me = replay.get("/api/v1/me", headers={"Authorization": f"Bearer {web.tokens['alice']}"})
    assert me.status_code == 200 and me.json()["name"] == "alice"


def test_logout_ends_only_that_browser_session(web) -> None:
    laptop, phone = _browser(web), _browser(web)
    login(laptop, web.tokens["alice"])
    login(phone, web.tokens["alice"])
    laptop.post("/logout", data={"csrf_token": csrf_of(laptop.get("/").text)})
    assert laptop.get("/", follow_redirects=False).status_code == 303
    assert phone.get("/", follow_redirects=False).status_code == 200


def test_a_cookie_of_the_old_format_logs_nobody_in(web) -> None:
    """Cookies that carried the token's hash (before server-side sessions) cannot be ended, so
    they no longer count."""
    from itsdangerous import URLSafeTimedSerializer

    from grader_api.web.session import _SALT

    c = _browser(web)
    c.get("/login")  # the app reads or creates its signing key
    key = c.app.state.web_secret
    token_hash = hashlib.sha256(web.tokens["alice"].encode()).hexdigest()
    c.cookies.set(COOKIE, URLSafeTimedSerializer(key, salt=_SALT).dumps({"t": token_hash, "c": "x"}))
    assert c.get("/", follow_redirects=False).status_code == 303


def test_failed_web_logins_are_throttled_per_address(web) -> None:
    attacker = _browser(web, "203.0.113.9")
    form = attacker.get("/login")
    csrf = csrf_of(form.text)
    codes = [attacker.post("/login", data={"token": secrets.token_urlsafe(32), "csrf_token": csrf},
                           follow_redirects=False).status_code for _ in range(25)]
    assert codes == [401] * 20 + [429] * 5
    # A classmate behind the same address still logs in, even with a token created just now.
    web.client.app.state.token_index.refresh_s = 0.0
    with web.client.app.state.db.transaction() as s:
        from grader_api.services.users import create_user
        fresh = create_user(s, "newcomer", "student")[1]
    assert login(_browser(web, "203.0.113.9"), fresh).status_code == 303
    r = attacker.post("/login", data={"token": secrets.token_urlsafe(32), "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert "Too many failed log-ins" in r.text
    # another address logs in as usual
    assert login(_browser(web, "198.51.100.9"), web.tokens["alice"]).status_code == 303
