"""Python client for the heldout HTTP API (`/api/v1`). The `grade` CLI is built on it; a notebook can use it directly:

    from grader_api.client import Client
    c = Client("http://127.0.0.1:8000", token)
    sub = c.submit("preds.csv", task="cifar10", note="+BatchNorm")
    sub = c.wait(sub["id"])
    print(sub["public"]["primary"])

Every failure is a `ClientError` subclass whose `str()` is the server's message, so callers
show one line, never a traceback. Only httpx is imported here; no scoring or numpy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

API_PREFIX = "/api/v1"
FINAL_STATUSES = frozenset({"scored", "failed"})

# (bytes sent so far, total bytes)
ProgressCallback = Callable[[int, int], None]
StatusCallback = Callable[[dict[str, Any]], None]


class ClientError(Exception):
    """A request failed. `str(err)` is one readable line; attributes keep the envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ):
        super().__init__(message)
        self.message, self.status, self.code, self.line, self.column = message, status, code, line, column


class ServerUnreachable(ClientError):
    """No answer: connection refused, DNS failure, timeout, or not a heldout server."""


class ServerError(ClientError):
    """5xx: the server (or a proxy in front of it) failed; nothing the caller can fix."""


class AuthError(ClientError):
    """401: missing, expired or revoked token."""


class PermissionDenied(ClientError):
    """403 for something the role may not see (e.g. the private board before the deadline)."""


class NotFound(ClientError):
    """404: no such task or submission (others' submissions also answer 404)."""


class QuotaExceeded(ClientError):
    """429: daily submission limit reached (or the per-user rate limit)."""


class TaskClosed(ClientError):
    """The task no longer accepts submissions (deadline and late days over, or closed)."""


class ValidationFailed(ClientError):
    """400/413/415/422: the file or the request was rejected; message names line/column."""


class WaitTimeout(ClientError):
    """`wait()` gave up before the submission reached `scored` or `failed`."""


# Error codes meaning "this task no longer accepts submissions" (the service sends `task_closed` with 403).
_CLOSED_CODES = {"task_closed"}


def _error_from_response(resp: httpx.Response) -> ClientError:
    detail: Any = None
    code: str | None = None
    line: int | None = None
    column: int | None = None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail")
        code = body["code"] if isinstance(body.get("code"), str) else None
        line = body["line"] if isinstance(body.get("line"), int) else None
        column = body["column"] if isinstance(body.get("column"), int) else None
    if isinstance(detail, list):  # FastAPI's default 422 shape: [{"loc":..., "msg":...}]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    status = resp.status_code
    message = str(detail) if detail else f"HTTP {status} {resp.reason_phrase}".strip()
    error_type = _error_type(status, code)
    if error_type is ServerError:
        message = f"server error ({status}): {message}"
    return error_type(message, status=status, code=code, line=line, column=column)


def _error_type(status: int, code: str | None) -> type[ClientError]:
    if status == 401:
        return AuthError
    if status == 429:
        return QuotaExceeded
    if code in _CLOSED_CODES or status == 410:  # 409 also means "not scored yet", "too many selected"
        return TaskClosed
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status in (400, 413, 415, 422):
        return ValidationFailed
    if status >= 500:
        return ServerError
    return ClientError


MAX_RETRY_AFTER_S = 30.0


def _retry_after(resp: httpx.Response) -> float:
    """The server's Retry-After in seconds (numeric form), within [1, MAX_RETRY_AFTER_S]."""
    try:
        return min(max(float(resp.headers.get("retry-after", "5")), 1.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 5.0


def _rows(data: Any, key: str) -> list[dict[str, Any]]:
    """A listing's rows: the body's `key` (else `items`) list, or the body itself when it is a list."""
    if isinstance(data, dict):
        data = data[key] if key in data else data.get("items", [])
    rows: list[dict[str, Any]] = data
    return rows


class _ProgressReader:
    """Wraps a binary file so httpx's multipart encoder reports how much it has read (= sent)."""

    def __init__(self, fh: IO[bytes], total: int, callback: ProgressCallback | None):
        self._fh, self._total, self._cb, self._sent = fh, total, callback, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._sent += len(chunk)
        if self._cb is not None:
            self._cb(self._sent, self._total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._fh.seek(offset, whence)
        if whence == 0 and offset == 0:
            self._sent = 0
        return pos

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:  # lets httpx compute Content-Length instead of chunking
        return self._fh.fileno()


class Client:
    """Thin, typed wrapper over the JSON API. One `httpx.Client` per instance; use as a context manager."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, retries_on_unavailable: int = 3,
                 sleep: Callable[[float], None] = time.sleep, course: str | None = None):
        self.retries_on_unavailable, self._sleep = retries_on_unavailable, sleep
        # Sent with task names: needed only when a task name exists in several of the user's courses.
        self.course = course or None
        base = server.rstrip("/")
        if "://" not in base:
            base = "http://" + base
        self.server = base
        headers = {"Accept": "application/json", "User-Agent": "heldout-grade-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=base + API_PREFIX, headers=headers, timeout=timeout,
                                  transport=transport, follow_redirects=False)

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, rewind: Callable[[], object] | None = None, **kw: Any) -> Any:
        for attempt in range(self.retries_on_unavailable + 1):
            if attempt and rewind is not None:
                rewind()
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TimeoutException as e:
                raise ServerUnreachable(f"no answer from {self.server} in time ({type(e).__name__})") from None
            except httpx.TransportError as e:
                reason = str(e) or type(e).__name__
                raise ServerUnreachable(f"cannot reach {self.server}: {reason}") from None
            # 503 means the database or queue is restarting and nothing was stored (uploads
            # included): waiting as the server asks and trying again is safe.
            if resp.status_code != 503 or attempt == self.retries_on_unavailable:
                break
            self._sleep(_retry_after(resp))
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        if "json" not in resp.headers.get("content-type", ""):
            # A proxy page or a different service on that port: say so rather than fail on parsing.
            raise ServerUnreachable(f"{self.server} did not answer like a heldout server "
                                    f"(content-type {resp.headers.get('content-type')!r})")
        return resp.json()

    # -- endpoints --------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/me")

    def tasks(self) -> list[dict[str, Any]]:
        return _rows(self._request("GET", "/tasks"), "tasks")

    def _in_course(self, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        if self.course is None:
            return params
        return {**(params or {}), "course": self.course}

    def task(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/tasks/{name}", params=self._in_course())

    def submit(self, path: str | os.PathLike[str], task: str, note: str | None = None,
               progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Upload a predictions or model file; returns the `202` body (`id`, `status`, ...)."""
        p = Path(path)
        total = p.stat().st_size
        data = {"note": note} if note else None
        with p.open("rb") as fh:
            # The file name is only a hint for messages; the server sniffs content by bytes.
            reader = _ProgressReader(fh, total, progress)
            files = {"file": (p.name, reader, "application/octet-stream")}
            return self._request("POST", f"/tasks/{task}/submissions", files=files, data=data,
                                 params=self._in_course(),
                                 timeout=httpx.Timeout(30.0, write=None, read=120.0), rewind=lambda: reader.seek(0))

    def submission(self, submission_id: int | str) -> dict[str, Any]:
        return self._request("GET", f"/submissions/{submission_id}")

    def wait(self, submission_id: int | str, timeout: float = 600.0, *, on_status: StatusCallback | None = None,
             poll: float = 0.25, max_poll: float = 2.0) -> dict[str, Any]:
        """Poll until `scored` or `failed` (backing off up to `max_poll` s). Raises `WaitTimeout`."""
        deadline = time.monotonic() + timeout
        last_status = None
        while True:
            sub = self.submission(submission_id)
            if on_status is not None and sub.get("status") != last_status:
                on_status(sub)
            last_status = sub.get("status")
            if last_status in FINAL_STATUSES:
                return sub
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"submission {submission_id} is still {last_status} after {timeout:.0f} s; "
                                  f"check later with `grade status {submission_id}`")
            time.sleep(poll)
            poll = min(poll * 1.5, max_poll)

    def history(self, task: str | None = None) -> list[dict[str, Any]]:
        params = self._in_course({"task": task}) if task else None
        return _rows(self._request("GET", "/me/submissions", params=params), "submissions")

    def diff(self, a: int | str, b: int | str) -> dict[str, Any]:
        return self._request("GET", "/me/submissions/diff", params={"a": a, "b": b})

    def leaderboard(self, task: str, board: str = "public") -> dict[str, Any]:
        data = self._request("GET", f"/tasks/{task}/leaderboard", params=self._in_course({"board": board}))
        return {"rows": data} if isinstance(data, list) else data

    # -- teams and account -------------------------------------------------------------------

    def _course_params(self, course: str | None) -> dict[str, Any] | None:
        return {"course": course} if course else self._in_course()

    def create_team(self, task: str, name: str, course: str | None = None) -> dict[str, Any]:
        return self._request("POST", f"/tasks/{task}/teams", json={"name": name}, params=self._course_params(course))

    def join_team(self, code: str) -> dict[str, Any]:
        return self._request("POST", "/teams/join", json={"code": code})

    def my_team(self, task: str, course: str | None = None) -> dict[str, Any]:
        return self._request("GET", f"/tasks/{task}/team", params=self._course_params(course))

    def leave_team(self, task: str, course: str | None = None) -> dict[str, Any]:
        return self._request("POST", f"/tasks/{task}/team/leave", params=self._course_params(course))

    def set_display_name(self, course: str, name: str) -> dict[str, Any]:
        return self._request("PUT", f"/courses/{quote(course, safe='')}/me/display-name", json={"display_name": name})

    def rotate_token(self) -> dict[str, Any]:
        """A new token for the caller; every earlier one (this client's too) stops working."""
        return self._request("POST", "/me/token/rotate")

    def select(self, submission_id: int | str) -> dict[str, Any]:
        return self._request("POST", f"/submissions/{submission_id}/select")
