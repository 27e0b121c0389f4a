"""Final-selection rules of `set_selected`: how many may be marked, until when, which ones, by whom."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from grader_api.models import FinalRule, Submission, SubmissionStatus, utcnow
from grader_api.services.errors import NotFound, NotScored, SelectionClosed, TooManySelected
from grader_api.services.submissions import check_selection_open, set_selected


def _selected(session, task, user) -> list[int]:
    return sorted(session.scalars(sa.select(Submission.id).where(
        Submission.task_id == task.id, Submission.user_id == user.id, Submission.selected.is_(True))))


def test_marking_records_the_mark_and_its_time(session, make):
    task, alice = make.task(final_rule=FinalRule.SELECTED), make.user("alice")
    sub = make.submission(task, alice, public=0.5, at=utcnow() - timedelta(minutes=5))
    before = utcnow()
    set_selected(session, sub, alice, True)
    assert sub.selected is True and before <= sub.selected_at <= utcnow()


def test_one_more_than_final_count_is_refused_until_one_is_unmarked(session, make):
    task, alice = make.task(final_rule=FinalRule.SELECTED, final_count=2), make.user("alice")
    a, b, c = (make.submission(task, alice, public=p) for p in (0.1, 0.2, 0.3))
    set_selected(session, a, alice, True)
    set_selected(session, b, alice, True)

    with pytest.raises(TooManySelected) as err:
        set_selected(session, c, alice, True)
    assert (err.value.code, err.value.message) == (
        "too_many_selected", "at most 2 final submission(s) per task; unselect one first")
    assert _selected(session, task, alice) == [a.id, b.id]

    set_selected(session, a, alice, False)
    set_selected(session, c, alice, True)
    assert _selected(session, task, alice) == [b.id, c.id]


def test_marking_an_already_marked_submission_again_is_not_one_more(session, make):
    task, alice = make.task(final_count=1), make.user("alice")
    sub = make.submission(task, alice, public=0.4)
    set_selected(session, sub, alice, True)
    set_selected(session, sub, alice, True)
    assert _selected(session, task, alice) == [sub.id]


def test_other_students_marks_do_not_count_against_the_limit(session, make):
    task, alice, bob = make.task(final_count=1), make.user("alice"), make.user("bob")
    set_selected(session, make.submission(task, bob, public=0.9), bob, True)
    mine = make.submission(task, alice, public=0.2)
    set_selected(session, mine, alice, True)
    assert _selected(session, task, alice) == [mine.id]


def test_a_failed_submission_cannot_be_final_but_can_be_unmarked(session, make):
    task, alice = make.task(), make.user("alice")
    failed = make.submission(task, alice, status=SubmissionStatus.FAILED, selected=True)
    with pytest.raises(NotScored) as err:
        set_selected(session, failed, alice, True)
    assert (err.value.code, err.value.message) == (
        "not_scored", f"submission {failed.id} failed; only graded submissions can be final")

    set_selected(session, failed, alice, False)
    assert failed.selected is False


def test_a_queued_submission_may_be_marked(session, make):
    task, alice = make.task(), make.user("alice")
    queued = make.submission(task, alice, status=SubmissionStatus.QUEUED)
    set_selected(session, queued, alice, True)
    assert queued.selected is True


def test_selections_are_fixed_once_the_task_closes(session, make):
    deadline = (utcnow() - timedelta(days=2)).replace(microsecond=0)
    task, alice = make.task(deadline=deadline, late_days=1), make.user("alice")
    sub = make.submission(task, alice, public=0.5, at=deadline - timedelta(hours=1), selected=True)
    closes = deadline + timedelta(days=1)

    for selected in (True, False):
        with pytest.raises(SelectionClosed) as err:
            set_selected(session, sub, alice, selected)
        assert (err.value.code, err.value.message) == (
            "selection_closed",
            f"task 'pets' closed at {closes.isoformat()} (deadline {deadline.isoformat()} plus 1 late day(s)); "
            "final selections can no longer be changed")
    assert sub.selected is True


def test_selection_is_open_through_the_late_days_and_closes_at_the_close(make):
    deadline = utcnow()
    task = make.task(deadline=deadline, late_days=2)
    check_selection_open(task, deadline + timedelta(days=2) - timedelta(seconds=1))  # late, still open
    with pytest.raises(SelectionClosed):
        check_selection_open(task, deadline + timedelta(days=2))


def test_no_one_marks_another_students_submission(session, make):
    task, alice, prof = make.task(), make.user("alice"), make.instructor()
    sub = make.submission(task, alice, public=0.5)
    with pytest.raises(NotFound) as err:
        set_selected(session, sub, prof, True)
    assert (err.value.code, err.value.message) == ("not_found", f"submission {sub.id} not found")
    assert sub.selected is False
