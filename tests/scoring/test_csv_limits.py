"""Limits on what reading one CSV may cost: lines far beyond the split's size, and lines (or rows)
far wider than a row of the task, are refused before parsing; the row-by-row validator stops at
its CPU-time budget."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from scoring.errors import PredictionFormatError
from scoring.parsers import ErrorCode, arrow_csv, parse_predictions
from scoring.parsers.csv_format import EXTRA_LINES, FIELD_WIDTH, line_limit
from scoring.splits import MAX_ID_LENGTH, load_split, write_split
from scoring.tasks import parse_task

CLS = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                  "metric": "accuracy", "split": "pets"}, "t")
N = 2000
IDS = [f"x{i}" for i in range(N)]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "s"
    write_split(root, np.arange(N) % 3, ids=IDS, seed=0)
    return load_split(root, CLS)


def _rows(newline: str = "\n") -> str:
    return newline.join(["id,label", *(f"{i},cat" for i in IDS)]) + newline


def _error(data: bytes, split, **kw) -> PredictionFormatError:
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, CLS, split, **kw)
    return ei.value


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_blank_line_padding_is_refused_before_parsing(split, newline):
    padded = (_rows(newline) + newline * 6_000_000 + "x0,dog" + newline).encode()   # fails on its last line
    t0 = time.process_time()
    err = _error(padded, split)
    assert time.process_time() - t0 < 1.0
    assert err.code == ErrorCode.TOO_MANY_LINES and err.line is None
    assert f"the file has {N + 1 + 6_000_001} lines" in str(err)
    assert f"({N} rows), at most {N + 1 + EXTRA_LINES} lines" in str(err)


def test_blank_lines_up_to_the_slack_are_fine(split):
    lines = _rows().splitlines()
    text = "\n".join([lines[0], *([""] * (EXTRA_LINES - 1)), *lines[1:]]) + "\n"
    assert parse_predictions(text.encode(), CLS, split).labels.tolist() == [0] * N


def test_row_by_row_validation_stops_at_its_cpu_budget(split):
    slow = (_rows().replace("x1999,cat", "zzz,cat")).encode()   # an unknown id on the last line
    assert _error(slow, split).code == ErrorCode.UNKNOWN_ID     # no budget: read to the end
    assert _error(slow, split, cpu_budget_s=10.0).code == ErrorCode.UNKNOWN_ID
    err = _error(slow, split, cpu_budget_s=1e-9)
    assert err.code == ErrorCode.TIME_LIMIT and err.line is not None and err.line < N
    assert "more than 1e-09 s of CPU time" in str(err)


# --------------------------------------------------------------------------- line length

def _wide_line(megabytes: float) -> bytes:
    """One header line of millions of two-letter fields: few lines, so the line cap passes it."""
    return b"id," + b"ab," * int(megabytes * 1e6 / 3) + b"\n"


def test_a_wide_line_is_refused_before_it_is_split_into_fields(split):
    data = _wide_line(8)
    tracemalloc.start()
    try:
        t0 = time.process_time()
        err = _error(data, split, cpu_budget_s=0.5)
        seconds = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Splitting this line took ~50x its size (388 MB for 8 MB); refusing it copies nothing.
    assert peak < len(data) / 4, f"peak {peak / 1e6:.1f} MB for a {len(data) / 1e6:.1f} MB file"
    assert seconds < 0.5
    limit = line_limit(CLS, split)
    assert err.code == ErrorCode.LINE_TOO_LONG and err.line == 1
    assert f"the line is {len(data) - 1:,} bytes long" in str(err)
    assert f"a row of this task is at most {limit:,} bytes" in str(err)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_long_row_is_named_by_its_line(split, newline, monkeypatch):
    rows = _rows(newline).split(newline)
    rows[5] = rows[5] + " " * 50_000          # x4,cat padded: valid once stripped, but far too long
    data = newline.join(rows).encode()
    # The check runs before either reader: pyarrow's fast path never sees the file.
    monkeypatch.setattr(arrow_csv, "read_body", lambda *a, **k: pytest.fail("fast path reached"))
    err = _error(data, split)
    assert err.code == ErrorCode.LINE_TOO_LONG and err.line == 6
    assert f"the line is {len(rows[5]):,} bytes long" in str(err)


def test_quoted_line_breaks_cannot_stretch_one_row_past_the_limit(split):
    # Every physical line is short, but the quotes keep one row open over thousands of lines,
    # and each line adds hundreds of fields to it (190 MB of strings for an 8 MB file).
    stretch = b'"' + b",ab" * 600 + b',"\n'
    data = b'id,label\nx0,"\n' + stretch * 1500 + b'"\n'
    tracemalloc.start()
    try:
        err = _error(data, split)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.code == ErrorCode.LINE_TOO_LONG and err.line == 2
    assert "runs on over quoted line breaks" in str(err)
    assert peak < 4 * len(data)


def test_rows_as_wide_as_the_task_allows_are_read(tmp_path):
    """The bound is the task's widest row: class names (here longer than the slack on their
    own), 64-character cells, the longest id."""
    classes = [f"class_{k:03d}_" + "n" * 100 for k in range(100)]
    task = parse_task({"name": "wide", "kind": "classification", "classes": classes,
                       "metric": "accuracy", "split": "wide"}, "t")
    ids = [f"{k}" + "i" * (MAX_ID_LENGTH - 1) for k in range(5)]
    wide = load_split(write_split(tmp_path / "s", np.zeros(5, dtype=int), ids=ids, seed=0), task)
    cell = "0." + "0" * (FIELD_WIDTH - 3) + "1"
    assert len(cell) == FIELD_WIDTH
    text = "\n".join(["id," + ",".join(classes), *(f"{i}," + ",".join([cell] * 100) for i in ids)])
    scores = parse_predictions(text.encode(), task, wide).scores
    assert scores.shape == (5, 100) and np.all(scores == float(cell))


def test_the_cpu_budget_counts_cells_as_well_as_rows(split):
    # One row of 4,000 cells (under the line limit) is enough for a look at the clock: the
    # budget does not wait for 256 rows when the rows are wide.
    data = ("id,label\nx0," + "a," * 4000 + "\n").encode()
    assert len(data) < line_limit(CLS, split)
    assert _error(data, split).code == ErrorCode.WRONG_COLUMN_COUNT
    err = _error(data, split, cpu_budget_s=1e-9)
    assert err.code == ErrorCode.TIME_LIMIT and err.line == 2
