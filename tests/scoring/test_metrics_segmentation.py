"""Segmentation AP and IoU against sklearn, torchmetrics and plain references."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from scoring.metrics.segmentation import SegmentationAccumulator, segmentation_metrics

TOL = 1e-9
K = 4


def ref_voc_from_pixels(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """All-point interpolated AP, ties grouped, written with loops over distinct thresholds."""
    npos = int(positive.sum())
    if npos == 0:
        return None
    points = []
    for t in np.unique(scores)[::-1]:
        above = scores >= t
        tp = int(np.sum(above & positive))
        points.append((Fraction(tp, npos), Fraction(tp, int(above.sum()))))
    total, prev = Fraction(0), Fraction(0)
    for j, (r, _) in enumerate(points):
        total += (r - prev) * max(p for _, p in points[j:])
        prev = r
    return float(total)


def sk_ap(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y, s))


def ref_iou(labels: np.ndarray, pred: np.ndarray, k: int) -> list[float | None]:
    cm = sk_confusion_matrix(labels, pred, labels=list(range(k)))
    out = []
    for c in range(k):
        denom = cm[c, :].sum() + cm[:, c].sum() - cm[c, c]
        out.append(None if denom == 0 else cm[c, c] / denom)
    return out


def ref_argmax(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores, axis=1)  # first maximum: the lowest index on ties


def _data(seed=0, n=6, h=9, w=11, k=K, dtype=np.uint8, levels=256):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (n, h, w)).astype(np.uint8)
    scores = rng.integers(0, levels, (n, k, h, w))
    # make scores informative so APs are not all ~ prevalence
    scores = np.clip(scores + 60 * (labels[:, None] == np.arange(k)[None, :, None, None]), 0, 255)
    return scores.astype(dtype), labels


def _flat(scores, labels, c, ignore_index=None):
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    return scores[:, c][keep].astype(np.float64), (labels[keep] == c)


@pytest.mark.parametrize("levels", [256, 4, 1])  # 1: all scores equal
def test_uint8_ap_equals_references(levels):
    s, y = _data(levels=levels)
    for variant in ("step", "voc"):
        r = segmentation_metrics(s, y, K, variant)
        for c in range(K):
            flat_s, pos = _flat(s, y, c)
            ref = sk_ap(pos, flat_s) if variant == "step" else ref_voc_from_pixels(flat_s, pos)
            assert r.ap[c] == pytest.approx(ref, abs=TOL)


def test_iou_equals_sklearn_confusion_and_torchmetrics():
    import torch
    from torchmetrics.functional.classification import multiclass_jaccard_index

    s, y = _data(seed=1)
    r = segmentation_metrics(s, y, K, "voc")
    pred = ref_argmax(s)
    np.testing.assert_array_equal(r.confusion, sk_confusion_matrix(y.ravel(), pred.ravel(), labels=list(range(K))))
    ref = ref_iou(y.ravel(), pred.ravel(), K)
    tm = multiclass_jaccard_index(torch.tensor(pred.astype(np.int64)), torch.tensor(y.astype(np.int64)),
                                  num_classes=K, average=None, zero_division=float("nan")).double().numpy()
    for c in range(K):
        assert r.iou[c] == pytest.approx(ref[c], abs=TOL)
        assert r.iou[c] == pytest.approx(float(tm[c]), abs=1e-6)  # torchmetrics computes in float32
    assert r.mean_iou == pytest.approx(np.mean(ref), abs=TOL)


def test_absent_classes():
    s, y = _data(seed=2)
    y[y == 3] = 0  # class 3 never in the labels
    s[:, 3] = 0   # ... and never predicted (0 < some other class's score, or a tie to a lower index)
    s[:, 2] = 255  # class 2 predicted everywhere
    y[y == 2] = 1  # ... but never in the labels
    r = segmentation_metrics(s, y, K, "voc")
    assert r.ap[3] is None and r.iou[3] is None
    assert r.ap[2] is None and r.iou[2] == 0.0
    assert r.mean_ap == pytest.approx(np.mean([a for a in r.ap if a is not None]), abs=TOL)
    assert r.mean_iou == pytest.approx(np.mean([v for v in r.iou if v is not None]), abs=TOL)
    tm_like = ref_iou(y.ravel(), ref_argmax(s).ravel(), K)
    assert r.iou == pytest.approx(tm_like, abs=TOL)


def test_argmax_ties_go_to_the_lowest_class():
    s = np.full((2, K, 3, 3), 128, np.uint8)
    s[1, 2] = 200
    s[1, 3] = 200
    y = np.zeros((2, 3, 3), np.uint8)
    r = segmentation_metrics(s, y, K)
    assert r.confusion[0, 0] == 9 and r.confusion[0, 2] == 9 and r.confusion[0, 3] == 0
    rng = np.random.default_rng(3)
    for dtype in (np.uint8, np.float32):
        s = rng.integers(0, 3, (4, 6, 8, 8)).astype(dtype)  # many ties
        y = rng.integers(0, 6, (4, 8, 8)).astype(np.uint8)
        r = segmentation_metrics(s, y, 6)
        np.testing.assert_array_equal(
            r.confusion, sk_confusion_matrix(y.ravel(), ref_argmax(s).ravel(), labels=list(range(6)))
        )


def test_ignore_index_excludes_pixels():
    s, y = _data(seed=4)
    rng = np.random.default_rng(4)
    y[rng.random(y.shape) < 0.2] = 255
    r = segmentation_metrics(s, y, K, "step", ignore_index=255)
    keep = y != 255
    pred = ref_argmax(s)
    assert r.iou == pytest.approx(ref_iou(y[keep], pred[keep], K), abs=TOL)
    for c in range(K):
        flat_s, pos = _flat(s, y, c, ignore_index=255)
        assert r.ap[c] == pytest.approx(sk_ap(pos, flat_s), abs=TOL)
    with pytest.raises(ValueError):  # without ignore_index, 255 is an invalid label
        segmentation_metrics(s, y, K)


def test_float_path_equals_uint8_path_exactly():
    s, y = _data(seed=5)
    for variant in ("step", "voc", "voc07"):
        a = segmentation_metrics(s, y, K, variant)
        b = segmentation_metrics(s.astype(np.float32), y, K, variant)
        assert a.ap == b.ap and a.iou == b.iou
        np.testing.assert_array_equal(a.confusion, b.confusion)


def test_float_scores_equal_sklearn():
    rng = np.random.default_rng(6)
    y = rng.integers(0, K, (5, 10, 10)).astype(np.uint8)
    s = rng.random((5, K, 10, 10)).astype(np.float32)
    r = segmentation_metrics(s, y, K, "step")
    for c in range(K):
        flat_s, pos = _flat(s, y, c)
        assert r.ap[c] == pytest.approx(sk_ap(pos, flat_s), abs=TOL)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_chunked_accumulation_equals_one_shot(dtype):
    s, y = _data(seed=7, n=13, dtype=dtype)
    one = segmentation_metrics(s, y, K, "voc")
    rng = np.random.default_rng(7)
    acc = SegmentationAccumulator(K, "voc", chunk_pixels=150)  # several internal chunks per batch
    i = 0
    while i < len(y):
        j = i + int(rng.integers(1, 5))
        acc.update(s[i:j], y[i:j])
        i = j
    r = acc.compute()
    assert r.ap == one.ap and r.iou == one.iou
    np.testing.assert_array_equal(r.confusion, one.confusion)
    # merging two halves is the same too
    a, b = SegmentationAccumulator(K, "voc"), SegmentationAccumulator(K, "voc")
    a.update(s[:5], y[:5])
    b.update(s[5:], y[5:])
    m = a.merge(b).compute()
    assert m.ap == one.ap and m.iou == one.iou


def test_image_order_does_not_matter():
    s, y = _data(seed=8, n=10)
    base = segmentation_metrics(s, y, K, "voc")
    p = np.random.default_rng(8).permutation(10)
    r = segmentation_metrics(s[p], y[p], K, "voc")
    assert r.ap == base.ap and r.iou == base.iou


def test_a_million_pixels_against_sklearn():
    rng = np.random.default_rng(9)
    n, k, h, w = 20, 3, 224, 224  # 1,003,520 pixels per class
    y = rng.integers(0, k, (n, h, w)).astype(np.uint8)
    s = rng.integers(0, 200, (n, k, h, w))
    s = np.clip(s + 50 * (y[:, None] == np.arange(k)[None, :, None, None]), 0, 255).astype(np.uint8)
    r = segmentation_metrics(s, y, k, "step")
    pred = ref_argmax(s)
    assert r.iou == pytest.approx(ref_iou(y.ravel(), pred.ravel(), k), abs=TOL)
    for c in range(k):
        assert r.ap[c] == pytest.approx(sk_ap((y == c).ravel(), s[:, c].ravel()), abs=TOL)


def test_bad_inputs_raise():
    s, y = _data()
    with pytest.raises(ValueError):
        segmentation_metrics(s, y[:, :-1], K)
    with pytest.raises(ValueError):
        segmentation_metrics(s[:, :-1], y, K)
    acc = SegmentationAccumulator(K)
    acc.update(s, y)
    with pytest.raises(ValueError):
        acc.update(s.astype(np.float32), y)
    bad = s.astype(np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        segmentation_metrics(bad, y, K)
    with pytest.raises(ValueError):
        SegmentationAccumulator(K, "nope")
