"""Held-out split directories: load (validated against a task), write (atomically), public mask.

Directory format (see docs/formats.md):
  labels.npy   classification (N,) integers | multilabel (N, C) 0/1 | segmentation (N, H, W) uint8
  ids.txt      optional, one id per line (default "0".."N-1")
  inputs.npy   optional, (N, C, H, W) uint8 or float32, for model evaluation
  split.json   {"seed": int, "source": str|null, "created": iso-8601, "n": N}

Messages never contain label values (only counts, shapes and dtypes).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoring.errors import SplitError
from scoring.types import Split, TaskSpec

LABELS_FILE = "labels.npy"
IDS_FILE = "ids.txt"
INPUTS_FILE = "inputs.npy"
META_FILE = "split.json"
MAX_ID_LENGTH = 200


# --------------------------------------------------------------------------- public mask

def public_mask(ids: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Which rows are on the public leaderboard.

    Ranks ids by a keyed hash (blake2b keyed with the seed) and takes the first
    round(fraction * N), at least one when N > 0. Deterministic across runs and machines
    (no RNG state, no PYTHONHASHSEED), and stable: adding or removing an id never moves
    another id across the public/private boundary except by the shift of the count itself.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    n = len(ids)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    k = min(n, max(1, int(math.floor(fraction * n + 0.5))))
    if k == n:
        mask[:] = True
        return mask
    key = int(seed).to_bytes(16, "little", signed=True)
    digests = [hashlib.blake2b(str(i).encode("utf-8"), key=key, digest_size=8).digest()
               for i in ids]
    order = sorted(range(n), key=lambda r: (digests[r], ids[r]))
    mask[np.asarray(order[:k], dtype=np.int64)] = True
    return mask


# --------------------------------------------------------------------------- loading

def _read_meta(root: Path) -> dict[str, Any]:
    path = root / META_FILE
    if not path.is_file():
        raise SplitError(f"{root}: {META_FILE} is missing (it fixes the public/private partition; "
                         "write splits with write_split or `grade split import`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SplitError(f"{path}: expected a JSON object")
    seed = meta.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SplitError(f"{path}: 'seed' must be an integer, found {type(seed).__name__}")
    return meta


def _read_ids(root: Path, n: int) -> list[str]:
    path = root / IDS_FILE
    if not path.exists():
        return [str(i) for i in range(n)]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SplitError(f"{path}: not UTF-8 (byte offset {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    ids = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if len(ids) != n:
        raise SplitError(f"{path}: {len(ids)} ids but {LABELS_FILE} has {n} rows")
    seen: dict[str, int] = {}
    for lineno, i in enumerate(ids, start=1):
        if not i or i != i.strip():
            raise SplitError(f"{path}: line {lineno}: an id must be non-empty without "
                             "surrounding spaces")
        if len(i) > MAX_ID_LENGTH or any(ord(c) < 32 for c in i) or '"' in i or "," in i:
            raise SplitError(f"{path}: line {lineno}: an id must be at most {MAX_ID_LENGTH} "
                             "characters with no control characters, commas or quotes")
        if i in seen:
            raise SplitError(f"{path}: line {lineno}: id {i!r} repeats line {seen[i]}")
        seen[i] = lineno
    return ids


def _load_labels(root: Path) -> np.ndarray:
    path = root / LABELS_FILE
    if not path.is_file():
        raise SplitError(f"{root}: {LABELS_FILE} is missing")
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SplitError(f"{path}: not a readable .npy array without pickled objects "
                         f"({type(exc).__name__})") from None
    if not isinstance(labels, np.ndarray):
        raise SplitError(f"{path}: expected a single array")
    return labels


def _check_labels(labels: np.ndarray, task: TaskSpec, where: Path) -> np.ndarray:
    """Dtype, shape and range checks; returns labels in the canonical dtype of Split."""
    c = task.num_classes
    if labels.dtype.kind not in "iub":
        raise SplitError(f"{where}: labels must be integers, found dtype {labels.dtype}")
    if task.kind == "classification":
        if labels.ndim != 1:
            raise SplitError(f"{where}: classification labels must have shape (N,), "
                             f"found {labels.shape}")
        bad = int(np.count_nonzero((labels < 0) | (labels >= c)))
        if bad:
            raise SplitError(f"{where}: {bad} labels are outside the class ids 0..{c - 1} "
                             f"of task {task.name!r}")
        return labels.astype(np.int64, copy=False)
    if task.kind == "multilabel":
        if labels.ndim != 2 or labels.shape[1] != c:
            raise SplitError(f"{where}: multilabel labels must have shape (N, {c}), "
                             f"found {labels.shape}")
        bad = int(np.count_nonzero((labels != 0) & (labels != 1)))
        if bad:
            raise SplitError(f"{where}: {bad} multilabel entries are not 0 or 1")
        return labels.astype(np.uint8, copy=False)
    # segmentation
    if labels.ndim != 3:
        raise SplitError(f"{where}: segmentation labels must have shape (N, H, W), "
                         f"found {labels.shape}")
    if task.image_size is not None and tuple(labels.shape[1:]) != tuple(task.image_size):
        raise SplitError(f"{where}: segmentation labels are {labels.shape[1]}x{labels.shape[2]}, "
                         f"task {task.name!r} expects {task.image_size[0]}x{task.image_size[1]}")
    if labels.dtype != np.uint8:
        if int(labels.min(initial=0)) < 0 or int(labels.max(initial=0)) > 255:
            raise SplitError(f"{where}: segmentation labels must fit uint8 (0..255)")
        labels = labels.astype(np.uint8)
    # Count out-of-range pixels with a 256-bin histogram: one pass, no big temporaries.
    counts = np.bincount(labels.reshape(-1), minlength=256)
    allowed = np.zeros(256, dtype=bool)
    allowed[:c] = True
    if task.ignore_index is not None:
        allowed[task.ignore_index] = True
    bad = int(counts[~allowed].sum())
    if bad:
        ignore = f" or ignore_index {task.ignore_index}" if task.ignore_index is not None else ""
        raise SplitError(f"{where}: {bad} label pixels are outside the class ids 0..{c - 1}"
                         f"{ignore} of task {task.name!r}")
    return labels


def load_split(directory: str | Path, task: TaskSpec | None = None) -> Split:
    """Load a split directory. With a task: validate the labels against it and compute the
    public mask from `task.public_fraction`; without one every row is public."""
    root = Path(directory)
    if not root.is_dir():
        raise SplitError(f"{root}: split directory not found")
    meta = _read_meta(root)
    labels = _load_labels(root)
    if labels.ndim == 0 or labels.shape[0] == 0:
        raise SplitError(f"{root / LABELS_FILE}: the split is empty (shape {labels.shape})")
    n = int(labels.shape[0])
    if task is not None:
        labels = _check_labels(labels, task, root / LABELS_FILE)
    ids = _read_ids(root, n)
    inputs_path = root / INPUTS_FILE
    if inputs_path.exists():
        inputs = load_inputs(root)
        if inputs is not None and inputs.shape[0] != n:
            raise SplitError(f"{inputs_path}: {inputs.shape[0]} rows but {LABELS_FILE} has {n}")
    fraction = task.public_fraction if task is not None else 1.0
    mask = public_mask(ids, fraction, meta["seed"])
    return Split(root=root, labels=labels, ids=ids, public_mask=mask,
                 id_index={i: r for r, i in enumerate(ids)})


def load_inputs(directory: str | Path) -> np.ndarray | None:
    """The split's model inputs, memory-mapped read-only, or None when it has none."""
    path = Path(directory) / INPUTS_FILE
    if not path.exists():
        return None
    try:
        arr: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SplitError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    if arr.ndim != 4 or arr.dtype not in (np.uint8, np.float32):
        raise SplitError(f"{path}: inputs must be (N, C, H, W) uint8 or float32, "
                         f"found {arr.shape} {arr.dtype}")
    return arr


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The split's split.json (seed, source, created, n)."""
    return _read_meta(Path(directory))


# --------------------------------------------------------------------------- writing

def _canonical_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise SplitError(f"labels must be integers, found dtype {labels.dtype}")
    if labels.ndim == 0 or labels.shape[0] == 0:
        raise SplitError(f"labels must have at least one row, found shape {labels.shape}")
    if labels.ndim == 1:
        return labels.astype(np.int64, copy=False)
    if labels.ndim in (2, 3):
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
            raise SplitError("multilabel/segmentation labels must fit uint8 (0..255)")
        return labels.astype(np.uint8, copy=False)
    raise SplitError(f"labels must be (N,), (N, C) or (N, H, W), found shape {labels.shape}")


def write_split(directory: str | Path, labels: np.ndarray, ids: Sequence[str] | None = None,
                inputs: np.ndarray | None = None, seed: int = 0, source: str | None = None,
                *, overwrite: bool = False) -> Path:
    """Write a split directory atomically: everything goes to a temporary sibling directory
    which is renamed into place, so readers never see a half-written split."""
    root = Path(directory)
    labels = _canonical_labels(labels)
    n = int(labels.shape[0])
    if ids is not None:
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise SplitError(f"{len(ids)} ids for {n} label rows")
        if len(set(ids)) != n:
            raise SplitError("ids must be unique")
        for i in ids:
            if (not i or i != i.strip() or len(i) > MAX_ID_LENGTH
                    or any(ord(c) < 32 for c in i) or '"' in i or "," in i):
                raise SplitError(f"invalid id {i[:40]!r}: ids must be non-empty, at most "
                                 f"{MAX_ID_LENGTH} characters, without surrounding spaces, "
                                 "control characters, commas or quotes")
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.ndim != 4 or inputs.shape[0] != n or inputs.dtype not in (np.uint8, np.float32):
            raise SplitError(f"inputs must be ({n}, C, H, W) uint8 or float32, "
                             f"found {inputs.shape} {inputs.dtype}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SplitError(f"seed must be an integer, found {seed!r}")
    if root.exists() and not overwrite:
        raise SplitError(f"{root}: already exists (pass overwrite=True / --overwrite to replace it)")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        np.save(tmp / LABELS_FILE, labels, allow_pickle=False)
        if ids is not None:
            (tmp / IDS_FILE).write_text("".join(i + "\n" for i in ids), encoding="utf-8")
        if inputs is not None:
            np.save(tmp / INPUTS_FILE, np.ascontiguousarray(inputs), allow_pickle=False)
        meta = {"seed": seed, "source": source, "n": n,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        # Owner-only whatever the umask: labels are the secret a sandboxed model must never read.
        for written in tmp.iterdir():
            os.chmod(written, 0o600)
        os.chmod(tmp, 0o700)
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def describe_split(directory: str | Path, task: TaskSpec | None = None) -> dict[str, Any]:
    """Summary for the instructor's terminal (`grade split info`): sizes, shapes, class counts."""
    split = load_split(directory, task)
    meta = _read_meta(split.root)
    info: dict[str, Any] = {
        "path": str(split.root), "n": split.n, "labels_shape": list(split.labels.shape),
        "labels_dtype": str(split.labels.dtype), "seed": meta.get("seed"),
        "source": meta.get("source"), "created": meta.get("created"),
        "public": int(split.public_mask.sum()), "ids_file": (split.root / IDS_FILE).exists(),
    }
    inputs = load_inputs(split.root)
    info["inputs"] = None if inputs is None else {"shape": list(inputs.shape),
                                                  "dtype": str(inputs.dtype)}
    labels = split.labels
    if labels.ndim == 1:
        counts = np.bincount(labels.astype(np.int64).clip(min=0))
    elif labels.ndim == 2:
        counts = labels.astype(np.int64).sum(axis=0)
    else:
        counts = np.bincount(labels.reshape(-1), minlength=1)
    names = list(task.classes) if task is not None else None
    info["class_counts"] = {
        (names[k] if names is not None and k < len(names) else str(k)): int(v)
        for k, v in enumerate(counts) if v or (names is not None and k < len(names))
    }
    return info
