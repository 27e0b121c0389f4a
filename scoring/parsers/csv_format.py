"""CSV predictions (Kaggle style): `id,label` or `id,<one column per class>` scores.

Rows are matched by id (order ignored) and aligned to split order. The body of the file first
takes a fast path (`arrow_csv`: pyarrow's reader, then whole-array checks on ids and values)
that accepts only a file with nothing wrong in it. On any failure or doubt the row-by-row
validator reads the file instead, so that every error still names its line and column, and
the messages do not depend on which path ran.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator

import numpy as np

from scoring.parsers import arrow_csv
from scoring.parsers.codes import ErrorCode
from scoring.parsers.common import (
    MAX_SHOWN_IDS,
    bad_score_mask,
    class_list,
    describe_bad_value,
    fail,
    first_bad,
    shown,
)
from scoring.parsers.text import BOM, decode_csv_text
from scoring.types import Predictions, Split, TaskSpec

# Header names are compared case-insensitively after stripping spaces.
ID_HEADERS = ("id", "image_id", "imageid", "image", "sample_id")
LABEL_HEADERS = ("label", "prediction", "prediction1", "predicted", "predicted_label",
                 "category", "class", "target")
_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# Blank lines are allowed anywhere, but a file with many more lines than rows is refused
# before it is read: the row-by-row validator spends Python time on every line, blank or not.
EXTRA_LINES = 1000
# The csv module turns a line into one string per field, so a line's cost in memory is a large
# multiple of its length: no line may be much longer than a row of the task. Bytes per cell
# (repr of a float64 needs at most 24), and room for spaces, quotes and long spellings.
FIELD_WIDTH = 64
LINE_SLACK = 8192
# Rows, or cells, read between two looks at the CPU clock (whichever comes first: a row's
# cost grows with its width).
_BUDGET_ROWS = 256
_BUDGET_CELLS = 2048


# --------------------------------------------------------------------------- limits

class _CpuBudget:
    """CPU seconds this thread may spend reading one file (None: no limit).

    CPU time of the calling thread, not wall time: a server validating many uploads at once
    must not fail a file because it waited for a core.
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._until = None if seconds is None else time.thread_time() + seconds

    def check(self, line: int, filename: str | None) -> None:
        if self._until is not None and time.thread_time() > self._until:
            raise fail(ErrorCode.TIME_LIMIT,
                       f"checking the file used more than {self.seconds:g} s of CPU time (the limit per "
                       f"upload) and stopped at line {line}; a predictions file of the expected shape "
                       "is checked far faster, so look for what is unusual about this one",
                       line=line, filename=filename)


def _check_line_count(data: bytes, split: Split, filename: str | None) -> None:
    """Refuse, before decoding or parsing, a file with far more lines than the split has items."""
    newlines = data.count(b"\n")
    lines = newlines + data.count(b"\r") - data.count(b"\r\n") if b"\r" in data else newlines
    allowed = split.n + 1 + EXTRA_LINES
    if lines > allowed:
        raise fail(ErrorCode.TOO_MANY_LINES,
                   f"the file has {lines} lines; expected a header and one row per test item "
                   f"({split.n} rows), at most {allowed} lines counting blank ones",
                   filename=filename)


def line_limit(task: TaskSpec, split: Split) -> int:
    """The longest line, in bytes, a predictions file for this task and split may have: the
    score header (the widest row), a cell of FIELD_WIDTH per column, the longest id, slack."""
    names = sum(len(c.encode("utf-8")) + 1 for c in task.classes)
    longest_id = max((len(i.encode("utf-8")) for i in split.ids), default=0)
    return (task.num_classes + 1) * FIELD_WIDTH + names + longest_id + LINE_SLACK


def _too_long(line: int, what: str, limit: float, filename: str | None) -> Exception:
    return fail(ErrorCode.LINE_TOO_LONG,
                f"{what}; a row of this task is at most {limit:,} bytes (an id and one cell per "
                f"class of at most {FIELD_WIDTH} characters each, with room to spare)",
                line=line, filename=filename)


def _check_line_lengths(data: bytes, limit: int, filename: str | None) -> None:
    """Refuse, before decoding, a line longer than `limit` bytes, without copying the data.

    From the start of a line, the next line break must lie within `limit` bytes; the last one
    in that window starts the next line to check, so the loop takes a step per window rather
    than per line (and never more steps than the capped line count). \r and \n both count as
    breaks: the empty gap inside \r\n changes no length.
    """
    start, size = 0, len(data)
    while size - start > limit:
        window = start + limit + 1
        last = max(data.rfind(b"\n", start, window), data.rfind(b"\r", start, window))
        if last < 0:
            raise _too_long(_line_number(data, start), f"the line is {_line_length(data, start):,} "
                            "bytes long", limit, filename)
        start = last + 1


def _line_number(data: bytes, offset: int) -> int:
    """Line number of the line starting at `offset`, counting \n, \r\n and \r as the csv reader does."""
    return (1 + data.count(b"\n", 0, offset) + data.count(b"\r", 0, offset)
            - data.count(b"\r\n", 0, offset))


def _line_length(data: bytes, offset: int) -> int:
    ends = [p for p in (data.find(b"\n", offset), data.find(b"\r", offset)) if p >= 0]
    return min(ends, default=len(data)) - offset


# --------------------------------------------------------------------------- rows and header

_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+$")


def _lines(text: str) -> Iterator[str]:
    """Physical lines, lazily (reading the header must not copy a 10 MB text)."""
    for m in _LINE.finditer(text):
        yield m.group()


class _LineFeed:
    """Physical lines for the csv reader. A quoted field may hold line breaks, so one row can
    span many short lines: the characters of the row being read are bounded like a line's."""

    def __init__(self, text: str, limit: float, filename: str | None):
        self._lines = _lines(text)
        self._limit, self._filename = limit, filename
        self._line = 0
        self._row_line, self._row_chars = 1, 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        piece = next(self._lines)
        self._line += 1
        self._row_chars += len(piece)
        if self._row_chars > self._limit:
            raise _too_long(self._row_line,
                            f"the row starting on this line runs on over quoted line breaks to line "
                            f"{self._line} and is longer than that",
                            self._limit, self._filename)
        return piece

    def row_done(self) -> None:
        self._row_line, self._row_chars = self._line + 1, 0


def _rows(text: str, filename: str | None, budget: _CpuBudget | None = None,
          feed: _LineFeed | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped fields) for every non-blank row; without `budget` and `feed`,
    no CPU or row-length limit."""
    budget = budget or _CpuBudget(None)
    feed = feed or _LineFeed(text, float("inf"), filename)
    reader = csv.reader(feed, skipinitialspace=True)
    rows = cells = 0
    try:
        for row in reader:
            feed.row_done()
            rows, cells = rows + 1, cells + len(row)
            if rows >= _BUDGET_ROWS or cells >= _BUDGET_CELLS:
                rows = cells = 0
                budget.check(reader.line_num, filename)
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield reader.line_num, [f.strip() for f in row]
    except csv.Error as exc:
        raise fail(ErrorCode.MALFORMED_CSV, f"cannot read the CSV row ({exc})",
                   line=reader.line_num, filename=filename) from None


def _expected_headers(task: TaskSpec) -> str:
    scores = "id," + ",".join(task.classes)
    if len(scores) > 120:
        scores = scores[:117] + "..."
    if task.kind == "classification":
        return f"'id,label' or '{scores}' ({task.num_classes + 1} columns)"
    return f"'{scores}' ({task.num_classes + 1} columns)"


def _header_layout(fields: list[str], line: int, task: TaskSpec, filename: str | None) -> str:
    """'labels' or 'scores', or a wrong_header error saying what was expected."""
    folded = [f.casefold() for f in fields]
    found = shown(",".join(fields), 80)

    def wrong(detail: str, column: int | None = None) -> Exception:
        return fail(ErrorCode.WRONG_HEADER,
                    f"{detail}; expected the header {_expected_headers(task)}, found {found}",
                    line=line, column=column, filename=filename)

    if folded[0] not in ID_HEADERS:
        looks_like_data = bool(_NUMBER.fullmatch(fields[-1])) or fields[-1] in task.classes
        hint = "the first line must be a header row" if looks_like_data else \
            "the first column must be named id"
        raise wrong(hint, column=1)
    if len(fields) == 2 and folded[1] in LABEL_HEADERS:
        if task.kind != "classification":
            raise wrong(f"a {task.kind} task needs one score column per class, not labels",
                        column=2)
        return "labels"
    classes = [c.casefold() for c in task.classes]
    if folded[1:] == classes:
        return "scores"
    if sorted(folded[1:]) == sorted(classes):
        raise wrong("the class columns are not in the task's order")
    if len(fields) != len(classes) + 1:
        raise wrong(f"{len(fields)} columns")
    for k, (got, want) in enumerate(zip(folded[1:], classes)):
        if got != want:
            raise wrong(f"column {k + 2} should be {task.classes[k]!r}", column=k + 2)
    raise wrong("unexpected header")  # pragma: no cover - the loop above always finds one


# --------------------------------------------------------------------------- id matching

class _IdMatcher:
    """Maps ids to split rows, reporting unknown, duplicate and (at the end) missing ids."""

    def __init__(self, split: Split, filename: str | None):
        self.index, self.split, self.filename = split.id_index, split, filename
        self.line_of_row: dict[int, int] = {}

    def add(self, ident: str, line: int) -> int:
        row = self.index.get(ident)
        if row is None:
            what = "the id cell is empty" if not ident else \
                f"id {shown(ident)} is not an id of the test split"
            raise fail(ErrorCode.UNKNOWN_ID, what, line=line, column=1, filename=self.filename)
        first = self.line_of_row.get(row)
        if first is not None:
            raise fail(ErrorCode.DUPLICATE_ID,
                       f"id {shown(ident)} appears twice, on line {first} and line {line}",
                       line=line, column=1, filename=self.filename)
        self.line_of_row[row] = line
        return row

    def finish(self) -> None:
        n = self.split.n
        if len(self.line_of_row) == n:
            return
        missing = [i for r, i in enumerate(self.split.ids) if r not in self.line_of_row]
        first = ", ".join(shown(i) for i in missing[:MAX_SHOWN_IDS])
        more = ", ..." if len(missing) > MAX_SHOWN_IDS else ""
        raise fail(ErrorCode.MISSING_IDS,
                   f"{len(missing)} of the {n} ids of the test split have no row "
                   f"(first missing: {first}{more})", filename=self.filename)


# --------------------------------------------------------------------------- fast path

def _body_start(data: bytes, text: str, header_line: int) -> int:
    """Byte offset in `data` of the line after the header, which ends physical line
    `header_line` (the csv reader's line_num, blank lines before it included)."""
    end = 0
    for _, m in zip(range(header_line), _LINE.finditer(text)):
        end = m.end()
    return len(text[:end].encode("utf-8")) + (len(BOM) if data.startswith(BOM) else 0)


def _split_order(ids: list[str], split: Split) -> np.ndarray | None:
    """Split row of each file row if the file has every split id exactly once, else None
    (unknown, empty, duplicate or missing ids: the validator reports which, and where)."""
    if len(ids) != split.n:
        return None
    get = split.id_index.get
    rows = [get(i, -1) for i in ids]
    order = np.array(rows, dtype=np.int64)
    if split.n and (order.min() < 0 or not np.bincount(order, minlength=split.n).all()):
        return None      # n known ids with none missing are n distinct ids
    return order


def _fast_labels(data: bytes, start: int, task: TaskSpec, split: Split) -> np.ndarray | None:
    read = arrow_csv.read_body(data, start, n_strings=2, n_floats=0)
    if read is None:
        return None
    (ids, cells), _ = read
    order = _split_order(ids, split)
    if order is None:
        return None
    # The exact spellings the validator accepts without doubt: class names and plain indices.
    # Anything else ("01", "+1", " cat") is left to the validator, which knows every rule.
    lookup = {str(k): k for k in range(task.num_classes)}
    lookup.update((c, k) for k, c in enumerate(task.classes))
    labels = [lookup.get(c, -1) for c in cells]
    if -1 in labels:
        return None
    out = np.empty(split.n, dtype=np.int64)
    out[order] = labels
    return out


def _fast_scores(data: bytes, start: int, task: TaskSpec, split: Split) -> np.ndarray | None:
    read = arrow_csv.read_body(data, start, n_strings=1, n_floats=task.num_classes)
    if read is None:
        return None
    (ids,), values = read
    order = _split_order(ids, split)
    # NaN/inf and out-of-range probabilities: the validator names the line and column.
    if order is None or bad_score_mask(values, task) is not None:
        return None
    out = np.empty_like(values)
    out[order] = values
    return out


# --------------------------------------------------------------------------- labels

def _class_index(cell: str, task: TaskSpec, names: dict[str, int], line: int,
                 filename: str | None) -> int:
    k = names.get(cell)
    if k is not None:
        return k
    if _INT.fullmatch(cell):
        k = int(cell)
        if 0 <= k < task.num_classes:
            return k
        raise fail(ErrorCode.CLASS_OUT_OF_RANGE,
                   f"class index {shown(cell)} is out of range; expected 0..{task.num_classes - 1}",
                   line=line, column=2, filename=filename)
    folded = {c.casefold(): c for c in task.classes}
    hint = f" (did you mean {folded[cell.casefold()]!r}? names are case-sensitive)" \
        if cell.casefold() in folded else ""
    what = "the label cell is empty" if not cell else f"{shown(cell)} is not a class of this task"
    raise fail(ErrorCode.UNKNOWN_CLASS,
               f"{what}{hint}; expected a class index 0..{task.num_classes - 1} or a class name: "
               f"{class_list(task)}", line=line, column=2, filename=filename)


def _parse_labels(rows: Iterator[tuple[int, list[str]]], task: TaskSpec, split: Split,
                  filename: str | None) -> Predictions:
    names = {c: k for k, c in enumerate(task.classes)}
    matcher = _IdMatcher(split, filename)
    out = np.full(split.n, -1, dtype=np.int64)
    for line, fields in rows:
        if len(fields) != 2:
            raise fail(ErrorCode.WRONG_COLUMN_COUNT,
                       f"line {line} has {len(fields)} columns, expected 2 (id,label)",
                       line=line, filename=filename)
        row = matcher.add(fields[0], line)
        out[row] = _class_index(fields[1], task, names, line, filename)
    matcher.finish()
    return Predictions(labels=out, source_format="csv-labels")


# --------------------------------------------------------------------------- scores

def _slow_score_rows(rows: Iterator[tuple[int, list[str]]], task: TaskSpec, matcher: _IdMatcher,
                     filename: str | None) -> tuple[list[int], list[int], np.ndarray]:
    k = task.num_classes
    split_rows: list[int] = []
    numbers: list[int] = []
    values: list[list[float]] = []
    for line, fields in rows:
        if len(fields) != k + 1:
            raise fail(ErrorCode.WRONG_COLUMN_COUNT,
                       f"line {line} has {len(fields)} columns, expected {k + 1} (id and one "
                       "score per class)", line=line, filename=filename)
        split_rows.append(matcher.add(fields[0], line))
        cells = fields[1:]
        try:
            row = [float(c) for c in cells]
            ok = True
        except ValueError:
            ok = False
        if not ok or any(not _NUMBER.fullmatch(c) for c in cells):
            for col, cell in enumerate(cells, start=2):
                if not _NUMBER.fullmatch(cell):
                    what = "the cell is empty" if not cell else f"{shown(cell)} is not a number"
                    raise fail(ErrorCode.NOT_A_NUMBER, f"{what}; expected a score",
                               line=line, column=col, filename=filename)
        numbers.append(line)
        values.append(row)
    arr = np.array(values, dtype=np.float64).reshape(len(values), k)
    return split_rows, numbers, arr


def _check_scores(values: np.ndarray, numbers: list[int], task: TaskSpec,
                  filename: str | None) -> None:
    found = bad_score_mask(values, task)
    if found is None:
        return
    mask, code = found
    r, c = first_bad(mask)  # type: ignore[misc]
    raise fail(code, describe_bad_value(code, float(values[r, c])), line=numbers[r],
               column=c + 2, filename=filename)


def _parse_scores(rows: Iterator[tuple[int, list[str]]], task: TaskSpec, split: Split,
                  filename: str | None) -> Predictions:
    k = task.num_classes
    matcher = _IdMatcher(split, filename)
    split_rows, numbers, values = _slow_score_rows(rows, task, matcher, filename)
    _check_scores(values, numbers, task, filename)
    matcher.finish()
    out = np.empty((split.n, k), dtype=np.float64)
    out[np.asarray(split_rows, dtype=np.int64)] = values
    return Predictions(scores=out, source_format="csv-scores")


# --------------------------------------------------------------------------- entry point

def parse_csv(data: bytes, task: TaskSpec, split: Split, filename: str | None = None, *,
              cpu_budget_s: float | None = None) -> Predictions:
    """Parse and validate CSV predictions. `cpu_budget_s` bounds the row-by-row validator
    (the server's per-upload limit); the fast path is bounded by the file's size."""
    if task.kind == "segmentation":
        raise fail(ErrorCode.UNSUPPORTED_FORMAT,
                   "segmentation predictions must be a .npy or .npz array of shape "
                   f"(N, {task.num_classes}, H, W); CSV text is not accepted", filename=filename)
    budget = _CpuBudget(cpu_budget_s)
    _check_line_count(data, split, filename)
    limit = line_limit(task, split)
    # Before decoding and before either reader: pyarrow's fast path reads the same bytes.
    _check_line_lengths(data, limit, filename)
    text = decode_csv_text(data, filename)
    rows = _rows(text, filename, budget, _LineFeed(text, limit, filename))
    first = next(rows, None)
    if first is None:
        raise fail(ErrorCode.EMPTY_FILE, "the file has no rows", filename=filename)
    line, header = first
    layout = _header_layout(header, line, task, filename)
    start = _body_start(data, text, line)
    if layout == "labels":
        labels = _fast_labels(data, start, task, split)
        if labels is not None:
            return Predictions(labels=labels, source_format="csv-labels")
        return _parse_labels(rows, task, split, filename)
    scores = _fast_scores(data, start, task, split)
    if scores is not None:
        return Predictions(scores=scores, source_format="csv-scores")
    return _parse_scores(rows, task, split, filename)
