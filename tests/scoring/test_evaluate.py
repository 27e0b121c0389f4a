"""The evaluator: report schema, parts, undefined values, points — values checked against sklearn."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, recall_score

from scoring.errors import PredictionFormatError, TaskFileError
from scoring.evaluate import evaluate
from scoring.metrics.info import METRICS, PER_CLASS_KEY, PER_CLASS_KEYS, UNDEFINED_REASONS
from scoring.metrics.segmentation import segmentation_metrics
from scoring.points import compute_points
from scoring.types import PointsRule, Predictions, Split, TaskSpec

TOL = 1e-9
TOP_KEYS = {"task", "kind", "n", "primary_metric", "higher_is_better", "primary", "metrics",
            "per_class", "undefined", "points", "parts"}
PART_KEYS = {"n", "primary", "metrics", "per_class", "undefined"}


def make_task(kind, k, metric, ap=None, points=None, public_fraction=0.5, ignore_index=None,
              public_detail=False):
    return TaskSpec(
        name=f"t-{kind}", title=f"Test {kind}", kind=kind, classes=tuple(f"c{i}" for i in range(k)),
        metric=metric, ap=ap, split="unused", public_fraction=public_fraction, points=points,
        ignore_index=ignore_index, public_detail=public_detail,
    )


def make_split(labels, mask):
    n = len(labels)
    ids = [f"id{i}" for i in range(n)]
    return Split(root=Path("."), labels=labels, ids=ids, public_mask=np.asarray(mask, bool),
                 id_index={x: i for i, x in enumerate(ids)})


def no_nan(report) -> None:
    json.dumps(report, allow_nan=False)  # raises on NaN/inf anywhere


def check_schema(report, classification: bool):
    extra = {"confusion", "most_confused"} if classification else set()
    assert set(report) == TOP_KEYS | extra
    for name, part in report["parts"].items():
        assert set(part) == PART_KEYS | extra | ({"withheld"} if name == "public" else set())
    no_nan(report)


def sk_ap(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y, s))


# -- classification -----------------------------------------------------------------------------


def test_classification_report_against_sklearn():
    rng = np.random.default_rng(0)
    n, k = 1000, 5
    y = rng.integers(0, k, n)
    y[y == 4] = 3  # class 4 absent from the labels
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    mask = rng.random(n) < 0.5
    task = make_task("classification", k, "accuracy")
    r = evaluate(task, make_split(y, mask), Predictions(labels=p, source_format="csv-labels"))
    check_schema(r, classification=True)
    assert r["n"] == n and r["higher_is_better"] is True and r["primary_metric"] == "accuracy"
    assert r["primary"] == r["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, p), abs=TOL)
    rec = recall_score(y, p, labels=list(range(k)), average=None, zero_division=0)
    for c in range(4):
        assert r["per_class"][f"c{c}"]["accuracy"] == pytest.approx(rec[c], abs=TOL)
    assert r["per_class"]["c4"]["accuracy"] is None
    assert {"class": "c4", "metric": "accuracy", "reason": "no test items of this class"} in r["undefined"]
    for name, m in (("public", mask), ("private", ~mask)):
        part = r["parts"][name]
        assert part["n"] == int(m.sum())
        assert part["primary"] == pytest.approx(accuracy_score(y[m], p[m]), abs=TOL)
    assert r["confusion"]["classes"] == list(task.classes)
    assert np.array(r["confusion"]["matrix"]).sum() == n
    top = r["most_confused"][0]
    assert top["count"] == max(
        int(np.sum((y == a) & (p == b))) for a in range(k) for b in range(k) if a != b
    )
    assert r["points"] is None


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_classification_scores_use_argmax(dtype):
    rng = np.random.default_rng(1)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    s = rng.integers(0, 5, (n, k)).astype(dtype)  # ties: lowest index wins
    task = make_task("classification", k, "accuracy")
    split = make_split(y, np.arange(n) % 2 == 0)
    by_scores = evaluate(task, split, Predictions(scores=s))
    by_labels = evaluate(task, split, Predictions(labels=np.argmax(s, axis=1)))
    assert by_scores == by_labels


def test_empty_private_part_is_null_with_a_note():
    y = np.array([0, 1, 1, 0])
    task = make_task("classification", 2, "accuracy", public_fraction=1.0,
                     points=PointsRule("threshold", 10, 0.5))
    r = evaluate(task, make_split(y, np.ones(4, bool)), Predictions(labels=y.copy()))
    check_schema(r, classification=True)
    priv = r["parts"]["private"]
    assert priv["n"] == 0 and priv["primary"] is None and priv["metrics"] == {"accuracy": None}
    assert all(v["accuracy"] is None for v in priv["per_class"].values())
    assert priv["undefined"] == [{"class": None, "metric": "accuracy", "reason": "no items in this part"}]
    assert r["parts"]["public"]["primary"] == 1.0
    assert r["points"] == {"earned": 10.0, "max": 10.0}


def test_wrong_shapes_and_values_raise_prediction_errors():
    y = np.array([0, 1, 2])
    task = make_task("classification", 3, "accuracy")
    split = make_split(y, [True, False, True])
    with pytest.raises(PredictionFormatError):
        evaluate(task, split, Predictions(labels=np.array([0, 1])))
    with pytest.raises(PredictionFormatError):
        evaluate(task, split, Predictions(labels=np.array([0, 1, 3])))
    with pytest.raises(PredictionFormatError):
        evaluate(task, split, Predictions(scores=np.zeros((3, 4))))
    with pytest.raises(TaskFileError):
        evaluate(make_task("classification", 3, "mean_ap"), split, Predictions(labels=y))


# -- multilabel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["step", "voc", "voc07"])
def test_multilabel_report(variant):
    rng = np.random.default_rng(2)
    n, k = 400, 6
    y = (rng.random((n, k)) < 0.25).astype(np.uint8)
    y[:, 2] = 0  # no positives anywhere
    mask = rng.random(n) < 0.5
    y[mask, 4] = 0  # no positives in the public part only
    y[~mask, 4] = 1
    s = np.round(rng.random((n, k)) + 0.3 * y, 2)
    task = make_task("multilabel", k, "mean_ap", ap=variant, public_detail=True)
    r = evaluate(task, make_split(y, mask), Predictions(scores=s))
    check_schema(r, classification=False)
    assert r["per_class"]["c2"]["ap"] is None
    assert {"class": "c2", "metric": "ap", "reason": "no positive examples"} in r["undefined"]
    assert r["parts"]["public"]["per_class"]["c4"]["ap"] is None
    assert r["per_class"]["c4"]["ap"] is not None
    defined = [r["per_class"][f"c{c}"]["ap"] for c in range(k) if c != 2]
    assert r["primary"] == pytest.approx(math.fsum(defined) / len(defined), abs=TOL)
    if variant == "step":
        for c in range(k):
            if c != 2:
                assert r["per_class"][f"c{c}"]["ap"] == pytest.approx(sk_ap(y[:, c], s[:, c]), abs=TOL)
        pub = [sk_ap(y[mask, c], s[mask, c]) for c in range(k) if c not in (2, 4)]
        assert r["parts"]["public"]["primary"] == pytest.approx(np.mean(pub), abs=TOL)


def test_multilabel_needs_scores():
    task = make_task("multilabel", 2, "mean_ap", ap="step")
    with pytest.raises(PredictionFormatError):
        evaluate(task, make_split(np.zeros((2, 2), np.uint8), [True, False]), Predictions(labels=np.zeros(2)))


def test_all_classes_undefined_gives_null_primary_and_zero_points():
    task = make_task("multilabel", 2, "mean_ap", ap="voc", points=PointsRule("linear", 5, 0.8, 0.2))
    r = evaluate(task, make_split(np.zeros((3, 2), np.uint8), [True, True, False]),
                 Predictions(scores=np.ones((3, 2))))
    check_schema(r, classification=False)
    assert r["primary"] is None
    assert {"class": None, "metric": "mean_ap", "reason": "no class has a defined ap"} in r["undefined"]
    assert r["points"]["earned"] == 0.0 and r["points"]["max"] == 5.0 and r["points"]["note"]


def test_per_class_key_names_the_values_behind_each_metric():
    """PER_CLASS_KEY (what the leaderboard's per-class view reads) matches the reports."""
    assert set(PER_CLASS_KEY) == set(METRICS) and set(PER_CLASS_KEY.values()) == set(UNDEFINED_REASONS)
    mask = [True, False, True, False]
    reports = [
        evaluate(make_task("classification", 3, "accuracy"), make_split(np.array([0, 1, 2, 2]), mask),
                 Predictions(labels=np.array([0, 1, 1, 2]))),
        evaluate(make_task("multilabel", 3, "mean_ap", ap="step"),
                 make_split(np.eye(3, dtype=np.uint8)[[0, 1, 2, 2]], mask),
                 Predictions(scores=np.random.default_rng(0).random((4, 3)))),
        evaluate(make_task("segmentation", 2, "mean_iou", ap="voc"), make_split(np.zeros((4, 3, 3), np.uint8), mask),
                 Predictions(scores=np.zeros((4, 2, 3, 3), np.uint8))),
    ]
    for r in reports:
        keys = {PER_CLASS_KEY[m] for m in r["metrics"]}
        assert PER_CLASS_KEY[r["primary_metric"]] in keys
        assert set(r["per_class"]["c0"]) == keys == set(PER_CLASS_KEYS[r["kind"]])


# -- segmentation -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_segmentation_report_parts(dtype):
    rng = np.random.default_rng(3)
    n, k, h, w = 9, 3, 12, 10
    y = rng.integers(0, k, (n, h, w)).astype(np.uint8)
    y[rng.random(y.shape) < 0.1] = 255
    s = rng.integers(0, 256, (n, k, h, w)).astype(dtype)
    mask = np.array([True, False, True, True, False, False, True, False, True])
    task = make_task("segmentation", k, "mean_iou", ap="voc", ignore_index=255,
                     points=PointsRule("threshold", 30, 0.5, 0.2), public_detail=True)
    r = evaluate(task, make_split(y, mask), Predictions(scores=s))
    check_schema(r, classification=False)
    whole = segmentation_metrics(s, y, k, "voc", 255)
    pub = segmentation_metrics(s[mask], y[mask], k, "voc", 255)
    priv = segmentation_metrics(s[~mask], y[~mask], k, "voc", 255)
    for part, ref in ((r, whole), (r["parts"]["public"], pub), (r["parts"]["private"], priv)):
        assert [part["per_class"][f"c{c}"]["ap"] for c in range(k)] == ref.ap
        assert [part["per_class"][f"c{c}"]["iou"] for c in range(k)] == ref.iou
        assert part["metrics"] == {"mean_ap": ref.mean_ap, "mean_iou": ref.mean_iou}
        assert part["primary"] == ref.mean_iou
    assert r["parts"]["public"]["n"] == 5 and r["parts"]["private"]["n"] == 4
    assert r["points"] == compute_points(task.points, whole.mean_iou)


def test_segmentation_shape_mismatch():
    task = make_task("segmentation", 3, "mean_ap", ap="step")
    split = make_split(np.zeros((2, 4, 4), np.uint8), [True, False])
    with pytest.raises(PredictionFormatError):
        evaluate(task, split, Predictions(scores=np.zeros((2, 2, 4, 4), np.uint8)))
    bad = np.zeros((2, 3, 4, 4), np.float32)
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(PredictionFormatError):
        evaluate(task, split, Predictions(scores=bad))


# -- points -------------------------------------------------------------------------------------


def test_points_rules():
    thr = PointsRule("threshold", 30, bar=0.5)
    assert compute_points(thr, 0.5) == {"earned": 30.0, "max": 30.0}
    assert compute_points(thr, 0.49)["earned"] == 0.0
    ramp = PointsRule("threshold", 30, bar=0.5, baseline=0.2)
    assert compute_points(ramp, 0.35)["earned"] == pytest.approx(15.0)
    assert compute_points(ramp, 0.1)["earned"] == 0.0
    assert compute_points(ramp, 0.9)["earned"] == 30.0
    lin = PointsRule("linear", 10, bar=0.8, baseline=0.4)
    assert compute_points(lin, 0.6)["earned"] == pytest.approx(5.0)
    assert compute_points(lin, 0.95)["earned"] == 10.0
    assert compute_points(lin, 0.0)["earned"] == 0.0
    assert compute_points(PointsRule("linear", 10, bar=0.5), 0.25)["earned"] == pytest.approx(5.0)
    assert compute_points(None, 0.7) is None
    undefined = compute_points(lin, None)
    assert undefined["earned"] == 0.0 and undefined["max"] == 10.0 and "undefined" in undefined["note"]
