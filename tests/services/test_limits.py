"""Submission limits: the daily count (which submissions use one up, when the day resets) and
the window (on time, late by how many days, closed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grader_api.models import SubmissionStatus
from grader_api.services.errors import DailyLimitReached, TaskClosed
from grader_api.services.submissions import precheck
from grader_api.services.tasks import Window, check_daily_limit, check_window, submissions_left_today, used_today
from tests.services.factory import NOON

MIDNIGHT = NOON.replace(hour=0)


def test_the_days_count_takes_todays_submissions_and_failures_that_held_a_grader(session, make):
    task, alice, bob = make.task(daily_limit=10), make.user("alice"), make.user("bob")
    make.submission(task, alice, public=0.5, at=MIDNIGHT)                          # today, first second
    make.submission(task, alice, status=SubmissionStatus.QUEUED, at=NOON)         # not graded yet: counts
    make.submission(task, alice, status=SubmissionStatus.FAILED, error_code="time_limit")
    make.submission(task, alice, status=SubmissionStatus.FAILED, error_code="resource_limit")
    make.submission(task, alice, status=SubmissionStatus.FAILED, error_code="model_rejected")
    # Free: a file refused before it ran, a server-side failure, yesterday, someone else, another task.
    make.submission(task, alice, status=SubmissionStatus.FAILED, error_code="wrong_shape")
    make.submission(task, alice, status=SubmissionStatus.FAILED, error_code="attempts_exhausted")
    make.submission(task, alice, public=0.5, at=MIDNIGHT - timedelta(seconds=1))
    make.submission(task, bob, public=0.5)
    make.submission(make.task("other", daily_limit=10), alice, public=0.5)

    assert used_today(session, task, alice, NOON) == 5
    assert submissions_left_today(session, task, alice, NOON) == 5


def test_the_last_submission_of_the_day_is_refused_with_the_time_until_midnight(session, make):
    task, alice = make.task(daily_limit=2), make.user("alice")
    make.submission(task, alice, public=0.5, at=NOON - timedelta(hours=2))
    check_daily_limit(session, task, alice, NOON)  # one used, one left
    make.submission(task, alice, public=0.6, at=NOON - timedelta(hours=1))

    with pytest.raises(DailyLimitReached) as err:
        check_daily_limit(session, task, alice, NOON)
    assert err.value.code == "daily_limit"
    assert err.value.retry_after_s == 12 * 3600
    assert err.value.message == (
        "daily limit reached: 2 of 2 submissions for 'pets' today (UTC; failed submissions do not count unless "
        "they held a grader: a model run, or a run stopped by the grading time limit); the limit resets at "
        "2030-05-16T00:00:00+00:00")
    assert submissions_left_today(session, task, alice, NOON) == 0
    # The next UTC day starts afresh.
    check_daily_limit(session, task, alice, MIDNIGHT + timedelta(days=1))


def test_retry_after_is_at_least_one_second(session, make):
    task, alice = make.task(daily_limit=1), make.user("alice")
    make.submission(task, alice, public=0.5)
    just_before_midnight = MIDNIGHT + timedelta(days=1) - timedelta(milliseconds=200)
    with pytest.raises(DailyLimitReached) as err:
        check_daily_limit(session, task, alice, just_before_midnight)
    assert err.value.retry_after_s == 1


def test_a_task_without_a_daily_limit_never_refuses(session, make):
    task, alice = make.task(daily_limit=None), make.user("alice")
    for _ in range(5):
        make.submission(task, alice, public=0.5)
    check_daily_limit(session, task, alice, NOON)
    assert submissions_left_today(session, task, alice, NOON) is None


@pytest.mark.parametrize(("after_deadline", "window"), [
    (timedelta(days=-1), Window(False, 0)),
    (timedelta(0), Window(False, 0)),                       # at the deadline: on time
    (timedelta(seconds=1), Window(True, 1)),                # a second late uses a day
    (timedelta(days=1), Window(True, 1)),
    (timedelta(days=1, seconds=1), Window(True, 2)),
    (timedelta(days=3), Window(True, 3)),                   # the close itself still accepts
])
def test_the_window_says_how_many_late_days_a_submission_uses(make, after_deadline, window):
    task = make.task(deadline=NOON, late_days=3)
    assert check_window(task, NOON + after_deadline) == window


def test_after_the_late_days_the_task_is_closed(make):
    task = make.task(deadline=NOON, late_days=3)
    with pytest.raises(TaskClosed) as err:
        check_window(task, NOON + timedelta(days=3, microseconds=1))
    assert (err.value.code, err.value.message) == (
        "task_closed", "task 'pets' closed at 2030-05-18T12:00:00+00:00 (deadline 2030-05-15T12:00:00+00:00 "
                       "plus 3 late day(s)); submissions are no longer accepted")


def test_without_late_days_the_deadline_closes_the_task(make):
    task = make.task(deadline=NOON, late_days=0)
    assert check_window(task, NOON) == Window(False, 0)
    with pytest.raises(TaskClosed):
        check_window(task, NOON + timedelta(seconds=1))


def test_a_task_without_a_deadline_is_always_open(make):
    assert check_window(make.task(deadline=None), NOON + timedelta(days=10_000)) == Window(False, 0)


def test_precheck_refuses_a_closed_task_before_counting_the_day(session, make):
    task, alice = make.task(deadline=NOON, daily_limit=1), make.user("alice")
    make.submission(task, alice, public=0.5, at=NOON - timedelta(hours=1))
    with pytest.raises(TaskClosed):
        precheck(session, task, alice, NOON + timedelta(hours=1))
    with pytest.raises(DailyLimitReached):
        precheck(session, task, alice, NOON)
