"""Every kind of prediction-file error, in one place.

The values are the stable `code` of `PredictionFormatError` (and of the API's error JSON);
tests and docs refer to these members, never to literal strings.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    EMPTY_FILE = "empty_file"                    # no bytes, or only whitespace
    NOT_UTF8 = "not_utf8"                        # CSV text that does not decode as UTF-8
    BINARY_CONTENT = "binary_content"            # neither .npy, .npz nor text
    WRONG_HEADER = "wrong_header"                # header row is not one of the accepted forms
    WRONG_COLUMN_COUNT = "wrong_column_count"    # a row has more/fewer columns than the header
    UNKNOWN_ID = "unknown_id"                    # an id that is not in the split
    DUPLICATE_ID = "duplicate_id"                # an id on two lines
    MISSING_IDS = "missing_ids"                  # split ids with no row
    NOT_A_NUMBER = "not_a_number"                # a score cell that is not a number
    NOT_FINITE = "not_finite"                    # NaN or +-inf
    OUT_OF_RANGE = "out_of_range"                # a probability outside [0, 1]
    CLASS_OUT_OF_RANGE = "class_out_of_range"    # class index outside 0..K-1
    UNKNOWN_CLASS = "unknown_class"              # class name not in the task
    WRONG_SHAPE = "wrong_shape"                  # array shape differs from the expected one
    WRONG_DTYPE = "wrong_dtype"                  # array dtype not accepted (object arrays included)
    NPZ_ARRAYS = "npz_arrays"                    # .npz with none or several arrays and no known key
    BAD_ARRAY = "bad_array"                      # truncated/corrupt .npy or .npz
    MALFORMED_CSV = "malformed_csv"              # the csv module cannot split the text into rows
    UNSUPPORTED_FORMAT = "unsupported_format"    # e.g. a CSV for a segmentation task
    ARCHIVE_TOO_LARGE = "archive_too_large"      # a zip (.npz) whose directory lists too many entries
    TOO_COMPRESSED = "too_compressed"            # an .npz member that expands far more than data does
    TOO_MANY_LINES = "too_many_lines"            # far more lines than the split has items
    TIME_LIMIT = "validation_time_limit"         # checking the file ran past its CPU-time budget
    LINE_TOO_LONG = "line_too_long"              # a line (or a row) far longer than a row of the task

    def __str__(self) -> str:
        return self.value
