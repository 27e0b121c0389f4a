"""Semantic segmentation: per-class AP over every pixel of the split, IoU from one confusion matrix.

`SegmentationAccumulator.update` takes batches (the worker scores batch by batch);
`segmentation_metrics` scores a whole array with the same code. Work is done in chunks of
images so temporaries stay small whatever the split size.

uint8 scores (probability x 255) take 256 values, so AP is exact from per-class histograms of
positives and negatives: per chunk and class one bincount over `label_row * 256 + score`
(torch's bincount, which takes int16 indices without widening them).
Float scores keep each class's positive/negative scores and sort at `compute()` time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scoring.metrics.average_precision import (
    ap_from_counts,
    counts_from_histograms,
    counts_from_pos_neg,
    mean_defined,
)
from scoring.types import AP_VARIANTS, APVariant

if TYPE_CHECKING:  # torch is imported where it is used: importing scoring stays light
    import torch

_CHUNK_PIXELS = 1 << 18  # ~5 images of 224x224: intp temporaries of a few MB


@dataclass
class SegmentationResult:
    ap: list[float | None]       # per class; None: no positive pixels
    iou: list[float | None]      # per class; None: absent from labels and predictions
    confusion: np.ndarray        # (K, K) int64, rows true, columns predicted (argmax)

    @property
    def mean_ap(self) -> float | None:
        return mean_defined(self.ap)

    @property
    def mean_iou(self) -> float | None:
        return mean_defined(self.iou)


def iou_from_confusion(cm: np.ndarray) -> list[float | None]:
    """IoU = TP / (TP + FP + FN) per class; None when the class is in neither labels nor predictions."""
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1) - tp
    return [int(tp[c]) / int(denom[c]) if denom[c] else None for c in range(cm.shape[0])]


def _argmax_classes(scores: np.ndarray) -> np.ndarray:
    """Argmax over axis 1 of (B, K, H, W) as uint8; ties go to the lowest class index."""
    if scores.dtype == np.uint8:
        return _argmax_uint8(scores)
    best = scores[:, 0].copy()
    arg = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, scores.shape[1]):
        plane = scores[:, k]
        np.putmask(arg, plane > best, k)  # strict: an equal score keeps the lower index
        np.maximum(best, plane, out=best)
    return arg


def _argmax_uint8(scores: np.ndarray) -> np.ndarray:
    """Argmax of uint8 scores via a running max of `score << 8 | (255 - k)`.

    The low byte makes equal scores resolve to the lowest k, and the whole loop is plain SIMD
    maxima on uint16 planes: several times faster than np.argmax(axis=1), which first copies
    the array to move the class axis last, or than a masked running argmax.
    """
    best: np.ndarray = np.left_shift(scores[:, 0], 8, dtype=np.uint16)
    best |= 255
    plane = np.empty_like(best)
    for k in range(1, scores.shape[1]):
        np.left_shift(scores[:, k], 8, out=plane, dtype=np.uint16)
        plane |= 255 - k
        np.maximum(best, plane, out=best)
    best &= 255
    return (255 - best).astype(np.uint8)


def _read_only_tensor(a: np.ndarray) -> torch.Tensor:
    """A torch view of `a` without a copy; a read-only memory map is fine since it is only read."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


class SegmentationAccumulator:
    """Accumulates exact AP and IoU state over batches of (B, K, H, W) scores and (B, H, W) labels."""

    def __init__(
        self,
        num_classes: int,
        ap_variant: APVariant = "voc",
        ignore_index: int | None = None,
        chunk_pixels: int = _CHUNK_PIXELS,
    ):
        if not 1 <= num_classes <= 255:
            raise ValueError("num_classes must be in 1..255")
        if ap_variant not in AP_VARIANTS:
            raise ValueError(f"unknown AP variant {ap_variant!r}; expected one of {AP_VARIANTS}")
        self.num_classes = int(num_classes)
        self.ap_variant = ap_variant
        self.ignore_index = ignore_index
        self.chunk_pixels = int(chunk_pixels)
        k = self.num_classes
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self._mode: str | None = None  # "uint8" or "float", fixed by the first batch
        self._pos_hist = np.zeros((k, 256), dtype=np.int64)
        self._neg_hist = np.zeros((k, 256), dtype=np.int64)
        self._pos: list[list[np.ndarray]] = [[] for _ in range(k)]
        self._neg: list[list[np.ndarray]] = [[] for _ in range(k)]

    # -- accumulation ---------------------------------------------------------------------

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        s = np.asarray(scores)
        y = np.asarray(labels)
        k = self.num_classes
        if s.ndim != 4 or s.shape[1] != k or y.shape != (s.shape[0],) + s.shape[2:]:
            raise ValueError(
                f"expected scores (B, {k}, H, W) and labels (B, H, W), got {s.shape} and {y.shape}"
            )
        mode = "uint8" if s.dtype == np.uint8 else "float"
        if mode == "float" and not np.issubdtype(s.dtype, np.floating):
            raise ValueError(f"scores must be uint8 or floating point, got {s.dtype}")
        if self._mode is None:
            self._mode = mode
        elif self._mode != mode:
            raise ValueError("cannot mix uint8 and float score batches in one accumulator")
        if s.size == 0:
            return
        per_image = max(1, s.shape[2] * s.shape[3])
        step = max(1, self.chunk_pixels // per_image)
        for i in range(0, s.shape[0], step):
            rows = self._label_rows(y[i : i + step])
            if mode == "uint8":
                self._update_uint8(s[i : i + step], rows)
            else:
                self._update_float(s[i : i + step], rows)

    def _label_rows(self, y: np.ndarray) -> np.ndarray:
        """Labels as uint16 row indices; ignored pixels go to the extra row K (dropped later)."""
        k = self.num_classes
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {y.dtype}")
        ignored = None if self.ignore_index is None else (y == self.ignore_index)
        kept = y if ignored is None else np.where(ignored, 0, y)
        if kept.min() < 0 or kept.max() >= k:
            extra = "" if ignored is None else f" or {self.ignore_index}"
            raise ValueError(f"label values must be in 0..{k - 1}{extra}")
        rows = kept.astype(np.uint16)
        if ignored is not None:
            rows[ignored] = k
        return rows

    def _update_uint8(self, s: np.ndarray, rows: np.ndarray) -> None:
        # torch's bincount counts int16 indices as they are; numpy's first copies them to intp,
        # which made the histograms four times slower (bench/metrics.py, segmentation rows).
        import torch

        k = self.num_classes
        nbins = (k + 1) * 256
        index_dtype = np.int16 if nbins <= 1 << 15 else np.int32
        base = torch.from_numpy(rows.astype(index_dtype)) << 8  # row * 256; the score byte fills the low bits
        scores = _read_only_tensor(s)
        buf = torch.empty_like(base)
        for c in range(k):
            torch.bitwise_or(base, scores[:, c], out=buf)
            h = torch.bincount(buf.ravel(), minlength=nbins).numpy().reshape(k + 1, 256)
            pos = h[c]
            self._pos_hist[c] += pos
            self._neg_hist[c] += h[:k].sum(axis=0) - pos
        torch.bitwise_or(base, torch.from_numpy(_argmax_uint8(s)), out=buf)
        cm = torch.bincount(buf.ravel(), minlength=nbins).numpy().reshape(k + 1, 256)
        self.confusion += cm[:k, :k]

    def _update_float(self, s: np.ndarray, rows: np.ndarray) -> None:
        k = self.num_classes
        if not np.isfinite(s).all():
            raise ValueError("scores contain NaN or infinity")
        valid = rows < k
        for c in range(k):
            plane = s[:, c]
            is_c = rows == c
            self._pos[c].append(plane[is_c])
            self._neg[c].append(plane[valid & ~is_c])
        idx = rows.astype(np.intp) * k + _argmax_classes(s)
        cm = np.bincount(idx.ravel(), minlength=(k + 1) * k)
        self.confusion += cm.reshape(k + 1, k)[:k]

    def merge(self, other: SegmentationAccumulator) -> SegmentationAccumulator:
        """A new accumulator holding both states (e.g. whole split = public + private)."""
        if (other.num_classes, other.ap_variant, other.ignore_index) != (
            self.num_classes, self.ap_variant, self.ignore_index
        ):
            raise ValueError("cannot merge accumulators with different settings")
        if self._mode and other._mode and self._mode != other._mode:
            raise ValueError("cannot merge uint8 and float accumulators")
        out = SegmentationAccumulator(self.num_classes, self.ap_variant, self.ignore_index, self.chunk_pixels)
        out._mode = self._mode or other._mode
        out.confusion = self.confusion + other.confusion
        out._pos_hist = self._pos_hist + other._pos_hist
        out._neg_hist = self._neg_hist + other._neg_hist
        out._pos = [a + b for a, b in zip(self._pos, other._pos)]
        out._neg = [a + b for a, b in zip(self._neg, other._neg)]
        return out

    # -- results --------------------------------------------------------------------------

    def class_counts(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """PR-curve counts (tp, fp) of class c at its distinct score thresholds."""
        if self._mode == "float":
            pos = np.concatenate(self._pos[c]) if self._pos[c] else np.zeros(0)
            neg = np.concatenate(self._neg[c]) if self._neg[c] else np.zeros(0)
            return counts_from_pos_neg(pos, neg)
        return counts_from_histograms(self._pos_hist[c], self._neg_hist[c])

    def compute(self) -> SegmentationResult:
        ap = [ap_from_counts(*self.class_counts(c), variant=self.ap_variant) for c in range(self.num_classes)]
        iou = iou_from_confusion(self.confusion)
        return SegmentationResult(ap=ap, iou=iou, confusion=self.confusion.copy())


def segmentation_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    ap_variant: APVariant = "voc",
    ignore_index: int | None = None,
) -> SegmentationResult:
    """AP and IoU of a whole (N, K, H, W) score array against (N, H, W) labels."""
    acc = SegmentationAccumulator(num_classes, ap_variant, ignore_index)
    acc.update(scores, labels)
    return acc.compute()
