"""CSV prediction files: accepted variants and one test per validation error."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from scoring.errors import PredictionFormatError
from scoring.parsers import ErrorCode, parse_predictions
from scoring.splits import load_split, write_split
from scoring.tasks import parse_task

CLS = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                  "metric": "accuracy", "split": "pets"}, "t")
PROB = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                   "metric": "accuracy", "split": "pets", "scores": "probabilities"}, "t")
ML = parse_task({"name": "voc", "kind": "multilabel", "classes": ["cat", "dog", "bird"],
                 "metric": "mean_ap", "ap": "step", "split": "voc"}, "t")
SEG = parse_task({"name": "seg", "kind": "segmentation", "classes": ["bg", "fg"],
                  "metric": "mean_iou", "ap": "voc", "split": "seg", "image_size": [2, 2]}, "t")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "s"
    write_split(root, np.full(4, 2), ids=["a", "b", "c", "d"], seed=0)
    return load_split(root, CLS)


@pytest.fixture(scope="module")
def mlsplit(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "m"
    write_split(root, np.ones((4, 3), dtype=np.uint8), ids=["a", "b", "c", "d"], seed=0)
    return load_split(root, ML)


def parse(text, split, task=CLS):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_predictions(data, task, split)


def error(text, split, task=CLS) -> PredictionFormatError:
    with pytest.raises(PredictionFormatError) as ei:
        parse(text, split, task)
    err = ei.value
    assert isinstance(err.code, str) and err.code in {c.value for c in ErrorCode}
    assert len(str(err)) <= 500
    return err


SCORES = "id,cat,dog,bird\na,0.1,0.2,0.7\nb,0.5,0.25,0.25\nc,1,0,0\nd,0,0,1\n"
EXPECTED = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [1, 0, 0], [0, 0, 1]])


# --------------------------------------------------------------------------- accepted

def test_labels_by_index_and_by_name(split):
    p = parse("id,label\nd,2\nb,dog\na,0\nc,bird\n", split)
    assert p.scores is None and p.labels.tolist() == [0, 1, 2, 2]
    assert p.labels.dtype == np.int64 and p.source_format == "csv-labels"


@pytest.mark.parametrize("header", ["Id,Prediction1", "ID,Category", "id,Label", " id , label ",
                                    "image_id,predicted", "Id,Class"])
def test_label_header_aliases(split, header):
    p = parse(f"{header}\na,0\nb,1\nc,2\nd,0\n", split)
    assert p.labels.tolist() == [0, 1, 2, 0]


def test_scores_order_ignored(split):
    lines = SCORES.strip().split("\n")
    shuffled = "\n".join([lines[0], lines[3], lines[1], lines[4], lines[2]]) + "\n"
    p = parse(shuffled, split)
    assert p.labels is None and p.source_format == "csv-scores"
    assert np.array_equal(p.scores, EXPECTED) and p.scores.dtype == np.float64


@pytest.mark.parametrize("transform", [
    lambda s: "\ufeff" + s,                                   # BOM
    lambda s: s.replace("\n", "\r\n"),                         # CRLF
    lambda s: s.replace(",", ", "),                            # spaces after commas
    lambda s: s.replace(",", " , "),                           # spaces around commas
    lambda s: s.replace("a,", '"a",').replace("0.1", '"0.1"'),  # quoted fields
    lambda s: s.rstrip("\n"),                                  # no final newline
    lambda s: s + "\n\n",                                      # trailing blank lines
    lambda s: s.replace("\nc,", "\n\nc,"),                     # a blank line inside
    lambda s: s.replace("id,cat,dog,bird", "ID,Cat,Dog,Bird"),  # header case
    lambda s: s.replace("\n", "\r"),                           # old Mac line ends
])
def test_scores_text_variants(split, transform):
    p = parse(transform(SCORES), split)
    assert np.array_equal(p.scores, EXPECTED)


def test_class_name_labels_with_spaces_and_quotes(split):
    p = parse('id,label\r\n"a", "cat"\r\nb , dog\r\nc,"bird"\r\nd,0\r\n', split)
    assert p.labels.tolist() == [0, 1, 2, 0]


def test_multilabel_scores(mlsplit):
    p = parse(SCORES, mlsplit, ML)
    assert np.array_equal(p.scores, EXPECTED)


def test_scientific_notation_and_signs(split):
    text = "id,cat,dog,bird\na,1e-3,-2.5E+2,+.5\nb,1.,0,-0\nc,3,2,1\nd,7e2,1,1\n"
    p = parse(text, split)
    assert p.scores[0].tolist() == [1e-3, -250.0, 0.5] and p.scores[3, 0] == 700.0


def test_path_input(split, tmp_path):
    f = tmp_path / "predictions.bin"       # the name is irrelevant: content decides
    f.write_text(SCORES)
    assert np.array_equal(parse_predictions(f, CLS, split).scores, EXPECTED)


# --------------------------------------------------------------------------- errors

def test_empty_file(split):
    for text in ["", "   \n\n", "\ufeff"]:
        assert error(text, split).code == ErrorCode.EMPTY_FILE


def test_header_only_reports_all_missing(split):
    err = error("id,label\n", split)
    assert err.code == ErrorCode.MISSING_IDS and "4 of the 4 ids" in str(err)


def test_wrong_header(split):
    err = error("id,cat,dog,bidr\na,1,2,3\n", split)
    assert err.code == ErrorCode.WRONG_HEADER and err.line == 1 and err.column == 4
    assert "column 4 should be 'bird'" in str(err) and "'id,cat,dog,bidr'" in str(err)
    assert "'id,label'" in str(err)              # what was expected
    err = error("a,0\nb,1\n", split)              # no header at all
    assert err.code == ErrorCode.WRONG_HEADER and "header" in str(err) and err.line == 1
    err = error("id,bird,dog,cat\na,1,2,3\n", split)
    assert err.code == ErrorCode.WRONG_HEADER and "not in the task's order" in str(err)
    err = error("id,cat,dog\na,1,2\n", split)
    assert err.code == ErrorCode.WRONG_HEADER and "3 columns" in str(err) and "(4 columns)" in str(err)
    err = error("id,label\na,0\n", split, ML)     # labels for a multilabel task
    assert err.code == ErrorCode.WRONG_HEADER and "one score column per class" in str(err)
    err = error("\n\nname,label\na,0\n", split)   # the header line number counts blank lines
    assert err.line == 3 and err.column == 1


def test_wrong_column_count(split):
    err = error("id,cat,dog,bird\na,0.1,0.2,0.7\nb,0.1,0.2\n", split)
    assert err.code == ErrorCode.WRONG_COLUMN_COUNT and err.line == 3
    assert "line 3 has 3 columns, expected 4" in str(err)
    err = error("id,label\na,1\nb,1,2\n", split)
    assert err.code == ErrorCode.WRONG_COLUMN_COUNT and "line 3 has 3 columns, expected 2" in str(err)
    err = error("id,cat,dog,bird\na,0.1,0.2,0.7,\n", split)       # trailing comma
    assert err.code == ErrorCode.WRONG_COLUMN_COUNT and err.line == 2


def test_unknown_id(split):
    err = error("id,label\na,1\nzzz_unknown,1\n", split)
    assert err.code == ErrorCode.UNKNOWN_ID and err.line == 3 and err.column == 1
    assert "'zzz_unknown' is not an id of the test split" in str(err)
    err = error(SCORES.replace("\nc,", "\nq,"), split)
    assert err.code == ErrorCode.UNKNOWN_ID and err.line == 4 and "'q'" in str(err)
    err = error("id,label\n,1\n", split)
    assert err.code == ErrorCode.UNKNOWN_ID and "empty" in str(err)


def test_long_values_are_truncated(split):
    err = error("id,label\n" + "x" * 5000 + ",1\n", split)
    assert err.code == ErrorCode.UNKNOWN_ID and len(str(err)) < 200 and "..." in str(err)


def test_duplicate_id_names_both_lines(split):
    err = error("id,label\na,1\nb,1\na,2\n", split)
    assert err.code == ErrorCode.DUPLICATE_ID and err.line == 4
    assert "on line 2 and line 4" in str(err)
    err = error(SCORES + "b,0,0,1\n", split)
    assert err.code == ErrorCode.DUPLICATE_ID and "on line 3 and line 6" in str(err)


def test_missing_ids(split):
    err = error("id,label\nb,1\n", split)
    assert err.code == ErrorCode.MISSING_IDS and err.line is None
    assert "3 of the 4 ids of the test split have no row (first missing: 'a', 'c', 'd')" in str(err)
    err = error("id,cat,dog,bird\na,0.1,0.2,0.7\n", split)
    assert err.code == ErrorCode.MISSING_IDS and "3 of the 4" in str(err)


def test_missing_ids_lists_only_the_first_few(tmp_path):
    split = load_split(write_split(tmp_path / "s", np.zeros(20, dtype=int), seed=0), CLS)
    err = error("id,label\n0,0\n", split)
    assert "19 of the 20" in str(err) and "'1', '2', '3', '4', '5', ...)" in str(err)


def test_not_a_number(split):
    err = error(SCORES.replace("0.25,0.25", "0.25,abc"), split)
    assert err.code == ErrorCode.NOT_A_NUMBER and err.line == 3 and err.column == 4
    assert "'abc' is not a number" in str(err)
    err = error(SCORES.replace("0.2,", ","), split)
    assert err.code == ErrorCode.NOT_A_NUMBER and err.column == 3 and "empty" in str(err)
    err = error(SCORES.replace("0.7", "0.7" + "9" * 100 + "x"), split)
    assert err.code == ErrorCode.NOT_A_NUMBER and "..." in str(err) and len(str(err)) < 200
    err = error(SCORES.replace("0.7", "1_0"), split)
    assert err.code == ErrorCode.NOT_A_NUMBER


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity"])
def test_nan_and_inf(split, bad):
    err = error(SCORES.replace("0.25,0.25", f"0.25,{bad}"), split)
    assert err.code == ErrorCode.NOT_FINITE and err.line == 3 and err.column == 4
    assert "not a finite number" in str(err)


def test_nan_in_fast_path_located(tmp_path):
    split = load_split(write_split(tmp_path / "s", np.zeros(300, dtype=int), seed=0), CLS)
    rows = [f"{i},0.1,0.2,0.7" for i in range(300)]
    rows[123] = "123,0.1,1e400,0.7"     # parses (to inf) in the block converter
    err = error("id,cat,dog,bird\n" + "\n".join(rows) + "\n", split)
    assert err.code == ErrorCode.NOT_FINITE and err.line == 125 and err.column == 3


def test_probabilities_out_of_range(split):
    err = error(SCORES.replace("0.7", "1.7"), split, PROB)
    assert err.code == ErrorCode.OUT_OF_RANGE and err.line == 2 and err.column == 4
    assert "outside [0, 1]" in str(err)
    assert parse(SCORES.replace("0.7", "1.7"), split).scores[0, 2] == 1.7   # scores: any


def test_class_index_out_of_range(split):
    err = error("id,label\na,0\nb,3\n", split)
    assert err.code == ErrorCode.CLASS_OUT_OF_RANGE and err.line == 3 and err.column == 2
    assert "class index '3' is out of range; expected 0..2" in str(err)
    err = error("id,label\na,-1\n", split)
    assert err.code == ErrorCode.CLASS_OUT_OF_RANGE


def test_unknown_class_name(split):
    err = error("id,label\na,catt\n", split)
    assert err.code == ErrorCode.UNKNOWN_CLASS and err.line == 2 and err.column == 2
    assert "'catt' is not a class of this task" in str(err) and "cat, dog, bird" in str(err)
    err = error("id,label\na,Cat\n", split)
    assert "did you mean 'cat'" in str(err)
    err = error("id,label\na,1.0\n", split)
    assert err.code == ErrorCode.UNKNOWN_CLASS
    err = error("id,label\na,\n", split)
    assert err.code == ErrorCode.UNKNOWN_CLASS and "empty" in str(err)


def test_not_utf8(split):
    data = "id,label\na,0\nb,1\n".encode() + b"c,caf\xe9\n"
    err = error(data, split)
    assert err.code == ErrorCode.NOT_UTF8 and err.line == 4
    assert f"byte offset {len(data) - 2}" in str(err) and "0xe9" in str(err)
    err = error(b"\xef\xbb\xbf" + data, split)       # offset counts the BOM
    assert f"byte offset {len(data) + 1}" in str(err)


@pytest.mark.parametrize("data", [
    bytes(range(256)) * 4,
    b"\x00\x01\x02\x03garbage" * 50,
    b"\x1f\x8b\x08\x00compressed",
    b"\x80\x04\x95pickle",
    b"id,label\na,0\x00\n",
])
def test_binary_garbage(split, data):
    assert error(data, split).code == ErrorCode.BINARY_CONTENT


def test_segmentation_csv_unsupported(split):
    err = error(SCORES, split, SEG)
    assert err.code == ErrorCode.UNSUPPORTED_FORMAT and ".npy" in str(err)


def test_malformed_csv(split):
    # A 2 MiB line is refused for its length before the csv module sees it (test_csv_limits.py);
    # the module's own refusal is reached here with its field size limit lowered.
    err = error('id,label\na,"0\n' + "x" * (1 << 21) + "\n", split)
    assert err.code == ErrorCode.LINE_TOO_LONG and err.line == 3
    old = csv.field_size_limit(16)
    try:
        err = error('id,label\na,"' + "x" * 100 + '"\n', split)
    finally:
        csv.field_size_limit(old)
    assert err.code == ErrorCode.MALFORMED_CSV and err.line == 2


def test_errors_never_depend_on_labels(split, tmp_path):
    """The same file against two splits that differ only in labels gives the same message."""
    other = load_split(write_split(tmp_path / "o", np.array([0, 1, 0, 1]), ids=["a", "b", "c", "d"],
                                   seed=0), CLS)
    cases = ["id,label\nb,1\n", "id,label\na,1\na,1\n", "id,label\nq,1\n", "id,cat,dog,bird\n",
             "id,label\na,9\n", "id,label\na,Cat\n", SCORES.replace("0.7", "nan")]
    for text in cases:
        assert str(error(text, split)) == str(error(text, other))


def test_filename_in_message(split):
    with pytest.raises(PredictionFormatError) as ei:
        parse_predictions(b"id,label\nq,1\n", CLS, split, filename="sub\x00mission.csv")
    assert str(ei.value).startswith("submission.csv, line 2, column 1:")


# ------------------------------------------------------------- CIFAR-100 test size
# Speed is measured by bench/metrics.py, not asserted here; this checks exactness at full size.

@pytest.mark.parametrize("fmt", ["{:.6f}", "{:.4e}"])
def test_cifar100_size_scores_csv_parses_exactly(tmp_path, fmt):
    classes = [f"c{k}" for k in range(100)]
    task = parse_task({"name": "big", "kind": "classification", "classes": classes,
                       "metric": "accuracy", "split": "big"}, "t")
    n = 10_000
    split = load_split(write_split(tmp_path / "s", np.zeros(n, dtype=int),
                                   ids=[f"img{i:05d}" for i in range(n)], seed=0), task)
    rng = np.random.default_rng(0)
    v = rng.random((n, 100))
    order = rng.permutation(n)
    lines = ["id," + ",".join(classes)]
    lines += [f"img{i:05d}," + ",".join(fmt.format(x) for x in v[i]) for i in order]
    data = ("\r\n".join(lines) + "\r\n").encode()
    p = parse_predictions(data, task, split)
    expected = np.array([[float(fmt.format(x)) for x in row] for row in v])
    assert np.array_equal(p.scores, expected)
    assert p.source_format == "csv-scores"
