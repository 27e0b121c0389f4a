"""Figures of a run, appended as JSON lines for `scripts/reliability_report.py`.

Tests call `record(kind, name, **figures)`; without HELDOUT_RESILIENCE_RESULTS nothing is kept.
"""

from __future__ import annotations

import json
import os


def full_mode() -> bool:
    return os.environ.get("HELDOUT_RESILIENCE_FULL") == "1"


def pick(short, full):
    """The short-mode count (CI) or the issue's full count."""
    return full if full_mode() else short


def record(kind: str, name: str, **figures) -> None:
    path = os.environ.get("HELDOUT_RESILIENCE_RESULTS")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, "name": name, **figures}, default=str) + "\n")
