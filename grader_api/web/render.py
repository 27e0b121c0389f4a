"""Jinja2 environment, formatting filters and the response helper of the HTML pages."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from grader_api.web import session as websession
from scoring import deadlines

# No script at all on these pages: charts are SVG drawn on the server, refresh is a meta tag.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-store",
}


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
    t.env.filters.update(score=fmt_score, delta=fmt_delta, when=fmt_time, left=deadlines.time_left,
                         deadline_left=deadline_left, pct=fmt_pct, delta_class=delta_class)
    return t


def fmt_score(v: Any, digits: int = 4) -> str:
    return "—" if not isinstance(v, (int, float)) else f"{v:.{digits}f}"


def fmt_pct(v: Any) -> str:
    return "—" if not isinstance(v, (int, float)) else f"{v * 100:.1f} %"


def fmt_delta(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    return "±0.0000" if abs(v) < 5e-5 else f"{v:+.4f}"


def delta_class(v: Any, higher_is_better: bool = True) -> str:
    if not isinstance(v, (int, float)) or abs(v) < 5e-5:
        return "muted"
    return "up" if (v > 0) == higher_is_better else "down"


def fmt_time(dt: Any) -> str:
    d = deadlines.aware_datetime(dt)
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if d else "—"


def deadline_left(task: Any, now: datetime | None = None) -> str:
    """The `deadline_left` filter: the task's time left (scoring.deadlines words it), from a task
    row or its dict."""
    get = task.get if isinstance(task, dict) else (lambda k: getattr(task, k, None))
    return deadlines.deadline_left(get("deadline"), get("closes_at"), now)


def render(request: Request, name: str, ctx: dict[str, Any], *, status: int = 200,
           sess: websession.WebSession | None = None) -> HTMLResponse:
    sess = sess or websession.load(request)
    context = {"static_url": "/static/style.css", "csrf_token": sess.csrf, "user": None, **ctx}
    resp = templates().TemplateResponse(request, name, context, status_code=status)
    resp.headers.update(_SECURITY_HEADERS)
    if sess.fresh:
        websession.store(request, resp, sess)
    return resp
