"""The text report in the course format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoring.evaluate import evaluate
from scoring.report import format_report
from scoring.types import PointsRule, Predictions, Split, TaskSpec


def _split(labels, mask):
    ids = [str(i) for i in range(len(labels))]
    return Split(root=Path("."), labels=labels, ids=ids, public_mask=np.asarray(mask, bool))


def _task(kind, classes, metric, ap=None, points=None, public_fraction=0.5):
    return TaskSpec(name="t", title="T", kind=kind, classes=tuple(classes), metric=metric, ap=ap,
                    split="x", public_fraction=public_fraction, points=points)


def test_classification_format():
    # 8 items: Shirt 3 of 4 right, Bag 4 of 4 right; one Shirt predicted as Bag.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    task = _task("classification", ["Shirt", "Bag", "Coat"], "accuracy",
                 points=PointsRule("threshold", 30, 0.9, 0.5))
    text = format_report(evaluate(task, _split(y, [1, 0] * 4), Predictions(labels=p)), task)
    lines = text.splitlines()
    assert "Accuracy of the network on the 8 test images: 87.5 %" in lines
    assert "Accuracy of Shirt : 75.0 %" in lines
    assert "Accuracy of Bag : 100.0 %" in lines
    assert "Accuracy of Coat : n/a (no items)" in lines
    assert "  Shirt -> Bag: 1 (25.0 %)" in lines
    assert "Public part (4 of 8 images): accuracy 100.0 %" in lines
    assert "Private part (4 of 8 images): accuracy 75.0 %" in lines
    assert "Points: 28.1 / 30" in lines  # 30 * (0.875 - 0.5) / (0.9 - 0.5) = 28.125
    assert "nan" not in text.lower()


def test_multilabel_format_and_undefined():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], np.uint8)
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    task = _task("multilabel", ["aeroplane", "bicycle"], "mean_ap", ap="step", public_fraction=1.0)
    text = format_report(evaluate(task, _split(y, [1, 1, 1, 1]), Predictions(scores=s)), task)
    lines = text.splitlines()
    assert "mAP: 1.0000" in lines
    assert "aeroplane: AP 1.0000" in lines
    assert "bicycle: AP n/a (no positives)" in lines
    assert "Private part: no images" in lines
    assert not any(line.startswith("Points:") for line in lines)


def test_segmentation_format():
    y = np.zeros((2, 2, 2), np.uint8)
    y[:, 0, 0] = 1
    s = np.zeros((2, 3, 2, 2), np.uint8)
    s[:, 0] = 200
    s[:, 1, 0, 0] = 250
    s[:, 0, 0, 0] = 0
    task = _task("segmentation", ["background", "sports", "animal"], "mean_iou", ap="voc",
                 points=PointsRule("threshold", 30, 0.5))
    text = format_report(evaluate(task, _split(y, [1, 0]), Predictions(scores=s)), task)
    lines = text.splitlines()
    assert "background: AP: 1.0000, IoU: 1.0000" in lines
    assert "sports: AP: 1.0000, IoU: 1.0000" in lines
    assert "animal: AP: n/a (no positives), IoU: n/a (class absent)" in lines
    assert "mean: AP: 1.0000, IoU: 1.0000" in lines
    assert "Points: 30.0 / 30" in lines
    assert "Public part (1 of 2 images): mean IoU 1.0000" in lines
