"""How much time a task has left, in the words the web pages and the `grade` CLI both show.

Plain text from plain values (datetimes or the API's ISO 8601 strings), so the server and a
student's client word a deadline the same way. A time without a zone is UTC: that is how the
database stores it and how the API sends it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware_datetime(value: object) -> datetime | None:
    """`value` (a datetime or ISO 8601 text) as a zone-aware datetime; None for anything else."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def time_left(until: object, now: datetime | None = None) -> str:
    """'3d 2h left', '5h 30m left', '12m left', 'under 1m left'; 'closed' once `until` has
    passed; 'no deadline' when there is none."""
    end = aware_datetime(until)
    if end is None:
        return "no deadline"
    secs = int((end - _now(now)).total_seconds())
    if secs <= 0:
        return "closed"
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    mins = rem // 60
    if days:
        return f"{days}d {hours}h left"
    if hours:
        return f"{hours}h {mins}m left"
    return f"{mins}m left" if mins else "under 1m left"


def deadline_left(deadline: object, closes_at: object, now: datetime | None = None) -> str:
    """Time to the deadline; once it has passed, the late-day window while it is still open."""
    due, closes = aware_datetime(deadline), aware_datetime(closes_at)
    at = _now(now)
    if due is not None and due <= at and closes is not None and closes > at:
        return "late days only: " + time_left(closes, at)
    return time_left(due if due is not None else closes, at)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)
