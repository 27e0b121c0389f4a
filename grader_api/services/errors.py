"""What the services refuse, in the course's terms.

The services raise only these; they know nothing of HTTP. The JSON API answers each with a
status code and headers chosen in one table (`grader_api/errors.py`); the web pages and the
admin CLI show `message`. `code` is the stable kind clients see in the error envelope, and
`line`/`column` point into the offending file where there is one.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the course's rules refuse; `message` says what and why, readable as it is."""

    code = "refused"  # each kind below names its own

    def __init__(self, message: str, code: str | None = None, *, line: int | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.line, self.column = line, column


class NotFound(DomainError):
    """Absent, or not the caller's to see (the two are not told apart)."""

    code = "not_found"

    def __init__(self, what: str):
        super().__init__(f"{what} not found")
        self.what = what


class InvalidInput(DomainError):
    """A value the caller gave (a name, a note, a filter, a part) is not one the rules accept."""

    code = "invalid_request"


class InvalidTask(InvalidInput):
    """A task file or course setting that cannot be used; `code` says which (task or split)."""

    code = "invalid_task"


class Conflict(DomainError):
    """The request contradicts the current state: the name is taken, the choice is fixed, ..."""

    code = "conflict"


class NotScored(Conflict):
    """The submission has no score (yet, or ever) for what was asked of it."""

    code = "not_scored"


class SelectionClosed(Conflict):
    """Final selections are fixed once the task has closed."""

    code = "selection_closed"


class TooManySelected(Conflict):
    """Marking one more would pass the task's number of final submissions."""

    code = "too_many_selected"


class NotAllowed(DomainError):
    """The caller may not do this (now)."""

    code = "forbidden"


class PrivateHidden(NotAllowed):
    """Private scores stay hidden from students until the task closes."""

    code = "private_hidden"


class TaskClosed(NotAllowed):
    """The task's deadline and late days are over: no more submissions."""

    code = "task_closed"


class DailyLimitReached(DomainError):
    """The student has used the day's submissions; `retry_after_s` is when the day ends."""

    code = "daily_limit"

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TokenRevoked(DomainError):
    """The caller's token stopped being valid while their request was being handled."""

    code = "unauthorized"


class DifferentTasks(DomainError):
    """Two submissions compared with each other belong to different tasks."""

    code = "different_tasks"


class SplitUnavailable(DomainError):
    """The task's held-out split cannot be read on the server: the staff's problem."""

    code = "split_unavailable"


class UnsupportedUpload(DomainError):
    """A kind of file the task does not take (predictions for a model-only task, or the reverse)."""

    code = "unsupported_media_type"


class InvalidUpload(DomainError):
    """The uploaded file was read and refused; `code` is the checker's kind of error (the
    parser's `ErrorCode` for predictions), `line`/`column` where it points into the file."""

    def __init__(self, message: str, code: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message, code, line=line, column=column)


class InvalidPredictions(InvalidUpload):
    """A predictions file the scoring core's parser refused."""


class RejectedModel(InvalidUpload):
    """A model file the worker would refuse before running it."""

    def __init__(self, message: str):
        super().__init__(message, "model_rejected")
