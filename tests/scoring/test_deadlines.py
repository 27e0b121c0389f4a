"""The one wording of time left before a deadline (web pages and `grade` CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from scoring.deadlines import aware_datetime, deadline_left, time_left

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("until", "text"), [
    (NOW + timedelta(days=3, hours=2, minutes=59), "3d 2h left"),
    (NOW + timedelta(days=1), "1d 0h left"),
    (NOW + timedelta(hours=5, minutes=30, seconds=59), "5h 30m left"),
    (NOW + timedelta(hours=1), "1h 0m left"),
    (NOW + timedelta(minutes=12, seconds=59), "12m left"),
    (NOW + timedelta(seconds=59), "under 1m left"),
    (NOW + timedelta(seconds=1), "under 1m left"),
    (NOW, "closed"),
    (NOW - timedelta(seconds=1), "closed"),
    (NOW - timedelta(days=400), "closed"),
    (None, "no deadline"),
    ("", "no deadline"),
    ("not a date", "no deadline"),
    (12345, "no deadline"),
])
def test_time_left_words(until, text):
    assert time_left(until, NOW) == text


def test_naive_times_are_utc_and_aware_ones_keep_their_zone():
    naive = NOW.replace(tzinfo=None)
    assert time_left(naive + timedelta(hours=2), NOW) == "2h 0m left"
    assert time_left(NOW + timedelta(hours=2), naive) == "2h 0m left"
    # 14:00 at UTC+2 is 12:00 UTC: the deadline is now, not two hours away.
    plus2 = timezone(timedelta(hours=2))
    assert time_left(datetime(2026, 11, 22, 14, 0, tzinfo=plus2), NOW) == "closed"
    assert time_left(datetime(2026, 11, 22, 15, 0, tzinfo=plus2), NOW) == "1h 0m left"


def test_iso_text_as_the_api_sends_it():
    assert time_left("2026-11-22T14:00:00Z", NOW) == "2h 0m left"
    assert time_left("2026-11-22T14:00:00+00:00", NOW) == "2h 0m left"
    assert time_left("2026-11-22T14:00:00", NOW) == "2h 0m left"  # no zone: UTC
    assert aware_datetime("2026-11-22T14:00:00") == datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def test_without_now_it_counts_from_the_clock():
    assert time_left(datetime.now(UTC) + timedelta(days=2, minutes=30)) == "2d 0h left"
    assert time_left(datetime.now(UTC) - timedelta(minutes=1)) == "closed"


def test_deadline_left_counts_to_the_deadline_then_through_late_days():
    before = deadline_left(NOW + timedelta(days=3, hours=2), NOW + timedelta(days=5), NOW)
    late = deadline_left(NOW - timedelta(hours=1), NOW + timedelta(hours=5, minutes=30), NOW)
    after = deadline_left(NOW - timedelta(days=2), NOW - timedelta(days=1), NOW)
    assert (before, late, after) == ("3d 2h left", "late days only: 5h 30m left", "closed")
    assert deadline_left(NOW - timedelta(hours=1), None, NOW) == "closed"
    assert deadline_left(None, NOW + timedelta(hours=3), NOW) == "3h 0m left"
    assert deadline_left(None, None, NOW) == "no deadline"
    assert deadline_left("2026-11-22T11:00:00Z", "2026-11-22T13:00:00Z", NOW) == "late days only: 1h 0m left"
