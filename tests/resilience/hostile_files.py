"""The battery of malformed prediction files: (name, bytes, filename, status, code, words the
message must contain). Built for a 200-item, 4-class task (ids img00000…, classes c000…c003)."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np

from tests.service.helpers import ids_for

N, K = 200, 4
CLASSES = [f"c{i:03d}" for i in range(K)]
IDS = ids_for(N)


def _labels_csv(rows=None, header="id,label") -> bytes:
    rows = rows if rows is not None else [f"{i},{CLASSES[j % K]}" for j, i in enumerate(IDS)]
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def _scores_csv(cell=lambda r, c: "0.25", header=None) -> bytes:
    header = header or "id," + ",".join(CLASSES)
    rows = [i + "," + ",".join(cell(r, c) for c in range(K)) for r, i in enumerate(IDS)]
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _zip_bomb(uncompressed_mb: int) -> bytes:
    """An .npz whose one entry is a valid .npy header followed by `uncompressed_mb` MB of zeros:
    ~1 MB compressed per GB. The parser must refuse it by its declared size, not inflate it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False,
                                                  "shape": (uncompressed_mb * 131072,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("arr_0.npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        chunk = bytes(1 << 20)
        for _ in range(uncompressed_mb):
            f.write(chunk)
    return buf.getvalue()


def _rows_except(k: int, replacement: str | None) -> list[str]:
    rows = [f"{i},{CLASSES[j % K]}" for j, i in enumerate(IDS)]
    if replacement is None:
        del rows[k]
    else:
        rows[k] = replacement
    return rows


def cases(zip_bomb_mb: int = 512) -> list[tuple[str, bytes, str, int, str, tuple[str, ...]]]:
    ok = _labels_csv()
    wide = 10_000_000
    return [
        # --- every CSV validation rule ---
        ("empty file", b"", "p.csv", 400, "empty_file", ("empty",)),
        ("only whitespace", b"  \n\n \n", "p.csv", 400, "empty_file", ("empty",)),
        ("header only", b"id,label\n", "p.csv", 422, "missing_ids", ("have no row",)),
        ("no header row", "\n".join(_rows_except(0, f"{IDS[0]},{CLASSES[0]}")).encode(), "p.csv", 422,
         "wrong_header", ("header",)),
        ("first column not id", _labels_csv(header="name,label"), "p.csv", 422, "wrong_header", ("id",)),
        ("class columns out of order", _scores_csv(header="id," + ",".join(reversed(CLASSES))), "p.csv", 422,
         "wrong_header", ("order",)),
        ("too few score columns", _scores_csv(header="id,c000,c001"), "p.csv", 422, "wrong_header", ("columns",)),
        ("row with 3 columns", _labels_csv(_rows_except(5, f"{IDS[5]},c000,c001")), "p.csv", 422,
         "wrong_column_count", ("line 7",)),
        ("row with 1 column", _labels_csv(_rows_except(5, IDS[5])), "p.csv", 422, "wrong_column_count", ("line 7",)),
        ("unknown id", _labels_csv(_rows_except(3, "img99999,c000")), "p.csv", 422, "unknown_id", ("img99999",)),
        ("duplicate id", _labels_csv(_rows_except(3, f"{IDS[2]},c000")), "p.csv", 422, "duplicate_id", (IDS[2],)),
        ("missing ids", _labels_csv(_rows_except(N - 1, None)), "p.csv", 422, "missing_ids", (IDS[N - 1],)),
        ("unknown class name", _labels_csv(_rows_except(4, f"{IDS[4]},zebra")), "p.csv", 422, "unknown_class",
         ("zebra",)),
        ("empty label cell", _labels_csv(_rows_except(4, f"{IDS[4]},")), "p.csv", 422, "unknown_class", ("empty",)),
        ("class index out of range", _labels_csv(_rows_except(4, f"{IDS[4]},7")), "p.csv", 422,
         "class_out_of_range", ("7",)),
        ("negative class index", _labels_csv(_rows_except(4, f"{IDS[4]},-1")), "p.csv", 422,
         "class_out_of_range", ("-1",)),
        ("score NaN", _scores_csv(lambda r, c: "nan" if (r, c) == (9, 2) else "0.25"), "p.csv", 422,
         "not_finite", ("line 11",)),
        ("score infinite", _scores_csv(lambda r, c: "inf" if (r, c) == (9, 2) else "0.25"), "p.csv", 422,
         "not_finite", ("line 11",)),
        ("score not a number", _scores_csv(lambda r, c: "abc" if (r, c) == (9, 2) else "0.25"), "p.csv", 422,
         "not_a_number", ("abc",)),
        ("unbalanced quote", _labels_csv(_rows_except(6, f'"{IDS[6]},c000')), "p.csv", 422, None, ("line",)),
        # --- not text / not UTF-8 ---
        ("invalid UTF-8", ok.replace(b"c001", b"c0\xff1", 1), "p.csv", 415, "not_utf8", ("UTF-8",)),
        ("UTF-16 text", ok.decode().encode("utf-16"), "p.csv", 415, None, ()),
        ("NUL bytes in text", ok.replace(b"\n", b"\x00\n", 3), "p.csv", 415, "binary_content", ()),
        ("PNG image", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "p.csv", 415, "binary_content", ("PNG",)),
        ("ELF executable", b"\x7fELF\x02\x01\x01" + bytes(2000), "p.csv", 415, "binary_content", ()),
        ("random binary garbage", np.random.default_rng(1).bytes(50_000), "p.csv", 415, None, ()),
        ("gzip-compressed CSV", gzip.compress(ok), "p.csv.gz", 415, "binary_content", ()),
        # --- arrays ---
        ("npy wrong shape", _npy(np.zeros((N, 2), np.int64)), "p.npy", 422, "wrong_shape", ("shape",)),
        ("npy wrong length", _npy(np.zeros(N - 1, np.int64)), "p.npy", 422, "wrong_shape", ("199",)),
        ("npy float labels", _npy(np.zeros(N, np.float32) + 0.5), "p.npy", 422, "wrong_dtype", ()),
        ("npy object array (pickle)", _npy(np.array(["x"] * N, dtype=object)), "p.npy", 422, "wrong_dtype",
         ("object",)),
        ("npy class index out of range", _npy(np.full(N, 9, np.int64)), "p.npy", 422, "class_out_of_range", ("9",)),
        ("npy scores with NaN", _npy(np.where(np.eye(N, K) > 0, np.nan, 0.25).astype(np.float32)), "p.npy", 422,
         "not_finite", ()),
        ("npy truncated", _npy(np.zeros(N, np.int64))[:-100], "p.npy", 422, "bad_array", ("truncated",)),
        ("npy corrupt header", b"\x93NUMPY\x01\x00\x10\x00{'descr': garbage" + bytes(100), "p.npy", 422,
         "bad_array", ()),
        ("npz with two unknown arrays", _npz(a=np.zeros(N, np.int64), b=np.zeros(N, np.int64)), "p.npz", 422,
         "npz_arrays", ("2 arrays",)),
        ("empty zip (npz with no arrays)", _npz(), "p.npz", 415, "binary_content", ("binary",)),
        ("corrupt zip", b"PK\x03\x04" + bytes(500), "p.npz", 422, "bad_array", ()),
        (f"zip bomb ({zip_bomb_mb} MB inflated)", _zip_bomb(zip_bomb_mb), "p.npz", 422, None, ()),
        # --- sizes ---
        # Lines longer than a row of the task can be are refused before anything splits them.
        ("10^7 columns in a row", b"id,label\n" + IDS[0].encode() + b"," * wide + b"\n", "p.csv", 422,
         "line_too_long", ("line 2", "at most")),
        ("10^7 columns in the header", b"id" + b"," * wide + b"\n", "p.csv", 422, "line_too_long",
         ("line 1", "at most")),
        ("very long line (12 MB cell)", _labels_csv(_rows_except(4, f"{IDS[4]}," + "z" * 12_000_000)), "p.csv", 422,
         "line_too_long", ("line 6", "12,000,009 bytes")),
        ("very long id (1 MB)", _labels_csv(_rows_except(4, "i" * 1_000_000 + ",c000")), "p.csv", 422,
         "line_too_long", ("line 6", "1,000,005 bytes")),
        ("file over the task's cap", b"id,label\n" + b"x" * 17_000_000, "p.csv", 413, "too_large", ("MB",)),
    ]
