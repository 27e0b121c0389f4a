"""Data types shared by the scoring layer, the worker and the service.

Kept free of behaviour so every module can import them without pulling in anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

TaskKind = Literal["classification", "multilabel", "segmentation"]
MetricName = Literal["accuracy", "mean_ap", "mean_iou"]
APVariant = Literal["step", "voc", "voc07"]
AP_VARIANTS: tuple[APVariant, ...] = ("step", "voc", "voc07")


@dataclass(frozen=True)
class PointsRule:
    """How a primary-metric value turns into points.

    kind "threshold": `max_points` at or above `bar`, else linear from `baseline` (0 points)
    to `bar` (max points) when `baseline` is set, else 0.
    kind "linear": 0 at `baseline`, `max_points` at `bar`, clipped to [0, max_points].
    """

    kind: Literal["threshold", "linear"]
    max_points: float
    bar: float
    baseline: float | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str                      # url-safe slug, e.g. "cifar10"
    title: str                     # human title
    kind: TaskKind
    classes: tuple[str, ...]       # ordered; index i is class id i
    metric: MetricName             # primary metric
    ap: APVariant | None           # AP variant where AP applies (multilabel, segmentation)
    split: str                     # split directory, absolute or relative to the data root
    public_fraction: float         # in (0, 1]; share of the split on the public board
    points: PointsRule | None
    scores: Literal["probabilities", "logits", "any"] = "any"  # what score inputs mean
    image_size: tuple[int, int] | None = None                  # (H, W) for segmentation
    max_upload_mb: float = 64.0
    # Model evaluation (used by the sandbox): input normalisation and limits.
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    accepts: tuple[Literal["predictions", "model"], ...] = ("predictions",)
    reference_model: str | None = None   # name in reference_models/ for state_dict uploads
    model_time_limit_s: float = 300.0
    allow_autocast: bool = True
    ignore_index: int | None = None      # segmentation label value excluded from scoring (e.g. 255)
    # Per-class values, confusion matrix and most-confused pairs of the public part. Off by
    # default: they reveal which items are public and their labels (docs/RELIABILITY.md, D9).
    public_detail: bool = False
    source: str | None = None            # file the spec was loaded from (for messages)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def resolve_split_dir(self, data_root: Path | str | None) -> Path:
        p = Path(self.split)
        if p.is_absolute() or data_root is None:
            return p
        return Path(data_root) / p


@dataclass
class Split:
    """A held-out split loaded in memory. Labels never leave the server."""

    root: Path
    labels: np.ndarray              # (N,) int64 | (N, C) uint8 0/1 | (N, H, W) uint8
    ids: list[str]                  # length N, split order
    public_mask: np.ndarray         # (N,) bool, fixed per split (seeded)
    id_index: dict[str, int] = field(default_factory=dict)  # id -> row, built on load

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass
class Predictions:
    """A validated submission, aligned to split order.

    Exactly one of `labels` / `scores` is set.
    labels: (N,) int64 class indices (classification only).
    scores: (N, K) float64 or uint8 for classification/multilabel, (N, K, H, W) uint8 or
            float32 for segmentation. uint8 means probability x 255.
    """

    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    source_format: str = ""         # "csv-labels", "csv-scores", "npy", "npz"
