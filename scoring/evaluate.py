"""Score validated predictions against a held-out split: the report (schema in docs/ARCHITECTURE.md).

The whole split is at the top level; `parts.public` / `parts.private` follow `split.public_mask`.
Values are plain floats or None (undefined, listed under `undefined`); NaN never appears.
The public part carries no per-class breakdown unless the task sets `public_detail`
(see `withhold_detail`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scoring.errors import PredictionFormatError, TaskFileError
from scoring.metrics.average_precision import mean_defined, multilabel_average_precision
from scoring.metrics.classification import (
    accuracy,
    confusion_matrix,
    most_confused,
    per_class_accuracy,
    top1,
)
from scoring.metrics.info import KIND_METRICS, PER_CLASS_KEY, PER_CLASS_KEYS, UNDEFINED_REASONS, metric_info
from scoring.metrics.segmentation import SegmentationAccumulator, SegmentationResult
from scoring.points import compute_points
from scoring.types import APVariant, Predictions, Split, TaskSpec

MOST_CONFUSED_K = 10
_SEG_CHUNK_PIXELS = 1 << 18
EMPTY_PART_REASON = "no items in this part"
# The keys of a part that break its score down by class.
DETAIL_KEYS = ("per_class", "confusion", "most_confused")
WITHHELD_REASON = (
    "Per-class values of the public part are not shown: they would reveal which test items are "
    "public. The private part and the whole split show them once the task closes."
)
# A scorer's result: the whole split, its public part, its private part.
_Parts = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def evaluate(
    task: TaskSpec, split: Split, predictions: Predictions, *, public_detail: bool | None = None
) -> dict[str, Any]:
    """The report. `public_detail` overrides the task's setting (True where the caller holds the
    labels anyway, as `grade score` does)."""
    _check_task(task)
    mask = np.asarray(split.public_mask, dtype=bool)
    if mask.shape != (split.n,):
        raise ValueError(f"public mask has shape {mask.shape}, expected ({split.n},)")
    scorer = {
        "classification": _classification_parts,
        "multilabel": _multilabel_parts,
        "segmentation": _segmentation_parts,
    }[task.kind]
    try:
        whole, public, private = scorer(task, split, predictions, mask)
    except ValueError as exc:  # metric-level input checks: NaN/inf scores, out-of-range labels
        code = "not_finite" if "NaN" in str(exc) else "class_out_of_range"
        raise PredictionFormatError(str(exc), code=code) from None
    show_detail = task.public_detail if public_detail is None else public_detail
    public = {**public, "withheld": None} if show_detail else withhold_detail(public)
    info = metric_info(task.metric)
    report: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "n": split.n,
        "primary_metric": task.metric,
        "higher_is_better": info.higher_is_better,
        **{k: v for k, v in whole.items() if k != "n"},
        "points": compute_points(task.points, whole["primary"]),
        "parts": {"public": public, "private": private},
    }
    return report


def _check_task(task: TaskSpec) -> None:
    where = task.source or task.name
    if task.kind not in KIND_METRICS:
        raise TaskFileError(where, "kind", "one of " + ", ".join(KIND_METRICS), task.kind)
    if task.metric not in KIND_METRICS[task.kind]:
        raise TaskFileError(where, "metric", "one of " + ", ".join(KIND_METRICS[task.kind]), task.metric)
    if task.kind != "classification" and task.ap is None:
        raise TaskFileError(where, "ap", "an AP variant: step, voc or voc07")


def _ap_variant(task: TaskSpec) -> APVariant:
    """The AP variant of a multilabel or segmentation task, which `_check_task` requires."""
    if task.ap is None:
        raise TaskFileError(task.source or task.name, "ap", "an AP variant: step, voc or voc07")
    return task.ap


def withhold_detail(part: dict[str, Any]) -> dict[str, Any]:
    """`part` without its per-class breakdown, with `withheld` saying why.

    A student chooses every prediction, so any exact per-class count of the public part tells
    them something about the items they varied: nine ids predicted as classes 1-9 (class 0
    elsewhere) show up in confusion columns 1-9 exactly when they are public, with their labels.
    Thresholds and rounding do not close this: diffing two submissions, or first moving a count
    onto a rounding boundary, brings back one id per reported value per submission. What is left
    is the primary score, one number per submission, as on any public leaderboard.
    """
    out = {k: (None if k in DETAIL_KEYS else v) for k, v in part.items()}
    out["undefined"] = [u for u in part.get("undefined") or [] if u.get("class") is None]
    out["withheld"] = WITHHELD_REASON
    return out


# -- part assembly ----------------------------------------------------------------------------


def _part(
    task: TaskSpec,
    n: int,
    metrics: dict[str, float | None],
    per_class: dict[str, list[float | None]],
    **extra: Any,
) -> dict[str, Any]:
    """One report part: n, primary, metrics, per_class, undefined, plus kind-specific extras."""
    names = task.classes
    undefined: list[dict[str, Any]] = []
    if n == 0:
        undefined = [{"class": None, "metric": m, "reason": EMPTY_PART_REASON} for m in metrics]
    else:
        for key, values in per_class.items():
            for name, v in zip(names, values):
                if v is None:
                    undefined.append({"class": name, "metric": key, "reason": UNDEFINED_REASONS[key]})
        for m, v in metrics.items():
            if v is None:
                undefined.append({"class": None, "metric": m, "reason": f"no class has a defined {PER_CLASS_KEY[m]}"})
    return {
        "n": int(n),
        "primary": metrics[task.metric],
        "metrics": metrics,
        "per_class": {
            name: {key: per_class[key][c] for key in PER_CLASS_KEYS[task.kind]}
            for c, name in enumerate(names)
        },
        "undefined": undefined,
        **extra,
    }


def _shape_error(what: str, expected: str, found: tuple[int, ...]) -> PredictionFormatError:
    return PredictionFormatError(f"{what}: expected shape {expected}, found {found}", code="wrong_shape")


def _scores_array(predictions: Predictions, task: TaskSpec) -> np.ndarray:
    if predictions.scores is None:
        raise PredictionFormatError(
            f"a {task.kind} task needs one score per class, not predicted labels", code="unsupported_format"
        )
    s = predictions.scores
    if s.dtype != np.uint8 and not np.issubdtype(s.dtype, np.floating):
        raise PredictionFormatError(
            f"scores must be uint8 or floating point, found {s.dtype}", code="wrong_dtype"
        )
    return s


# -- classification ---------------------------------------------------------------------------


def _classification_parts(task: TaskSpec, split: Split, predictions: Predictions, mask: np.ndarray) -> _Parts:
    k, n = task.num_classes, split.n
    if predictions.labels is not None:
        y_pred = np.asarray(predictions.labels)
        if y_pred.shape != (n,):
            raise _shape_error("predicted labels", f"({n},)", y_pred.shape)
    else:
        s = _scores_array(predictions, task)
        if s.shape != (n, k):
            raise _shape_error("scores", f"({n}, {k})", s.shape)
        y_pred = top1(s)
    y_true = np.asarray(split.labels)
    cm_public = confusion_matrix(y_true[mask], y_pred[mask], k)
    cm_private = confusion_matrix(y_true[~mask], y_pred[~mask], k)
    return (
        _classification_part(task, cm_public + cm_private),
        _classification_part(task, cm_public),
        _classification_part(task, cm_private),
    )


def _classification_part(task: TaskSpec, cm: np.ndarray) -> dict[str, Any]:
    names = task.classes
    pairs = [
        {"true": names[t], "predicted": names[p], "count": c, "rate": r}
        for t, p, c, r in most_confused(cm, MOST_CONFUSED_K)
    ]
    return _part(
        task,
        int(cm.sum()),
        {"accuracy": accuracy(cm)},
        {"accuracy": per_class_accuracy(cm)},
        confusion={"classes": list(names), "matrix": cm.tolist()},
        most_confused=pairs,
    )


# -- multilabel -------------------------------------------------------------------------------


def _multilabel_parts(task: TaskSpec, split: Split, predictions: Predictions, mask: np.ndarray) -> _Parts:
    k, n = task.num_classes, split.n
    s = _scores_array(predictions, task)
    if s.shape != (n, k):
        raise _shape_error("scores", f"({n}, {k})", s.shape)
    y = np.asarray(split.labels)

    def part(rows: np.ndarray | slice) -> dict[str, Any]:
        ap = multilabel_average_precision(s[rows], y[rows], _ap_variant(task))
        return _part(task, int(y[rows].shape[0]), {"mean_ap": mean_defined(ap)}, {"ap": ap})

    return part(slice(None)), part(mask), part(~mask)


# -- segmentation -----------------------------------------------------------------------------


def _segmentation_parts(task: TaskSpec, split: Split, predictions: Predictions, mask: np.ndarray) -> _Parts:
    k = task.num_classes
    s = _scores_array(predictions, task)
    y = split.labels
    expected = (y.shape[0], k) + tuple(y.shape[1:])
    if s.shape != expected:
        raise _shape_error("scores", "(" + ", ".join(map(str, expected)) + ")", s.shape)
    public = SegmentationAccumulator(k, _ap_variant(task), task.ignore_index)
    private = SegmentationAccumulator(k, _ap_variant(task), task.ignore_index)
    # Feed contiguous runs of images (scores may be memory-mapped); each image goes to one part.
    step = max(1, _SEG_CHUNK_PIXELS // max(1, y.shape[1] * y.shape[2]))
    for i in range(0, y.shape[0], step):
        m = mask[i : i + step]
        sc, lab = s[i : i + step], y[i : i + step]
        if m.all():
            public.update(sc, lab)
        elif not m.any():
            private.update(sc, lab)
        else:
            public.update(sc[m], lab[m])
            private.update(sc[~m], lab[~m])
    n_public = int(mask.sum())
    return (
        _segmentation_part(task, public.merge(private).compute(), y.shape[0]),
        _segmentation_part(task, public.compute(), n_public),
        _segmentation_part(task, private.compute(), y.shape[0] - n_public),
    )


def _segmentation_part(task: TaskSpec, r: SegmentationResult, n: int) -> dict[str, Any]:
    return _part(task, n, {"mean_ap": r.mean_ap, "mean_iou": r.mean_iou}, {"ap": r.ap, "iou": r.iou})
