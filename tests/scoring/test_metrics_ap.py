"""Average precision (step / voc / voc07) against sklearn, torchmetrics and plain references."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from scoring.metrics.average_precision import (
    ap_from_counts,
    average_precision,
    binary_pr_counts,
    counts_from_histograms,
    counts_from_pos_neg,
    counts_from_sorted,
    mean_defined,
    multilabel_average_precision,
)

TOL = 1e-9


# -- plain references: loops and exact fractions, ties grouped at equal scores ------------------


def ref_curve(scores, targets) -> list[tuple[Fraction, Fraction]]:
    """(recall, precision) at every distinct threshold, highest threshold first."""
    scores = [float(s) for s in scores]
    targets = [int(t) for t in targets]
    npos = sum(targets)
    points = []
    for t in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, targets) if s >= t and y == 1)
        fp = sum(1 for s, y in zip(scores, targets) if s >= t and y == 0)
        points.append((Fraction(tp, npos), Fraction(tp, tp + fp)))
    return points


def ref_step(scores, targets) -> float:
    total, prev_r = Fraction(0), Fraction(0)
    for r, p in ref_curve(scores, targets):
        total += (r - prev_r) * p
        prev_r = r
    return float(total)


def ref_voc(scores, targets) -> float:
    """All-point interpolation: area under the precision envelope over the recall steps."""
    pts = ref_curve(scores, targets)
    total, prev_r = Fraction(0), Fraction(0)
    for j, (r, _) in enumerate(pts):
        envelope = max(p for _, p in pts[j:])
        total += (r - prev_r) * envelope
        prev_r = r
    return float(total)


def ref_voc07(scores, targets) -> float:
    pts = ref_curve(scores, targets)
    total = Fraction(0)
    for k in range(11):
        t = Fraction(k, 10)
        total += max((p for r, p in pts if r >= t), default=Fraction(0))
    return float(total / 11)


REFS = {"step": ref_step, "voc": ref_voc, "voc07": ref_voc07}


def devkit_voc_ap(scores, targets, use_07_metric: bool) -> float:
    """The PASCAL VOC devkit's voc_ap on the per-item (untied) curve: valid only without ties."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    y = np.asarray(targets)[order]
    tp, fp = np.cumsum(y == 1), np.cumsum(y == 0)
    rec = tp / float(y.sum())
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def sk_ap(targets, scores) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(targets, scores))


# -- inputs ---------------------------------------------------------------------------------


def _cases(seed: int = 0):
    """(name, scores, targets) — random and adversarial, each with at least one positive."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 2, 7, 50, 300):
        y = (rng.random(n) < 0.4).astype(np.int64)
        y[0] = 1
        out.append((f"random-{n}", rng.random(n), y))
    y = (rng.random(400) < 0.3).astype(np.int64)
    y[0] = 1
    out.append(("ties-few-values", rng.integers(0, 5, 400).astype(np.float64) / 4, y))
    out.append(("all-equal", np.full(400, 0.5), y))
    out.append(("uint8", rng.integers(0, 256, 400).astype(np.uint8), y))
    out.append(("uint8-quantised-probs", (rng.beta(0.3, 0.3, 400) * 255).astype(np.uint8), y))
    out.append(("all-positive", rng.random(30), np.ones(30, np.int64)))
    out.append(("single-positive-item", np.array([0.3]), np.array([1])))
    out.append(("perfect", np.arange(20.0), (np.arange(20) >= 12).astype(int)))
    out.append(("worst", np.arange(20.0), (np.arange(20) < 3).astype(int)))
    out.append(("negative-int16", rng.integers(-300, 300, 200).astype(np.int16), y[:200]))
    out.append(("signed-zero", np.array([0.0, -0.0, 1.0, -0.0]), np.array([0, 1, 1, 0])))
    return out


CASES = _cases()
IDS = [c[0] for c in CASES]


# -- step: sklearn --------------------------------------------------------------------------


@pytest.mark.parametrize("name,scores,targets", CASES, ids=IDS)
def test_step_equals_sklearn(name, scores, targets):
    ours = average_precision(scores, targets, "step")
    assert ours == pytest.approx(sk_ap(targets, scores), abs=TOL)


def test_step_bit_identical_to_sklearn_on_random_floats():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 3000))
        s = np.round(rng.random(n), int(rng.integers(1, 6)))  # many ties
        y = (rng.random(n) < rng.random()).astype(int)
        y[0] = 1
        assert average_precision(s, y, "step") == sk_ap(y, s)


def test_step_on_a_million_uint8_scores():
    rng = np.random.default_rng(2)
    n = 1_000_000
    y = (rng.random(n) < 0.1).astype(np.uint8)
    s = np.clip(rng.normal(100 + 60 * y, 40), 0, 255).astype(np.uint8)
    ours = average_precision(s, y, "step")
    assert ours == pytest.approx(sk_ap(y, s), abs=TOL)
    # and the same through the sort path
    assert ap_from_counts(*counts_from_pos_neg(s[y == 1].astype(np.float64), s[y == 0].astype(np.float64))) == ours


# -- voc / voc07: exact references ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["step", "voc", "voc07"])
@pytest.mark.parametrize("name,scores,targets", CASES, ids=IDS)
def test_variants_equal_fraction_reference(variant, name, scores, targets):
    assert average_precision(scores, targets, variant) == pytest.approx(REFS[variant](scores, targets), abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_voc_equals_devkit_without_ties(seed):
    rng = np.random.default_rng(seed)
    s = rng.permutation(500) / 500.0  # distinct scores: the devkit's untied curve is the same curve
    y = np.zeros(500, int)
    y[rng.choice(500, 37, replace=False)] = 1  # 37 positives: no recall equals k/10 except 0 and 1
    assert average_precision(s, y, "voc") == pytest.approx(devkit_voc_ap(s, y, False), abs=TOL)
    assert average_precision(s, y, "voc07") == pytest.approx(devkit_voc_ap(s, y, True), abs=TOL)


def test_voc07_counts_recall_exactly_at_a_tenth():
    # 10 positives: recall hits 0.3 exactly; the rule is recall >= 3/10, compared exactly.
    s = np.arange(40.0)[::-1]
    y = np.zeros(40, int)
    y[[0, 1, 5, 9, 14, 20, 25, 30, 35, 39]] = 1
    assert average_precision(s, y, "voc07") == pytest.approx(ref_voc07(s, y), abs=TOL)


def test_variants_differ_on_a_typical_curve():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([0, 1, 1, 0, 0, 1])
    values = {v: average_precision(s, y, v) for v in ("step", "voc", "voc07")}
    assert len(set(values.values())) == 3, values


# -- ties, order, undefined -----------------------------------------------------------------


@pytest.mark.parametrize("variant", ["step", "voc", "voc07"])
@pytest.mark.parametrize("name,scores,targets", CASES, ids=IDS)
def test_order_independent(variant, name, scores, targets):
    rng = np.random.default_rng(7)
    base = average_precision(scores, targets, variant)
    for _ in range(3):
        p = rng.permutation(len(scores))
        assert average_precision(scores[p], targets[p], variant) == base


def test_ties_are_grouped_not_broken_by_order():
    # A positive and a negative tied at the top: grouped precision 1/2 for the first recall step.
    s = np.array([1.0, 1.0])
    for y in (np.array([1, 0]), np.array([0, 1])):
        assert average_precision(s, y, "step") == 0.5
        assert average_precision(s, y, "voc") == 0.5


@pytest.mark.parametrize("variant", ["step", "voc", "voc07"])
def test_no_positives_is_undefined(variant):
    assert average_precision(np.random.default_rng(0).random(10), np.zeros(10), variant) is None
    assert average_precision(np.array([0.2]), np.array([0]), variant) is None
    assert average_precision(np.zeros(0), np.zeros(0), variant) is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        average_precision(np.array([0.1, np.nan]), np.array([1, 0]))
    with pytest.raises(ValueError):
        average_precision(np.array([0.1, 0.2]), np.array([1, 2]))
    with pytest.raises(ValueError):
        average_precision(np.array([0.1, 0.2]), np.array([1]))
    with pytest.raises(ValueError):
        ap_from_counts(np.array([1]), np.array([0]), "vocc")


# -- count path == sort path ----------------------------------------------------------------


def test_uint8_count_path_equals_sort_path_exactly():
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = int(rng.integers(1, 5000))
        s = rng.integers(0, int(rng.integers(1, 256)) + 1, n).astype(np.uint8)
        y = rng.random(n) < rng.random()
        tp_c, fp_c = binary_pr_counts(s, y)  # histogram path
        tp_s, fp_s = counts_from_sorted(np.sort(s.astype(np.float64)), np.sort(s[y].astype(np.float64)))
        np.testing.assert_array_equal(tp_c, tp_s)
        np.testing.assert_array_equal(fp_c, fp_s)
        hist_pos = np.bincount(s[y], minlength=256)
        hist_neg = np.bincount(s[~y], minlength=256)
        tp_h, fp_h = counts_from_histograms(hist_pos, hist_neg)
        np.testing.assert_array_equal(tp_h, tp_s)
        np.testing.assert_array_equal(fp_h, fp_s)
        for v in ("step", "voc", "voc07"):
            assert ap_from_counts(tp_c, fp_c, v) == ap_from_counts(tp_s, fp_s, v)


def test_integer_valued_float_scores_take_the_count_path_with_the_same_result():
    rng = np.random.default_rng(4)
    n = 100_000  # above the size where floats are checked for integer values
    s = rng.integers(-1000, 1000, n).astype(np.float64)
    y = rng.random(n) < 0.2
    for v in ("step", "voc", "voc07"):
        assert average_precision(s, y, v) == ap_from_counts(
            *counts_from_sorted(np.sort(s), np.sort(s[y])), variant=v
        )
    assert average_precision(s, y, "step") == pytest.approx(sk_ap(y, s), abs=TOL)


# -- multilabel -----------------------------------------------------------------------------


def test_multilabel_equals_sklearn_per_class_and_torchmetrics():
    import torch
    from torchmetrics.functional.classification import multilabel_average_precision as tm_ap

    rng = np.random.default_rng(5)
    n, c = 600, 8
    y = (rng.random((n, c)) < 0.2).astype(np.uint8)
    y[:, 3] = 0  # a class with no positives
    s = np.round(rng.random((n, c)), 2)  # ties
    s[:, 5] = 0.5  # all-equal column
    ours = multilabel_average_precision(s, y, "step")
    assert ours[3] is None
    for k in range(c):
        if k != 3:
            assert ours[k] == pytest.approx(sk_ap(y[:, k], s[:, k]), abs=TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the class with no positives
        tm = tm_ap(torch.tensor(s, dtype=torch.float64), torch.tensor(y, dtype=torch.long), num_labels=c,
                   average=None, thresholds=None).numpy()
    for k in range(c):
        if k != 3:  # torchmetrics reports a class with no positives as 0, not undefined
            # torchmetrics returns float32 whatever the input dtype: agreement to float32 precision.
            assert ours[k] == pytest.approx(float(tm[k]), abs=1e-6)
    u8 = (s * 255).astype(np.uint8)
    assert multilabel_average_precision(u8, y, "voc") == [
        average_precision(u8[:, k], y[:, k], "voc") for k in range(c)
    ]


def test_mean_defined_leaves_out_undefined():
    assert mean_defined([0.5, None, 1.0]) == 0.75
    assert mean_defined([None, None]) is None
    assert mean_defined([]) is None
