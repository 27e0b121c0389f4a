"""Errors the scoring layer raises. Every message is safe to show a student: never label data."""

from __future__ import annotations


class ScoringError(Exception):
    """Base class; `str(err)` is a complete, human-readable message."""


class TaskFileError(ScoringError):
    """A task file is invalid. Names the file, the key and what was expected."""

    def __init__(self, file: str, key: str | None, expected: str, found: object = None):
        self.file, self.key, self.expected, self.found = file, key, expected, found
        where = f"{file}: key '{key}'" if key else file
        msg = f"{where}: expected {expected}"
        if found is not None:
            msg += f", found {found!r}"
        super().__init__(msg)


class SplitError(ScoringError):
    """A held-out split directory is missing, malformed or does not fit its task."""


class PredictionFormatError(ScoringError):
    """A prediction file does not match the task. Carries where the problem is.

    `code` is a stable machine-readable kind (e.g. "missing_ids", "wrong_header"),
    `line`/`column` are 1-based positions in the file when they apply.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        line: int | None = None,
        column: int | None = None,
        filename: str | None = None,
    ):
        self.code, self.line, self.column, self.filename = code, line, column, filename
        self.detail = message
        parts = []
        if filename:
            parts.append(filename)
        if line is not None:
            parts.append(f"line {line}")
        if column is not None:
            parts.append(f"column {column}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
