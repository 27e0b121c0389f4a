"""The CSV fast path (pyarrow) against the row-by-row validator.

The fast path may decline any file (the validator then reads it), but when it accepts one it
must give bit-identical arrays, and it must never accept a file the validator rejects: every
error message comes from the validator, with its line and column.
"""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from scoring.errors import PredictionFormatError
from scoring.parsers import ErrorCode, csv_format, parse_predictions
from scoring.parsers.text import decode_csv_text
from scoring.splits import load_split, write_split
from scoring.tasks import parse_task

CLASSES = ["cat", "dog", "bird"]
CLS = parse_task({"name": "pets", "kind": "classification", "classes": CLASSES,
                  "metric": "accuracy", "split": "pets"}, "t")
PROB = parse_task({"name": "pets", "kind": "classification", "classes": CLASSES,
                   "metric": "accuracy", "split": "pets", "scores": "probabilities"}, "t")
ML = parse_task({"name": "voc", "kind": "multilabel", "classes": CLASSES,
                 "metric": "mean_ap", "ap": "step", "split": "voc"}, "t")
N = 300
RNG = np.random.default_rng(2024)

# The four formats students write (np.savetxt %.6f / %.4e, Python repr via csv.writer or
# pandas, %.18e = np.savetxt's default), then the edge formats the old block converter was
# tested on.
FORMATS = ["{:.6f}", "{:.4e}", "{!r}", "{:.18e}"]
EDGE_FORMATS = ["{:.0f}", "{:.1f}", "{:.15f}", "{:.16f}", "{:+.5f}", "{:.6E}", "{:g}", "{:.14e}"]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "s"
    return load_split(write_split(root, np.zeros(N, dtype=int),
                                  ids=[f"img{i:04d}" for i in range(N)], seed=0), CLS)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "small"
    return load_split(write_split(root, np.full(4, 2), ids=["a", "b", "c", "d"], seed=0), CLS)


def fast(data: bytes, task, split):
    """The fast path's result (scores or labels aligned to the split), or None if it declined."""
    text = decode_csv_text(data)
    rows = csv_format._rows(text, None)
    line, header = next(rows)
    start = csv_format._body_start(data, text, line)
    if csv_format._header_layout(header, line, task, None) == "labels":
        return csv_format._fast_labels(data, start, task, split)
    return csv_format._fast_scores(data, start, task, split)


def precise(data: bytes, task, split):
    """The row-by-row validator alone (raises PredictionFormatError like the service)."""
    rows = csv_format._rows(decode_csv_text(data), None)
    line, header = next(rows)
    if csv_format._header_layout(header, line, task, None) == "labels":
        return csv_format._parse_labels(rows, task, split, None).labels
    return csv_format._parse_scores(rows, task, split, None).scores


@pytest.fixture
def fast_only(monkeypatch):
    """Make the validator unavailable: the test proves the fast path read the file."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fast path declined this file")
    monkeypatch.setattr(csv_format, "_parse_scores", refuse)
    monkeypatch.setattr(csv_format, "_parse_labels", refuse)


def scores_csv(values: np.ndarray, ids: list[str], fmt: str, header: str = "id,cat,dog,bird",
               order: np.ndarray | None = None, eol: str = "\n") -> bytes:
    order = np.arange(len(ids)) if order is None else order
    lines = [header] + [ids[i] + "," + ",".join(fmt.format(float(x)) for x in values[i])
                        for i in order]
    return (eol.join(lines) + eol).encode()


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


# --------------------------------------------------------------------------- identical values

@pytest.mark.parametrize("fmt", FORMATS + EDGE_FORMATS)
@pytest.mark.parametrize("dist", ["uniform", "wide", "tiny"])
def test_fast_and_precise_are_bit_identical(split, fmt, dist):
    v = {"uniform": RNG.random((N, 3)), "wide": RNG.normal(0, 30, (N, 3)),
         "tiny": RNG.random((N, 3)) * 1e-4}[dist]
    v[0] = [0.0, 1e-22, 9.999999e21] if dist == "wide" else v[0]
    ids = [f"img{i:04d}" for i in range(N)]
    data = scores_csv(v, ids, fmt, order=RNG.permutation(N))
    got = fast(data, CLS, split)
    assert got is not None, "the fast path should read a plain file"
    ref = precise(data, CLS, split)
    expected = np.array([[float(fmt.format(float(x))) for x in row] for row in v])
    assert np.array_equal(bits(got), bits(ref))
    assert np.array_equal(bits(got), bits(expected))           # Python's float(), bit for bit


def test_multilabel_uses_the_fast_path(split, fast_only):
    v = RNG.random((N, 3))
    data = scores_csv(v, [f"img{i:04d}" for i in range(N)], "{!r}")
    assert np.array_equal(bits(parse_predictions(data, ML, split).scores), bits(v))


def test_labels_fast_and_precise_agree(split, fast_only):
    labels = RNG.integers(0, 3, N)
    cells = [CLASSES[k] if i % 2 else str(k) for i, k in enumerate(labels)]
    order = RNG.permutation(N)
    data = ("Id,Prediction1\n" + "".join(f"img{i:04d},{cells[i]}\n" for i in order)).encode()
    assert parse_predictions(data, CLS, split).labels.tolist() == labels.tolist()


@pytest.mark.parametrize("cell,k", [("01", 1), ("+2", 2), ("-0", 0), (" dog", 1)])
def test_unusual_label_spellings_fall_back_and_still_parse(small, cell, k):
    data = f"id,label\na,{cell}\nb,0\nc,0\nd,0\n".encode()
    assert fast(data, CLS, small) is None
    assert parse_predictions(data, CLS, small).labels.tolist() == [k, 0, 0, 0]


# --------------------------------------------------------------------------- ids stay strings

STRING_IDS = ["007", "7", "1e3", "1000", "1.0", "1", "nan", "inf", "true", "0x10", "-0", "0"]


@pytest.fixture(scope="module")
def numeric_ids(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "ids"
    return load_split(write_split(root, np.zeros(len(STRING_IDS), dtype=int), ids=STRING_IDS,
                                  seed=0), CLS)


def test_numeric_looking_ids_stay_strings(numeric_ids, fast_only):
    v = np.arange(len(STRING_IDS) * 3, dtype=float).reshape(-1, 3) / 100
    order = np.arange(len(STRING_IDS))[::-1]
    p = parse_predictions(scores_csv(v, STRING_IDS, "{!r}", order=order), CLS, numeric_ids)
    assert np.array_equal(p.scores, v)          # "007" is not "7", "1e3" is not "1000"
    labels = "id,label\n" + "".join(f"{i},{k % 3}\n" for k, i in enumerate(STRING_IDS))
    p = parse_predictions(labels.encode(), CLS, numeric_ids)
    assert p.labels.tolist() == [k % 3 for k in range(len(STRING_IDS))]


def test_numeric_ids_that_differ_only_as_numbers_are_not_matched(numeric_ids):
    rows = [("7.0" if i == "7" else i) for i in STRING_IDS]      # '7.0' is no id of the split
    data = ("id,label\n" + "".join(f"{i},0\n" for i in rows)).encode()
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, CLS, numeric_ids)
    assert ei.value.code == ErrorCode.UNKNOWN_ID and "'7.0'" in str(ei.value)
    assert ei.value.line == 3 and ei.value.column == 1


# --------------------------------------------------------------------------- text variants

SCORES = "id,cat,dog,bird\na,0.1,0.2,0.7\nb,0.5,0.25,0.25\nc,1,0,0\nd,0,0,1\n"
EXPECTED = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("transform", [
    lambda s: "\ufeff" + s,                                            # BOM
    lambda s: s.replace("\n", "\r\n"),                                  # CRLF
    lambda s: s.replace("\n", "\r"),                                    # old Mac line ends
    lambda s: "\ufeff" + s.replace("\n", "\r\n"),                       # Excel: both
    lambda s: "\n\n" + s + "\n\n",                                      # blank lines around
    lambda s: s.replace("\nc,", "\n\nc,"),                              # a blank line inside
    lambda s: s.replace(",0.", ", 0.").replace(",1", ", 1"),            # spaces after commas
    lambda s: s.replace("0.2,", "0.2 ,").replace(",0.7", ",\t0.7"),     # spaces/tabs by numbers
    lambda s: s.rstrip("\n"),                                           # no final newline
    lambda s: s.replace("\na,", '\n"a",').replace("\nb,", '\n"b",'),    # R write.csv: quoted ids
    lambda s: s.replace("0.25,0.25", '"0.25","0.25"'),                  # quoted numbers
    lambda s: s.replace("id,cat,dog,bird", '"id","cat","dog","bird"'),  # quoted header
    lambda s: s.replace("id,cat,dog,bird", " ID , Cat,Dog ,BIRD"),      # header case, spaces
])
def test_plain_variants_take_the_fast_path(small, fast_only, transform):
    assert np.array_equal(parse_predictions(transform(SCORES).encode(), CLS, small).scores,
                          EXPECTED)


@pytest.mark.parametrize("transform", [
    lambda s: s.replace("\na,", "\n a ,"),                              # spaces around an id
    lambda s: s.replace("\na,", '\n "a",'),                             # space before a quote
    lambda s: s.replace(",0.5,", ', "0.5" ,'),                          # spaced quoted number
    lambda s: s.replace("\nc,", "\n   \nc,"),                           # a line of spaces
    lambda s: s.replace("\na,", '\n"a"\t,'),                            # tab after a quote
    lambda s: s.replace("\na,", '\n"a\n",'),                            # newline inside quotes
    lambda s: s.replace("0.7", "0.7\u00a0"),                            # no-break space
])
def test_unusual_variants_still_parse(small, transform):
    """The fast path may decline these; the validator accepts them, as it always did."""
    data = transform(SCORES).encode()
    got = fast(data, CLS, small)
    assert got is None or np.array_equal(got, EXPECTED)
    assert np.array_equal(parse_predictions(data, CLS, small).scores, EXPECTED)


# --------------------------------------------------------------------------- errors

NON_FINITE = ["nan", "NaN", "NAN", "-nan", "+nan", "inf", "-inf", "+inf", "Inf", "INF",
              "infinity", "Infinity", "-Infinity", "+Infinity", "INFINITY", "1e400", "-1e999",
              '"nan"', ' inf ', '"-Infinity"']


@pytest.mark.parametrize("cell", NON_FINITE)
@pytest.mark.parametrize("task", [CLS, PROB, ML], ids=["any", "probabilities", "multilabel"])
def test_every_nan_and_inf_spelling_is_reported_with_line_and_column(split, cell, task):
    v = RNG.random((N, 3))
    lines = ["id,cat,dog,bird"] + [f"img{i:04d}," + ",".join(repr(float(x)) for x in v[i])
                                   for i in range(N)]
    cells = lines[124].split(",")
    cells[2] = cell                                       # line 125, column 3
    lines[124] = ",".join(cells)
    data = ("\n".join(lines) + "\n").encode()
    assert fast(data, task, split) is None
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, task, split)
    err = ei.value
    assert err.code == ErrorCode.NOT_FINITE and err.line == 125 and err.column == 3
    assert "not a finite number" in str(err)


@pytest.mark.parametrize("cell", ["nan(1)", "infx", "in", "NaNa", "1e", "0x1p3", "1_0", "", "NA"])
def test_near_nan_spellings_are_not_numbers(split, cell):
    v = RNG.random((N, 3))
    lines = ["id,cat,dog,bird"] + [f"img{i:04d}," + ",".join(f"{x:.6f}" for x in v[i])
                                   for i in range(N)]
    lines[10] = f"img0009,0.5,{cell},0.5"
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(("\n".join(lines) + "\n").encode(), CLS, split)
    assert ei.value.code == ErrorCode.NOT_A_NUMBER
    assert ei.value.line == 11 and ei.value.column == 3


def test_probability_out_of_range_is_located(split):
    v = RNG.random((N, 3))
    v[200, 1] = 1.5
    data = scores_csv(v, [f"img{i:04d}" for i in range(N)], "{!r}")
    assert fast(data, PROB, split) is None
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, PROB, split)
    assert ei.value.code == ErrorCode.OUT_OF_RANGE and (ei.value.line, ei.value.column) == (202, 3)


@pytest.mark.parametrize("mutate,code,line", [
    (lambda L: L.__setitem__(5, L[5] + ",0.1"), ErrorCode.WRONG_COLUMN_COUNT, 6),
    (lambda L: L.__setitem__(7, L[3]), ErrorCode.DUPLICATE_ID, 8),
    (lambda L: L.__setitem__(9, "zzz" + L[9][7:]), ErrorCode.UNKNOWN_ID, 10),
    (lambda L: L.__setitem__(9, L[9][7:]), ErrorCode.UNKNOWN_ID, 10),         # empty id
    (lambda L: L.pop(), ErrorCode.MISSING_IDS, None),
])
def test_id_and_shape_errors_come_from_the_validator(split, mutate, code, line):
    v = RNG.random((N, 3))
    lines = scores_csv(v, [f"img{i:04d}" for i in range(N)], "{:.6f}").decode().split("\n")[:-1]
    mutate(lines)
    data = ("\n".join(lines) + "\n").encode()
    assert fast(data, CLS, split) is None
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(data, CLS, split)
    assert ei.value.code == code and ei.value.line == line


# --------------------------------------------------------------------------- fuzzing

def _same_outcome(data: bytes, task, split) -> None:
    """Whatever the fast path accepts, the validator accepts with bit-identical values."""
    got = fast(data, task, split)
    if got is None:
        return
    try:
        ref = precise(data, task, split)
    except PredictionFormatError as exc:      # pragma: no cover - the failure being tested for
        raise AssertionError(f"fast path accepted {data!r}; validator: {exc}") from None
    assert np.array_equal(bits(got), bits(ref)) if got.dtype == np.float64 else \
        np.array_equal(got, ref), data


def test_fuzz_cells(small):
    """Random number-like cells: Arrow's float syntax must not exceed the validator's."""
    rnd = random.Random(7)
    alphabet = "0123456789" * 3 + ".eE+-_ \txXnaifINFdD()\"'"
    for _ in range(3000):
        cell = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 7)))
        data = SCORES.replace("0.25,0.25", f"0.25,{cell}").encode()
        _same_outcome(data, CLS, small)
        _same_outcome(data, PROB, small)


def test_fuzz_structure(small):
    """Random insertions of quotes, separators, spaces and line ends into a valid file."""
    rnd = random.Random(11)
    base = SCORES.replace("\na,", '\n"a",')
    labels = "id,label\na,cat\nb,1\nc,\"bird\"\nd,0\n"
    noise = ['"', '""', ",", " ", "\t", "\n", "\r", "\r\n", "0", ".", "e", "a", "b"]
    for _ in range(3000):
        text = base if rnd.random() < 0.7 else labels
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(len(text) + 1)
            text = text[:i] + rnd.choice(noise) + text[i + rnd.randint(0, 1):]
        try:
            decode_csv_text(text.encode())
            next(csv_format._rows(decode_csv_text(text.encode()), None))
            _same_outcome(text.encode(), CLS, small)
        except (PredictionFormatError, StopIteration):
            continue                           # the header or the text itself is refused


# --------------------------------------------------------------------------- import and speed

def test_pyarrow_is_imported_lazily():
    code = ("import sys, scoring.parsers, scoring.parsers.csv_format; "
            "assert 'pyarrow' not in sys.modules, 'pyarrow imported at module import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cifar100_size_repr_scores_csv_is_bit_exact(tmp_path):
    classes = [f"c{k}" for k in range(100)]
    task = parse_task({"name": "big", "kind": "classification", "classes": classes,
                       "metric": "accuracy", "split": "big"}, "t")
    n = 10_000
    big = load_split(write_split(tmp_path / "s", np.zeros(n, dtype=int), seed=0), task)
    v = np.random.default_rng(0).random((n, 100))
    data = scores_csv(v, [str(i) for i in range(n)], "{!r}", header="id," + ",".join(classes))
    p = parse_predictions(data, task, big)
    assert np.array_equal(bits(p.scores), bits(v))
