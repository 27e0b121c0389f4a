"""Leaderboard and grade rules, on rows written straight to the database: which submission
counts for each board, ties, direction, the final-selection rules, and who may see what."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grader_api.models import FinalRule, SubmissionStatus
from grader_api.services.courses import member_of
from grader_api.services.errors import InvalidInput, PrivateHidden
from grader_api.services.leaderboard import GradeRow, grade_rows, grades_csv, leaderboard, standings
from tests.services.factory import NOON


def _as(session, user, task):
    """The user as a member of the task's course (what the routes pass to the service)."""
    return member_of(session, user, task.course_id)


def _board(session, task, board, viewer, now=NOON) -> list[tuple]:
    lb = leaderboard(session, task, board, _as(session, viewer, task), now)
    return [(r.rank, r.user, r.score, r.entries, r.submission_id, r.is_me) for r in lb.rows]


def test_public_board_ranks_each_students_best_public_score(session, make):
    task, prof = make.task(), make.instructor()
    alice, bob, carol = make.user("alice"), make.user("bob"), make.user("carol")
    a1 = make.submission(task, alice, public=0.70, private=0.90, at=NOON - timedelta(hours=3))
    a2 = make.submission(task, alice, public=0.80, private=0.60, at=NOON - timedelta(hours=2))
    b1 = make.submission(task, bob, public=0.75, private=0.95)
    make.submission(task, carol, status=SubmissionStatus.FAILED)  # never on a board
    make.submission(task, bob, status=SubmissionStatus.FAILED)    # nor counted as an entry

    assert _board(session, task, "public", prof) == [
        (1, "alice", 0.80, 2, a2.id, False),
        (2, "bob", 0.75, 1, b1.id, False),
    ]
    # Students see their own submission id only, and everyone by display name only.
    assert _board(session, task, "public", alice) == [
        (1, "alice-shown", 0.80, 2, a2.id, True),
        (2, "bob-shown", 0.75, 1, None, False),
    ]
    assert a1.id not in {s.submission_id for s in standings(session, task, "public")}


def test_ties_go_to_the_earlier_submission(session, make):
    task, prof = make.task(), make.instructor()
    alice, bob, carol = make.user("alice"), make.user("bob"), make.user("carol")
    b1 = make.submission(task, bob, public=0.5, at=NOON - timedelta(minutes=1))
    make.submission(task, alice, public=0.5, at=NOON)
    c1 = make.submission(task, carol, public=0.5, at=NOON - timedelta(minutes=5))
    # A student's own tie: the earlier of two equal scores is the one that counts.
    a_early = make.submission(task, alice, public=0.5, at=NOON - timedelta(minutes=2))

    assert [(r[0], r[1], r[4]) for r in _board(session, task, "public", prof)] == [
        (1, "carol", c1.id), (2, "alice", a_early.id), (3, "bob", b1.id)]


def test_a_tie_at_the_same_moment_goes_to_the_lower_submission_id(session, make):
    task, prof = make.task(), make.instructor()
    bob, alice = make.user("bob"), make.user("alice")
    first = make.submission(task, bob, public=0.5)
    make.submission(task, alice, public=0.5)
    assert [(r[1], r[4]) for r in _board(session, task, "public", prof)][0] == ("bob", first.id)


def test_lower_is_better_ranks_the_smallest_score_first(session, make):
    task, prof = make.task(higher_is_better=False), make.instructor()
    alice, bob = make.user("alice"), make.user("bob")
    make.submission(task, alice, public=0.30)
    make.submission(task, alice, public=0.10, at=NOON + timedelta(minutes=1))
    make.submission(task, bob, public=0.20)

    assert [(r[1], r[2]) for r in _board(session, task, "public", prof)] == [("alice", 0.10), ("bob", 0.20)]


def test_private_board_under_best_public_uses_the_best_public_submissions_private_score(session, make):
    task, prof = make.task(final_rule=FinalRule.BEST_PUBLIC), make.instructor()
    alice, bob = make.user("alice"), make.user("bob")
    make.submission(task, alice, public=0.70, private=0.99, at=NOON - timedelta(hours=1))
    make.submission(task, alice, public=0.80, private=0.60)
    make.submission(task, bob, public=0.75, private=0.65)

    # Alice's 0.99 private score does not count: it is not her best public submission.
    assert [(r[1], r[2]) for r in _board(session, task, "private", prof)] == [("bob", 0.65), ("alice", 0.60)]


def test_private_board_under_latest_uses_the_latest_graded_submission(session, make):
    task, prof = make.task(final_rule=FinalRule.LATEST), make.instructor()
    alice = make.user("alice")
    make.submission(task, alice, public=0.90, private=0.90, at=NOON - timedelta(hours=1))
    latest = make.submission(task, alice, public=0.50, private=0.40)
    make.submission(task, alice, status=SubmissionStatus.FAILED, at=NOON + timedelta(hours=1))

    assert _board(session, task, "private", prof) == [(1, "alice", 0.40, 2, latest.id, False)]


def test_private_board_under_selected_takes_the_best_private_of_the_selected(session, make):
    task, prof = make.task(final_rule=FinalRule.SELECTED), make.instructor()
    alice, bob = make.user("alice"), make.user("bob")
    make.submission(task, alice, public=0.95, private=0.95)  # best, but not selected
    make.submission(task, alice, public=0.60, private=0.70, selected=True, selected_at=NOON)
    chosen = make.submission(task, alice, public=0.50, private=0.80, selected=True, selected_at=NOON)
    # Bob selected nothing: his best public submission counts.
    b_best = make.submission(task, bob, public=0.90, private=0.55, at=NOON - timedelta(hours=1))
    make.submission(task, bob, public=0.40, private=0.99)

    assert [(r[1], r[2], r[4]) for r in _board(session, task, "private", prof)] == [
        ("alice", 0.80, chosen.id), ("bob", 0.55, b_best.id)]


def test_a_selection_dated_at_or_after_the_close_does_not_count(session, make):
    deadline = NOON - timedelta(days=2)
    task, prof = make.task(final_rule=FinalRule.SELECTED, deadline=deadline, late_days=1), make.instructor()
    alice = make.user("alice")
    closes = deadline + timedelta(days=1)
    make.submission(task, alice, public=0.9, private=0.3, at=deadline - timedelta(hours=1))
    make.submission(task, alice, public=0.2, private=0.8, at=deadline - timedelta(hours=2),
                    selected=True, selected_at=closes)

    # The late mark is ignored: best public (0.9) is graded, with its private 0.3.
    assert [(r[1], r[2]) for r in _board(session, task, "private", prof)] == [("alice", 0.3)]
    assert [(g.student, g.best_public, g.best_private) for g in grade_rows(session, task)] == [("alice", 0.9, 0.3)]


def test_private_board_is_hidden_from_students_until_the_task_closes(session, make):
    deadline = NOON + timedelta(days=1)
    task, prof = make.task(deadline=deadline, late_days=2), make.instructor()
    alice = make.user("alice")
    make.submission(task, alice, public=0.5, private=0.6)
    closes = deadline + timedelta(days=2)

    with pytest.raises(PrivateHidden) as hidden:
        leaderboard(session, task, "private", _as(session, alice, task), now=closes - timedelta(seconds=1))
    assert (hidden.value.code, hidden.value.message) == (
        "private_hidden", "the private leaderboard is shown after the task closes")
    # Instructors see it at any time; students from the close on.
    assert _board(session, task, "private", prof, now=NOON)[0][2] == 0.6
    assert _board(session, task, "private", alice, now=closes)[0][2] == 0.6


def test_a_task_without_a_deadline_never_reveals_the_private_board_to_students(session, make):
    task, alice = make.task(deadline=None), make.user("alice")
    with pytest.raises(PrivateHidden):
        leaderboard(session, task, "private", _as(session, alice, task), now=NOON + timedelta(days=3650))


def test_an_unknown_board_is_invalid_input(session, make):
    task, prof = make.task(), make.instructor()
    with pytest.raises(InvalidInput) as err:
        leaderboard(session, task, "secret", _as(session, prof, task), NOON)
    assert (err.value.code, err.value.message) == ("invalid_request", "board: expected 'public' or 'private'")


def test_a_row_being_rescored_keeps_its_old_scores_on_the_board(session, make):
    task, prof, alice = make.task(), make.instructor(), make.user("alice")
    sub = make.submission(task, alice, public=0.7, private=0.6)
    sub.status = SubmissionStatus.QUEUED  # re-queued by a rescore; scored_at stays set
    session.flush()
    assert _board(session, task, "public", prof) == [(1, "alice", 0.7, 1, sub.id, False)]


def test_grade_rows_list_every_student_with_the_graded_submissions_points(session, make):
    task = make.task()
    make.instructor()  # not a student: no grade row
    alice, bob = make.user("alice"), make.user("bob")
    make.user("zoe")
    make.submission(task, alice, public=0.6, private=0.5, points=20.0, late_days_used=1)
    make.submission(task, alice, public=0.4, private=0.9, points=29.0)
    make.submission(task, bob, status=SubmissionStatus.FAILED)

    assert grade_rows(session, task) == [
        GradeRow(student="alice", best_public=0.6, best_private=0.5, points=20.0, late_days_used=1, submissions=2),
        GradeRow(student="bob", best_public=None, best_private=None, points=None, late_days_used=0, submissions=0),
        GradeRow(student="zoe", best_public=None, best_private=None, points=None, late_days_used=0, submissions=0),
    ]
    assert grades_csv(session, task).splitlines() == [
        "student,best_public,best_private,points,late_days_used,submissions",
        "alice,0.600000,0.500000,20.000000,1,2",
        "bob,,,,0,0",
        "zoe,,,,0,0",
    ]
