"""Single-label classification metrics from one confusion matrix (rows: true, columns: predicted)."""

from __future__ import annotations

import numpy as np


def top1(scores: np.ndarray) -> np.ndarray:
    """Predicted class per row of (N, K) scores. Ties go to the lowest class index."""
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"expected (N, K) scores, got shape {s.shape}")
    return np.asarray(np.argmax(s, axis=1), dtype=np.int64)  # argmax returns the first maximum


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts over the full label range, so an absent class never shifts indices."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {t.size} vs {p.size}")
    k = int(num_classes)
    for name, a in (("labels", t), ("predictions", p)):
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} must be integers in 0..{k - 1}")
    idx = t.astype(np.int64) * k + p
    return np.bincount(idx, minlength=k * k).reshape(k, k)


def accuracy(cm: np.ndarray) -> float | None:
    """Share of items on the diagonal; None for an empty matrix."""
    total = int(cm.sum())
    return int(np.trace(cm)) / total if total else None


def per_class_accuracy(cm: np.ndarray) -> list[float | None]:
    """Per-class recall: correct items of class c / items labelled c; None when none is labelled c."""
    support = cm.sum(axis=1)
    return [int(cm[c, c]) / int(support[c]) if support[c] else None for c in range(cm.shape[0])]


def most_confused(cm: np.ndarray, k: int = 10) -> list[tuple[int, int, int, float]]:
    """Top-k off-diagonal (true, predicted, count, rate) by count; rate = count / support of true.

    Equal counts are ordered by (true, predicted) so the list is deterministic.
    """
    off = np.array(cm, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    counts = off[rows, cols]
    order = np.lexsort((cols, rows, -counts))[:k]
    support = cm.sum(axis=1)
    return [
        (int(rows[i]), int(cols[i]), int(counts[i]), int(counts[i]) / int(support[rows[i]]))
        for i in order
    ]
