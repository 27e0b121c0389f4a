"""One error envelope for every answer that is not a success:

    {"detail": "<readable message>", "code": "<kind>", "line": int|null, "column": int|null}

Services raise domain errors (`grader_api/services/errors.py`), answered here with the status
code and headers of one table, `_DOMAIN_STATUS`; the HTTP edge itself (routers, auth, rate
limits, the multipart reader) raises `ApiError`. FastAPI's own HTTP and validation errors are
mapped to the same shape; anything else is logged with its stack trace and answered with a
generic 500 that reveals nothing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from grader_api.services.errors import (
    Conflict,
    DailyLimitReached,
    DifferentTasks,
    DomainError,
    InvalidInput,
    InvalidUpload,
    NotAllowed,
    NotFound,
    SplitUnavailable,
    TokenRevoked,
    UnsupportedUpload,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        code: str,
        *,
        line: int | None = None,
        column: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code
        self.line, self.column, self.headers = line, column, headers


# Each kind of domain error's status; a subclass takes its nearest listed ancestor's.
_DOMAIN_STATUS: dict[type[DomainError], int] = {
    DifferentTasks: 400,
    TokenRevoked: 401,
    NotAllowed: 403,          # PrivateHidden, TaskClosed
    NotFound: 404,
    Conflict: 409,            # NotScored, SelectionClosed, TooManySelected
    UnsupportedUpload: 415,
    InvalidInput: 422,        # InvalidTask
    InvalidUpload: 422,       # InvalidPredictions, RejectedModel; see _UPLOAD_STATUS_BY_CODE
    DailyLimitReached: 429,
    SplitUnavailable: 503,
}
# Parser error kinds that mean "not a file type we take" (415) or "no file at all" (400)
# rather than "a bad file" (422).
_UPLOAD_STATUS_BY_CODE = {"not_utf8": 415, "binary_content": 415, "unsupported_format": 415, "empty_file": 400}


def domain_status(exc: DomainError) -> int:
    """The HTTP status a domain error is answered with (the web pages show it too)."""
    if isinstance(exc, InvalidUpload) and exc.code in _UPLOAD_STATUS_BY_CODE:
        return _UPLOAD_STATUS_BY_CODE[exc.code]
    for cls in type(exc).__mro__:
        if cls in _DOMAIN_STATUS:
            return _DOMAIN_STATUS[cls]
    return 400


def domain_headers(exc: DomainError) -> dict[str, str] | None:
    if isinstance(exc, TokenRevoked):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, DailyLimitReached):
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def envelope(detail: str, code: str, line: int | None = None, column: int | None = None) -> dict:
    return {"detail": detail, "code": code, "line": line, "column": column}


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "rate_limited"}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ())]
        where = f"{loc[0]} field '{'.'.join(loc[1:])}'" if len(loc) > 1 else (loc[0] if loc else "request")
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError):
        return JSONResponse(envelope(exc.detail, exc.code, exc.line, exc.column),
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(DomainError)
    async def _domain_error(_req: Request, exc: DomainError):
        return JSONResponse(envelope(exc.message, exc.code, exc.line, exc.column),
                            status_code=domain_status(exc), headers=domain_headers(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(envelope(detail, _HTTP_CODES.get(exc.status_code, "http_error")),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError):
        return JSONResponse(envelope(_describe_validation(exc), "invalid_request"), status_code=422)

    async def _unavailable(req: Request, exc: Exception):
        # The database (or broker) is restarting: a transient outage, not a server bug. Answer
        # 503 with Retry-After so clients retry; nothing was stored (the transaction rolled back).
        log.warning("backend unavailable on %s %s: %s", req.method, req.url.path, type(exc).__name__)
        return JSONResponse(envelope("the service is briefly unavailable (database or queue restarting); "
                                     "nothing was stored, retry in a few seconds", "unavailable"),
                            status_code=503, headers={"Retry-After": "5"})

    from sqlalchemy.exc import InterfaceError, OperationalError

    for exc_type in _unavailable_errors(OperationalError, InterfaceError):
        app.add_exception_handler(exc_type, _unavailable)

    async def _out_of_range(req: Request, exc: Exception):
        if _is_server_side_limit(exc):
            log.error("database limit reached on %s %s: %s", req.method, req.url.path, exc)
            return JSONResponse(envelope(
                "the server cannot store new records: a database id sequence or number column has reached "
                "its limit (a server-side problem, not your request); nothing was stored; tell the course staff",
                "database_limit"), status_code=500)
        # A value from the request that the database cannot hold: the request was invalid.
        log.info("value rejected by the database on %s %s: %s", req.method, req.url.path, type(exc).__name__)
        return JSONResponse(envelope("a value in the request is out of range", "invalid_request"),
                            status_code=422)

    from sqlalchemy.exc import DataError

    app.add_exception_handler(DataError, _out_of_range)

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception):
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return JSONResponse(envelope("internal server error; the problem has been logged", "internal"),
                            status_code=500)


# SQLSTATEs of a number the server produced (an id from a sequence) that no longer fits.
# Numbers from a request are range-checked before they reach the database (routers/deps.py),
# so these name a server-side limit: sequence_generator_limit_exceeded, numeric_value_out_of_range.
_SERVER_SIDE_LIMIT_STATES = {"2200H", "22003"}


def _is_server_side_limit(exc: Exception) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _SERVER_SIDE_LIMIT_STATES


def _unavailable_errors(*types: type) -> tuple[type, ...]:
    """Connection-level failures of the backends, answered 503 rather than 500."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        return (*types, RedisConnectionError, RedisTimeoutError)
    except ImportError:  # pragma: no cover - redis is a dependency
        return types
