"""Credentials never travel in URLs.

A URL is written to the access log, to proxy logs and to browser history, so a token in a
query string (`?token=...`) leaks to whoever reads them. Such requests are refused with 400
before any route runs, and the access log shows their query string redacted.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from grader_api.errors import envelope

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"

# Query parameter names (lower case, '-' read as '_') that carry a credential in common APIs.
_CREDENTIAL_NAMES = frozenset({
    "token", "access_token", "auth_token", "api_token", "id_token", "refresh_token", "bearer",
    "api_key", "apikey", "authorization", "auth", "password", "secret", "client_secret",
})


def credential_names(query: str) -> list[str]:
    """The parameters of a raw query string whose (decoded) names look like credentials."""
    names = (name for name, _value in parse_qsl(query, keep_blank_values=True))
    return sorted({n for n in names if n.strip().lower().replace("-", "_") in _CREDENTIAL_NAMES})


class RefuseCredentialsInQuery:
    """ASGI middleware: 400 for a request whose query string carries a credential."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = credential_names(scope.get("query_string", b"").decode("latin-1"))
            if found:
                detail = (f"send the token in the Authorization header ('Authorization: Bearer <token>'), "
                          f"never in the URL: query parameter(s) {', '.join(map(repr, found))} refused")
                await JSONResponse(envelope(detail, "token_in_url"), status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RedactCredentialsInUrls(logging.Filter):
    """Replaces the query string of any logged URL that carries a credential.

    uvicorn's access records keep the path as one of `record.args` (its formatter unpacks them
    by position), so each argument is redacted in place and the tuple keeps its shape.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = redact_url(record.msg)
        return True


_QUERY = re.compile(r"\?([^\s\"'<>]*)")
# A one-time sign-in link carries its code in the path (/join/<code>): a credential until used.
_JOIN_CODE = re.compile(r"(/join/)[^\s\"'<>/?]+")


def redact_url(text: str) -> str:
    """`text` with every query string that carries a credential replaced by `?[redacted]`, and
    every sign-in code in a /join/ path by `[redacted]`."""
    text = _JOIN_CODE.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY.sub(lambda m: f"?{REDACTED}" if credential_names(m.group(1)) else m.group(0), text)


def redact_access_log() -> None:
    """Install the redacting filter on uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactCredentialsInUrls) for f in logger.filters):
        logger.addFilter(RedactCredentialsInUrls())
