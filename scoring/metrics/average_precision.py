"""Average precision (step / voc / voc07) with ties grouped at equal scores.

Every path reduces a binary problem to the precision-recall curve at each *distinct* score
threshold, as cumulative counts `tp`, `fp` (descending threshold order). Items with equal
scores enter the curve together, so the result never depends on input order. The AP
formulas then run on those counts only, so the per-value-count path (uint8, small-range
integers: histograms, no sort) and the sort path give bit-identical results.
"""

from __future__ import annotations

import math

import numpy as np

from scoring.types import AP_VARIANTS, APVariant

# Integer scores spanning at most this many values use histograms instead of a sort.
_MAX_COUNT_RANGE = 1 << 16
# Float arrays at least this long are checked for integer values (the check costs two passes).
_FLOAT_INT_CHECK_MIN = 1 << 15


def counts_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PR-curve counts from per-value histograms (index = score value, ascending).

    Cumulative sums from the top value down give tp/fp at every threshold; values that no
    item takes are dropped so the curve matches the sort-based one point for point.
    """
    p = np.asarray(pos_hist, dtype=np.int64)[::-1]
    n = np.asarray(neg_hist, dtype=np.int64)[::-1]
    present = (p + n) > 0
    return np.cumsum(p)[present], np.cumsum(n)[present]


def counts_from_sorted(all_sorted: np.ndarray, pos_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PR-curve counts from ascending-sorted scores of all items and of the positives."""
    n = all_sorted.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], all_sorted[1:] != all_sorted[:-1])))
    distinct = all_sorted[starts]
    at_or_above = n - starts
    tp = pos_sorted.size - np.searchsorted(pos_sorted, distinct, side="left")
    fp = at_or_above - tp
    return tp[::-1].astype(np.int64), fp[::-1].astype(np.int64)


def counts_from_pos_neg(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PR-curve counts from the scores of positives and of negatives (sort path)."""
    pos = np.asarray(pos).ravel()
    neg = np.asarray(neg).ravel()
    return counts_from_sorted(np.sort(np.concatenate((pos, neg))), np.sort(pos))


def _integer_view(scores: np.ndarray) -> np.ndarray | None:
    """The scores as int64 when they are integers spanning few values, else None."""
    if scores.size == 0:
        return None
    if scores.dtype == np.bool_:
        return scores.astype(np.int64)
    if np.issubdtype(scores.dtype, np.integer):
        lo, hi = int(scores.min()), int(scores.max())
        return scores.astype(np.int64) if hi - lo < _MAX_COUNT_RANGE else None
    if np.issubdtype(scores.dtype, np.floating) and scores.size >= _FLOAT_INT_CHECK_MIN:
        low, high = float(scores.min()), float(scores.max())
        if -(2.0**53) < low and high < 2.0**53 and high - low < _MAX_COUNT_RANGE:
            as_int = scores.astype(np.int64)
            if np.array_equal(as_int, scores):
                return as_int
    return None


def binary_pr_counts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tp, fp (int64, descending distinct thresholds) for one binary problem."""
    s = np.asarray(scores).ravel()
    t = np.asarray(targets).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores and targets differ in length: {s.size} vs {t.size}")
    if t.dtype != np.bool_:
        if t.size and not np.isin(t, (0, 1)).all():
            raise ValueError("targets must be 0/1")
        t = t.astype(bool)
    if np.issubdtype(s.dtype, np.floating) and s.size and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    ints = _integer_view(s)
    if ints is not None:
        lo = int(ints.min())
        span = int(ints.max()) - lo + 1
        # One bincount: bin = is_positive * span + (score - lo).
        idx = ints - lo
        idx += t * span
        h = np.bincount(idx, minlength=2 * span).reshape(2, span)
        return counts_from_histograms(h[1], h[0])
    return counts_from_sorted(np.sort(s), np.sort(s[t]))


def ap_from_counts(tp: np.ndarray, fp: np.ndarray, variant: APVariant = "step") -> float | None:
    """AP from PR-curve counts; None when there are no positives (undefined, never NaN)."""
    if variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {variant!r}; expected one of {AP_VARIANTS}")
    tp = np.asarray(tp, dtype=np.int64)
    fp = np.asarray(fp, dtype=np.int64)
    if tp.size == 0 or tp[-1] == 0:
        return None
    npos = int(tp[-1])
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    if variant == "step":
        # The same float operations, in the same order, as sklearn's average_precision_score,
        # so the step variant agrees with it bit for bit.
        rec_desc = np.concatenate((recall[::-1], [0.0]))
        return float(max(0.0, -np.sum(np.diff(rec_desc) * precision[::-1])))
    # Envelope: best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if variant == "voc":
        steps = np.diff(np.concatenate(([0.0], recall)))
        return float(np.sum(steps * envelope))
    # voc07: t = k/10 compared exactly in integers (recall >= k/10  <=>  10*tp >= k*npos),
    # so recall 0.3 counts at t = 0.3 (np.arange(0, 1.1, 0.1) would give 0.30000000000000004).
    targets = (np.arange(11, dtype=np.int64) * npos + 9) // 10
    first = np.searchsorted(tp, targets, side="left")
    values = [float(envelope[j]) if j < tp.size else 0.0 for j in first]
    return float(sum(values) / 11.0)


def average_precision(scores: np.ndarray, targets: np.ndarray, variant: APVariant = "step") -> float | None:
    """AP of one binary problem; None when `targets` has no positives."""
    return ap_from_counts(*binary_pr_counts(scores, targets), variant=variant)


def multilabel_average_precision(
    scores: np.ndarray, targets: np.ndarray, variant: APVariant = "step"
) -> list[float | None]:
    """Per-class AP over (N, C) scores and 0/1 targets; None for classes with no positives."""
    s = np.asarray(scores)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"expected (N, C) scores and targets of one shape, got {s.shape} and {t.shape}")
    return [average_precision(s[:, c], t[:, c], variant) for c in range(s.shape[1])]


def mean_defined(values: list[float | None]) -> float | None:
    """Mean over defined values (None left out); None when none is defined."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None
    return math.fsum(defined) / len(defined)
