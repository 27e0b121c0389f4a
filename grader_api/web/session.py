"""Browser sessions and CSRF for the HTML pages.

Log-in creates a server-side session row (`models.BrowserSession`) tied to the API token the
user logged in with; the cookie is signed with itsdangerous and holds the row's random session
id (kept in the database only as its sha256, never the API token) plus a per-session CSRF
secret. Each request looks the id up together with its token: log-out deletes the row, so a
copied cookie stops working, and revoking the token ends its browser sessions too.
Cookie flags: HttpOnly, SameSite=Lax, Secure when the request came over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from grader_api.models import ApiToken, BrowserSession, User, utcnow

COOKIE = "heldout_session"
MAX_AGE_S = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"
_SALT = "heldout.web.session.v1"


@dataclass
class WebSession:
    session_id: str | None  # None: not logged in
    csrf: str
    fresh: bool = False  # not yet sent to the browser: set the cookie on the response

    @classmethod
    def new(cls, session_id: str | None = None) -> WebSession:
        return cls(session_id=session_id, csrf=secrets.token_urlsafe(24), fresh=True)


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
            sid = data.get("s")
            return WebSession(session_id=sid if isinstance(sid, str) else None, csrf=data["c"])
    return WebSession.new()


def store(request: Request, response: Response, sess: WebSession) -> None:
    value = _serializer(request).dumps({"s": sess.session_id, "c": sess.csrf})
    response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


def clear(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


def csrf_ok(sess: WebSession, submitted: str | None) -> bool:
    if not submitted:
        return False
    return hmac.compare_digest(sess.csrf, submitted)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def log_in(db: Session, token: ApiToken) -> WebSession:
    """A new server-side session for a browser that logged in with `token` (fresh id and CSRF secret)."""
    _forget_expired(db)
    session_id = secrets.token_urlsafe(32)
    db.add(BrowserSession(token_id=token.id, session_hash=_hash(session_id)))
    return WebSession.new(session_id)


def log_out(db: Session, sess: WebSession) -> None:
    """End the session on the server: its cookie, and every copy of it, no longer logs anyone in."""
    if sess.session_id:
        db.execute(sa.delete(BrowserSession).where(BrowserSession.session_hash == _hash(sess.session_id)))


def user_of(db: Session, sess: WebSession) -> User | None:
    """The user of a live session: not logged out, not expired, its token not revoked."""
    if not sess.session_id:
        return None
    return db.scalar(
        sa.select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .join(BrowserSession, BrowserSession.token_id == ApiToken.id)
        .where(BrowserSession.session_hash == _hash(sess.session_id),
               BrowserSession.created_at > utcnow() - timedelta(seconds=MAX_AGE_S),
               ApiToken.revoked_at.is_(None))
    )


def _forget_expired(db: Session) -> None:
    # Sessions whose cookie has expired can never be presented again (the signature check
    # refuses them); drop their rows on the next log-in rather than in a separate job.
    db.execute(sa.delete(BrowserSession).where(BrowserSession.created_at <= utcnow() - timedelta(seconds=MAX_AGE_S)))
