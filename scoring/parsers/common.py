"""Helpers shared by the CSV and array parsers: error construction and score checks."""

from __future__ import annotations

import numpy as np

from scoring.errors import PredictionFormatError
from scoring.parsers.codes import ErrorCode
from scoring.types import TaskSpec

MAX_MESSAGE = 400          # characters; a message is shown in a browser and a terminal
MAX_SHOWN_VALUE = 40       # characters of an offending cell or id shown back
MAX_SHOWN_IDS = 5
PROBABILITY_SLACK = 1e-6   # float32 softmax can overshoot 1 by a few ulps


def shown(value: str, limit: int = MAX_SHOWN_VALUE) -> str:
    """A student-supplied string, quoted, escaped and truncated for a message."""
    if len(value) > limit:
        value = value[: limit - 3] + "..."
    return repr(value)


def clean_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    name = "".join(c for c in filename if c.isprintable())
    return name[:80] or None


def fail(code: ErrorCode, message: str, *, line: int | None = None, column: int | None = None,
         filename: str | None = None) -> PredictionFormatError:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return PredictionFormatError(message, code=code.value, line=line, column=column,
                                 filename=clean_filename(filename))


def class_list(task: TaskSpec, limit: int = 12) -> str:
    names = list(task.classes)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} classes)"


def first_bad(mask: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True in C order, or None."""
    flat = mask.reshape(-1)
    i = int(np.argmax(flat))
    if not flat[i]:
        return None
    return tuple(int(x) for x in np.unravel_index(i, mask.shape))


def bad_score_mask(values: np.ndarray, task: TaskSpec) -> tuple[np.ndarray, ErrorCode] | None:
    """Mask of the first kind of invalid float score (non-finite, then out of [0, 1] for
    probability tasks), or None when all are valid. Never called on uint8 arrays."""
    finite = np.isfinite(values)
    if not finite.all():
        return ~finite, ErrorCode.NOT_FINITE
    if task.scores == "probabilities":
        bad = (values < -PROBABILITY_SLACK) | (values > 1.0 + PROBABILITY_SLACK)
        if bad.any():
            return bad, ErrorCode.OUT_OF_RANGE
    return None


def describe_bad_value(code: ErrorCode, value: float) -> str:
    if code is ErrorCode.NOT_FINITE:
        return f"{value!r} is not a finite number (NaN and infinity are not scores)"
    return f"{value!r} is outside [0, 1]; this task's scores are probabilities"
