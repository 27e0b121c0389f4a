"""Points from the primary metric, per the task's `PointsRule` (see scoring/types.py)."""

from __future__ import annotations

from scoring.types import PointsRule


def _ramp(value: float, baseline: float, bar: float, max_points: float) -> float:
    """0 at baseline, max_points at bar, linear between, clipped to [0, max_points]."""
    if bar == baseline:
        return max_points if value >= bar else 0.0
    share = (value - baseline) / (bar - baseline)
    return max_points * min(1.0, max(0.0, share))


def compute_points(rule: PointsRule | None, primary: float | None) -> dict[str, float | str] | None:
    """{"earned", "max"} (plus "note" when the primary metric is undefined); None without a rule."""
    if rule is None:
        return None
    max_points = float(rule.max_points)
    if primary is None:
        return {"earned": 0.0, "max": max_points, "note": "primary metric undefined: 0 points"}
    value = float(primary)
    if rule.kind == "threshold":
        if value >= rule.bar:
            earned = max_points
        elif rule.baseline is not None:
            earned = _ramp(value, rule.baseline, rule.bar, max_points)
        else:
            earned = 0.0
    elif rule.kind == "linear":
        # A linear rule without a baseline starts from a metric value of 0.
        baseline = 0.0 if rule.baseline is None else rule.baseline
        earned = _ramp(value, baseline, rule.bar, max_points)
    else:
        raise ValueError(f"unknown points rule kind {rule.kind!r}")
    return {"earned": float(earned), "max": max_points}
