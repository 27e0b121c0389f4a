"""Per-process cache of task specs and loaded held-out splits.

A split is keyed by its directory, the modification times of its files and the task spec it
was validated against, so replacing a split on disk (or changing the task) is picked up
without a restart. Both the API (upload validation) and the worker use it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from scoring.types import Split, TaskSpec

_MAX_SPLITS = 8
_Fingerprint = tuple[tuple[str, int, int], ...]
_splits: OrderedDict[tuple[str, _Fingerprint, TaskSpec], Split] = OrderedDict()
_MAX_SPECS = 256
_specs: OrderedDict[tuple[str, int, str], TaskSpec] = OrderedDict()
_lock = threading.Lock()


def task_spec(name: str, version: int, spec: dict[str, Any]) -> TaskSpec:
    """The TaskSpec stored for task `name` at `version` (parsed once per process).

    Keyed by the spec's content too: a task deleted and created again under the same name
    starts at version 1 again, and must never be graded with the old spec.
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    key = (name, version, digest)
    with _lock:
        cached = _specs.get(key)
    if cached is not None:
        return cached
    from scoring.tasks import parse_task

    parsed = parse_task(spec, f"task '{name}'")
    with _lock:
        _specs[key] = parsed
        while len(_specs) > _MAX_SPECS:
            _specs.popitem(last=False)
    return parsed


def _fingerprint(split_dir: Path) -> _Fingerprint:
    stamps = []
    for child in sorted(split_dir.iterdir()) if split_dir.is_dir() else ():
        st = child.stat()
        stamps.append((child.name, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def load_split_cached(split_dir: Path, task: TaskSpec) -> Split:
    from scoring.splits import load_split

    split_dir = Path(split_dir).resolve()
    key = (str(split_dir), _fingerprint(split_dir), task)
    with _lock:
        split = _splits.get(key)
        if split is not None:
            _splits.move_to_end(key)
            return split
    split = load_split(split_dir, task)  # outside the lock: large splits take a moment
    with _lock:
        _splits[key] = split
        while len(_splits) > _MAX_SPLITS:
            _splits.popitem(last=False)
    return split


def clear() -> None:
    with _lock:
        _splits.clear()
        _specs.clear()
