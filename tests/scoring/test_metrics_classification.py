"""Classification metrics against sklearn and plain references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from scoring.metrics.classification import (
    accuracy,
    confusion_matrix,
    most_confused,
    per_class_accuracy,
    top1,
)

TOL = 1e-9


def _cases():
    rng = np.random.default_rng(0)
    out = []
    for n, k in ((1, 2), (10, 3), (1000, 10), (10_000, 100)):
        out.append((f"random-{n}x{k}", rng.integers(0, k, n), rng.integers(0, k, n), k))
    y = rng.integers(0, 10, 500)
    y[y == 4] = 5  # class 4 never in the labels
    p = rng.integers(0, 10, 500)
    p[p == 7] = 8  # class 7 never predicted
    out.append(("absent-and-never-predicted", y, p, 10))
    y = rng.integers(0, 5, 300)
    y[y == 4] = 0  # the last class absent: must not shrink the matrix
    out.append(("last-class-absent", y, y.copy(), 5))
    return out


CASES = _cases()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,y,p,k", CASES, ids=IDS)
def test_confusion_and_accuracy_equal_sklearn(name, y, p, k):
    cm = confusion_matrix(y, p, k)
    assert cm.shape == (k, k)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(y, p, labels=list(range(k))))
    assert accuracy(cm) == pytest.approx(accuracy_score(y, p), abs=TOL)


@pytest.mark.parametrize("name,y,p,k", CASES, ids=IDS)
def test_per_class_accuracy_is_recall(name, y, p, k):
    ours = per_class_accuracy(confusion_matrix(y, p, k))
    ref = recall_score(y, p, labels=list(range(k)), average=None, zero_division=0)
    for c in range(k):
        if np.any(y == c):
            assert ours[c] == pytest.approx(ref[c], abs=TOL)
            # plain definition: correct items of class c / items labelled c
            assert ours[c] == pytest.approx(np.sum((y == c) & (p == c)) / np.sum(y == c), abs=TOL)
        else:
            assert ours[c] is None


def ref_most_confused(y, p, k, top):
    counts = {}
    for t, q in zip(y.tolist(), p.tolist()):
        if t != q:
            counts[(t, q)] = counts.get((t, q), 0) + 1
    support = [int(np.sum(y == c)) for c in range(k)]
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:top]
    return [(t, q, c, c / support[t]) for (t, q), c in ranked]


@pytest.mark.parametrize("name,y,p,k", CASES, ids=IDS)
def test_most_confused_equals_reference(name, y, p, k):
    cm = confusion_matrix(y, p, k)
    for top in (1, 5, 10):
        ours = most_confused(cm, top)
        ref = ref_most_confused(y, p, k, top)
        assert [o[:3] for o in ours] == [r[:3] for r in ref]
        for o, r in zip(ours, ref):
            assert o[3] == pytest.approx(r[3], abs=TOL)


def test_most_confused_ignores_the_diagonal_and_zero_cells():
    cm = np.array([[50, 0, 3], [0, 40, 0], [10, 0, 7]])
    assert most_confused(cm, 10) == [(2, 0, 10, 10 / 17), (0, 2, 3, 3 / 53)]


def test_top1_ties_go_to_the_lowest_index():
    s = np.array([[0.2, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 0.1]])
    np.testing.assert_array_equal(top1(s), [1, 0, 2])
    u8 = np.array([[7, 7, 3]], dtype=np.uint8)
    np.testing.assert_array_equal(top1(u8), [0])
    rng = np.random.default_rng(1)
    s = rng.integers(0, 3, (500, 6)).astype(np.float64)  # many ties
    ref = [min(j for j in range(6) if row[j] == row.max()) for row in s]
    np.testing.assert_array_equal(top1(s), ref)


def test_single_item_and_empty():
    cm = confusion_matrix(np.array([2]), np.array([2]), 3)
    assert accuracy(cm) == 1.0
    assert per_class_accuracy(cm) == [None, None, 1.0]
    empty = confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), 3)
    assert accuracy(empty) is None
    assert per_class_accuracy(empty) == [None, None, None]
    assert most_confused(empty) == []


def test_out_of_range_raises():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, -1]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
