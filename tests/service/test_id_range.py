"""Submission ids are 64-bit: ids past 2^31 work end to end, a path id past 2^63 is the
request's fault (422), and an exhausted id sequence is the server's (5xx that says so)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grader_api.models import Submission
from tests.service.helpers import auth, predictions_csv, upload, wait_for_status
from tests.service.pg_course import course_on_postgres


@pytest.fixture
def pg_course(tmp_path):
    with course_on_postgres(tmp_path) as course:
        yield course


def _set_sequences(course, value: int) -> None:
    with course.app.state.db.transaction() as s:
        for seq in ("submissions_id_seq", "outbox_id_seq"):
            s.execute(sa.text("SELECT setval(:seq, :v)"), {"seq": seq, "v": value})


def _count(course) -> int:
    with course.app.state.db.transaction() as s:
        return s.scalar(sa.select(sa.func.count(Submission.id)))


@pytest.mark.postgres
def test_submissions_past_2_31_are_accepted_graded_and_addressable(pg_course):
    course = pg_course
    _set_sequences(course, 2**31 + 10)
    first = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7, 1))
    second = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.8, 2))
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    a, b = first.json()["id"], second.json()["id"]
    assert (a, b) == (2**31 + 11, 2**31 + 12)
    assert wait_for_status(course.client, course.alice, a)["status"] == "scored"
    assert wait_for_status(course.client, course.alice, b)["status"] == "scored"
    r = course.client.post(f"/api/v1/submissions/{b}/select", headers=auth(course.alice))
    assert r.status_code == 200 and r.json()["selected"]
    r = course.client.get("/api/v1/me/submissions/diff", params={"a": a, "b": b}, headers=auth(course.alice))
    assert r.status_code == 200 and (r.json()["a"], r.json()["b"]) == (a, b)


@pytest.mark.postgres
def test_an_exhausted_id_sequence_is_a_server_error_that_names_it(pg_course):
    course = pg_course
    before = _count(course)
    _set_sequences(course, 2**63 - 1)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7))
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["code"] == "database_limit"
    assert "server-side" in body["detail"] and "id sequence" in body["detail"]
    assert "request is out of range" not in body["detail"] and "Traceback" not in r.text
    assert _count(course) == before


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_path_ids_are_checked_against_the_64_bit_range(backend, request, tmp_path):
    if backend == "sqlite":
        _check_path_ids(request.getfixturevalue("course"))
        return
    with course_on_postgres(tmp_path) as course:
        _check_path_ids(course)


def _check_path_ids(course):
    h = auth(course.alice)
    for sid in (2**31, 2**63 - 1):  # valid ids that do not exist
        assert course.client.get(f"/api/v1/submissions/{sid}", headers=h).status_code == 404
        assert course.client.post(f"/api/v1/submissions/{sid}/select", headers=h).status_code == 404
    r = course.client.get(f"/api/v1/submissions/{2**63}", headers=h)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request" and "submission_id" in r.json()["detail"]
    r = course.client.get("/api/v1/me/submissions/diff", params={"a": 1, "b": 2**63}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = course.client.get("/api/v1/tasks/pets/submissions", params={"offset": 2**31}, headers=auth(course.instructor))
    assert r.status_code == 200 and r.json() == []


def test_the_submission_page_checks_the_id_range_too(course):
    from tests.web.test_pages import login

    assert login(course.client, course.alice).status_code == 303
    assert course.client.get(f"/submissions/{2**63 - 1}").status_code == 404
    r = course.client.get(f"/submissions/{2**63}")
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
