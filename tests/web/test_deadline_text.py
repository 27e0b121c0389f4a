"""The time-left text shown next to a deadline, before it, in the late-day window, and after."""

from datetime import UTC, datetime, timedelta

from grader_api.web.render import deadline_left

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_counts_to_the_deadline_not_to_the_end_of_late_days():
    task = {"deadline": NOW + timedelta(days=3, hours=2), "closes_at": NOW + timedelta(days=5, hours=2)}
    assert deadline_left(task, NOW) == "3d 2h left"


def test_late_day_window_is_named():
    task = {"deadline": NOW - timedelta(hours=1), "closes_at": NOW + timedelta(hours=5, minutes=30)}
    assert deadline_left(task, NOW) == "late days only: 5h 30m left"


def test_closed_and_no_deadline():
    assert deadline_left({"deadline": NOW - timedelta(days=2), "closes_at": NOW - timedelta(days=1)}, NOW) == "closed"
    assert deadline_left({"deadline": None, "closes_at": None}, NOW) == "no deadline"


def test_web_and_cli_use_the_shared_wording():
    """Both sides word a deadline with scoring.deadlines: same task, same text (the CLI gets
    the times as the API's ISO strings, the web as datetimes)."""
    from grader_api.cli.student import _fmt_task_left
    from grader_api.web.render import templates
    from scoring import deadlines

    cases = [
        {"deadline": NOW + timedelta(days=3, hours=2), "closes_at": NOW + timedelta(days=5)},
        {"deadline": NOW - timedelta(hours=1), "closes_at": NOW + timedelta(hours=5, minutes=30)},
        {"deadline": NOW - timedelta(days=2), "closes_at": NOW - timedelta(days=1)},
        {"deadline": NOW + timedelta(seconds=20), "closes_at": None},
        {"deadline": None, "closes_at": None},
    ]
    for task in cases:
        api = {k: v.isoformat() if v else None for k, v in task.items()}
        expected = deadlines.deadline_left(task["deadline"], task["closes_at"], NOW)
        assert deadline_left(task, NOW) == expected
        assert _fmt_task_left(api, NOW) == expected
    assert templates().env.filters["left"] is deadlines.time_left
