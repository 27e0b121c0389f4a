"""Browser sessions and CSRF for the HTML pages.

The cookie is signed with itsdangerous and holds the sha256 of the API token the user
logged in with (never the token) plus a per-session CSRF secret. Each request re-checks
that hash against the token table, so revoking a token ends its browser sessions too.
Cookie flags: HttpOnly, SameSite=Lax, Secure when the request came over HTTPS.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "heldout_session"
MAX_AGE_S = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"
_SALT = "heldout.web.session.v1"


@dataclass
class WebSession:
    token_hash: str | None
    csrf: str
    fresh: bool = False  # not yet sent to the browser: set the cookie on the response

    @classmethod
    def new(cls, token_hash: str | None = None) -> WebSession:
        return cls(token_hash=token_hash, csrf=secrets.token_urlsafe(24), fresh=True)


def secret_key(request: Request) -> str:
    """Signing key: `HELDOUT_SECRET_KEY`, else a random key kept in `<var_dir>/web-secret` (0600).

    A file rather than a per-process random key, so sessions survive restarts and every
    uvicorn worker process agrees on it.
    """
    cached = getattr(request.app.state, "web_secret", None)
    if cached:
        return cached
    settings = request.app.state.settings  # HELDOUT_SECRET_KEY is read there, with every other setting
    key = settings.secret_key or _file_secret(Path(settings.var_dir) / "web-secret")
    request.app.state.web_secret = key
    return key


def _file_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        path.unlink(missing_ok=True)  # a crash left it empty: make a new one
        return _file_secret(path)
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value)
    return value


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(request), salt=_SALT)


def load(request: Request) -> WebSession:
    """The session from the cookie, or a new anonymous one (with a CSRF secret for the login form)."""
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            data = _serializer(request).loads(raw, max_age=MAX_AGE_S)
        except BadSignature:
            data = None
        if isinstance(data, dict) and isinstance(data.get("c"), str):
            th = data.get("t")
            return WebSession(token_hash=th if isinstance(th, str) else None, csrf=data["c"])
    return WebSession.new()


def store(request: Request, response: Response, sess: WebSession) -> None:
    value = _serializer(request).dumps({"t": sess.token_hash, "c": sess.csrf})
    response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


def clear(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


def csrf_ok(sess: WebSession, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(sess.csrf, submitted)
