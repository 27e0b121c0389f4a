"""The report as text, in the format the courses print (`Accuracy of Shirt : 72.5 %`, `mAP: 0.7421`)."""

from __future__ import annotations

from typing import Any

from scoring.metrics.info import metric_info
from scoring.types import TaskSpec

_NA = {"ap": "n/a (no positives)", "iou": "n/a (class absent)", "accuracy": "n/a (no items)"}


def _pct(v: float | None, key: str = "accuracy") -> str:
    return _NA.get(key, "n/a") if v is None else f"{100.0 * v:.1f} %"


def _dec(v: float | None, key: str) -> str:
    return _NA.get(key, "n/a") if v is None else f"{v:.4f}"


def _primary_text(metric: str, v: float | None) -> str:
    name = metric_info(metric).display
    if metric == "accuracy":
        return f"{name.lower()} {_pct(v)}"
    return f"{name} " + ("n/a (undefined)" if v is None else f"{v:.4f}")


def _classification_lines(report: dict[str, Any]) -> list[str]:
    overall = _pct(report["metrics"]["accuracy"])
    lines = [f"Accuracy of the network on the {report['n']} test images: {overall}"]
    for name, values in report["per_class"].items():
        lines.append(f"Accuracy of {name} : {_pct(values['accuracy'])}")
    pairs = report.get("most_confused") or []
    if pairs:
        lines.append("Most confused pairs (true -> predicted: count, share of the true class):")
        for p in pairs:
            lines.append(f"  {p['true']} -> {p['predicted']}: {p['count']} ({_pct(p['rate'])})")
    return lines


def _multilabel_lines(report: dict[str, Any]) -> list[str]:
    m = report["metrics"]["mean_ap"]
    lines = ["mAP: " + ("n/a (no class has positives)" if m is None else f"{m:.4f}")]
    for name, values in report["per_class"].items():
        lines.append(f"{name}: AP {_dec(values['ap'], 'ap')}")
    return lines


def _segmentation_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{name}: AP: {_dec(v['ap'], 'ap')}, IoU: {_dec(v['iou'], 'iou')}"
        for name, v in report["per_class"].items()
    ]
    m = report["metrics"]
    lines.append(f"mean: AP: {_dec(m['mean_ap'], 'mean')}, IoU: {_dec(m['mean_iou'], 'mean')}")
    return lines


def _points_text(points: dict[str, Any]) -> str:
    text = f"Points: {points['earned']:.1f} / {points['max']:g}"
    if points.get("note"):
        text += f" ({points['note']})"
    return text


def format_report(report: dict[str, Any], task: TaskSpec) -> str:
    kind = report["kind"]
    body = {
        "classification": _classification_lines,
        "multilabel": _multilabel_lines,
        "segmentation": _segmentation_lines,
    }[kind](report)
    lines = [f"{task.title} ({task.name})", *body]
    if report.get("undefined"):
        lines.append("n/a values have no defined value and are left out of the means.")
    metric = report["primary_metric"]
    for label, key in (("Public", "public"), ("Private", "private")):
        part = report["parts"][key]
        if part["n"] == 0:
            lines.append(f"{label} part: no images")
        else:
            value = _primary_text(metric, part["primary"])
            lines.append(f"{label} part ({part['n']} of {report['n']} images): {value}")
    if report.get("points") is not None:
        lines.append(_points_text(report["points"]))
    return "\n".join(lines) + "\n"
