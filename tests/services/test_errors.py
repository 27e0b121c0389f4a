"""The one mapping from domain errors to HTTP answers (grader_api/errors.py): status, headers and
the envelope, for every kind the services raise."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from grader_api.errors import install_error_handlers
from grader_api.services import errors as e


@pytest.mark.parametrize(("exc", "status", "code", "headers"), [
    (e.DifferentTasks("x"), 400, "different_tasks", {}),
    (e.TokenRevoked("x"), 401, "unauthorized", {"www-authenticate": "Bearer"}),
    (e.PrivateHidden("x"), 403, "private_hidden", {}),
    (e.TaskClosed("x"), 403, "task_closed", {}),
    (e.NotFound("task 'pets'"), 404, "not_found", {}),
    (e.Conflict("x"), 409, "conflict", {}),
    (e.NotScored("x"), 409, "not_scored", {}),
    (e.SelectionClosed("x"), 409, "selection_closed", {}),
    (e.TooManySelected("x"), 409, "too_many_selected", {}),
    (e.UnsupportedUpload("x"), 415, "unsupported_media_type", {}),
    (e.InvalidInput("x"), 422, "invalid_request", {}),
    (e.InvalidTask("x"), 422, "invalid_task", {}),
    (e.InvalidTask("x", "invalid_split"), 422, "invalid_split", {}),
    (e.RejectedModel("x"), 422, "model_rejected", {}),
    (e.InvalidUpload("x", "archive_too_large"), 422, "archive_too_large", {}),
    (e.InvalidPredictions("x", "wrong_shape"), 422, "wrong_shape", {}),
    # The parser's kinds for "not a file type we take" and "no file".
    (e.InvalidPredictions("x", "not_utf8"), 415, "not_utf8", {}),
    (e.InvalidPredictions("x", "binary_content"), 415, "binary_content", {}),
    (e.InvalidPredictions("x", "unsupported_format"), 415, "unsupported_format", {}),
    (e.InvalidPredictions("x", "empty_file"), 400, "empty_file", {}),
    (e.DailyLimitReached("x", retry_after_s=42), 429, "daily_limit", {"retry-after": "42"}),
    (e.SplitUnavailable("x"), 503, "split_unavailable", {}),
])
def test_each_domain_error_has_one_http_answer(exc, status, code, headers):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    def refuse():
        raise exc

    r = TestClient(app).get("/")
    assert r.status_code == status
    assert r.json() == {"detail": exc.message, "code": code, "line": None, "column": None}
    assert {k: r.headers[k] for k in headers} == headers
    for header in ("www-authenticate", "retry-after"):
        assert (header in r.headers) == (header in headers)


def test_a_predictions_error_points_into_the_file():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    def refuse():
        raise e.InvalidPredictions("preds.csv line 3, column 2: expected a number", "not_a_number", line=3, column=2)

    r = TestClient(app).get("/")
    assert (r.status_code, r.json()) == (422, {"detail": "preds.csv line 3, column 2: expected a number",
                                               "code": "not_a_number", "line": 3, "column": 2})


def test_not_found_names_what_was_not_found():
    err = e.NotFound("submission 7")
    assert (err.message, str(err), err.what) == ("submission 7 not found", "submission 7 not found", "submission 7")
