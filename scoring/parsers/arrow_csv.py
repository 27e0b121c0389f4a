"""Fast path for the body of a well-formed CSV: pyarrow's C++ reader, then whole-array checks.

Only a fast path. Every function here returns None when anything is unusual, and the caller
then runs the row-by-row validator, which finds the problem and names its line and column.
So this module never writes an error message; it must only never accept a cell that the
validator rejects, nor read a cell to a different value. Why that holds:

- Types are given, never inferred: id and label columns are read as strings (so "007" and
  "1e3" stay ids), score columns as float64. Arrow's float converter is correctly rounded,
  so values are bit-identical to Python's float() (tested for %.6f, %.4e, repr, %.18e).
- Arrow's float syntax is a subset of the validator's: decimal with optional sign and
  exponent, plus nan/inf spellings. Those parse to non-finite floats, which the caller
  declines so that the validator reports them (tested by fuzzing cells).
- No null values: an empty or "NA" cell is a conversion error, i.e. a fallback.
- Arrow trims spaces and tabs around numbers (as the validator's str.strip does) but not
  around strings: an id or label with surrounding spaces matches nothing and falls back.
- A wrong column count anywhere is a parse error, i.e. a fallback.

pyarrow is imported inside the function: `import scoring.parsers` stays light (the API and the
CLI import it), and only a CSV upload pays for loading pyarrow, once per process.
"""

from __future__ import annotations

import numpy as np


def read_body(data: bytes, start: int, n_strings: int,
              n_floats: int) -> tuple[list[list[str]], np.ndarray] | None:
    """The CSV rows in data[start:] (no header) as `n_strings` string columns (Python lists)
    and a float64 matrix (rows, n_floats), in file order; None if Arrow cannot read them so."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{j}" for j in range(n_strings + n_floats)]
    types = {name: pa.string() if j < n_strings else pa.float64() for j, name in enumerate(names)}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data).slice(start),
            # One thread: the grading machines' cores are shared with other work.
            # Arrow's default 1 MiB blocks stay in cache; larger ones measured slower.
            read_options=pacsv.ReadOptions(use_threads=False, column_names=names),
            # csv-module defaults: '"' quotes, doubled to escape; no backslash escapes.
            parse_options=pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True,
                                             escape_char=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[],
                                                 strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False,
                                                 include_columns=names),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_columns != len(names) or any(col.null_count for col in table.columns):
        return None
    strings = [table.column(j).to_pylist() for j in range(n_strings)]
    values = np.empty((table.num_rows, n_floats), dtype=np.float64)
    for j in range(n_floats):
        values[:, j] = table.column(n_strings + j).to_numpy()
    return strings, values
