"""Facts about each primary metric, kept as data so the leaderboard and reports agree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    display: str
    higher_is_better: bool


METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("accuracy", "Accuracy", True),
    "mean_ap": MetricInfo("mean_ap", "mAP", True),
    "mean_iou": MetricInfo("mean_iou", "mean IoU", True),
}

# The key, under a report's `per_class`, of the per-class values behind each metric.
# The one copy: reports, `undefined` reasons and the leaderboard's per-class view read it.
PER_CLASS_KEY: dict[str, str] = {"accuracy": "accuracy", "mean_ap": "ap", "mean_iou": "iou"}

# Which metrics each task kind reports, and so its per-class keys.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "multilabel": ("mean_ap",),
    "segmentation": ("mean_ap", "mean_iou"),
}
PER_CLASS_KEYS: dict[str, tuple[str, ...]] = {
    kind: tuple(PER_CLASS_KEY[m] for m in metrics) for kind, metrics in KIND_METRICS.items()
}

# Why a value can be undefined, by per-class key.
UNDEFINED_REASONS: dict[str, str] = {
    "accuracy": "no test items of this class",
    "ap": "no positive examples",
    "iou": "class absent from labels and predictions",
}


def metric_info(name: str) -> MetricInfo:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}") from None
