"""Task files: YAML -> validated `TaskSpec`, and back.

Every key is checked and every problem raises `TaskFileError(file, key, expected, found)`;
unknown keys are rejected so a typo (`pubic_fraction`) cannot silently fall back to a default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from scoring.errors import TaskFileError
from scoring.types import AP_VARIANTS, APVariant, PointsRule, TaskSpec

KINDS = ("classification", "multilabel", "segmentation")
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "multilabel": ("mean_ap",),
    "segmentation": ("mean_iou", "mean_ap"),
}
SCORE_KINDS = ("probabilities", "logits", "any")
ACCEPTS = ("predictions", "model")
POINTS_KINDS = ("threshold", "linear")
POINTS_KEYS = ("kind", "max_points", "bar", "baseline")

REQUIRED_KEYS = ("name", "kind", "classes", "metric", "split")
OPTIONAL_KEYS = (
    "title", "ap", "public_fraction", "points", "scores", "image_size", "max_upload_mb",
    "input_mean", "input_std", "accepts", "reference_model", "model_time_limit_s",
    "allow_autocast", "ignore_index", "public_detail",
)
ALL_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS

DEFAULT_PUBLIC_FRACTION = 0.5
MAX_UPLOAD_MB_LIMIT = 4096.0        # an upload cap above 4 GiB is a typo, not a policy
MAX_MODEL_TIME_LIMIT_S = 24 * 3600.0
MAX_IMAGE_SIDE = 8192

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")


# --------------------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type stubs: SafeLoader is Any
    """yaml's SafeLoader (no object construction) that also rejects duplicate keys,
    which plain safe_load silently resolves to the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = 1
    mapping: dict[Any, Any] = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_task(path: str | Path) -> TaskSpec:
    """Read and validate one task file."""
    p = Path(path)
    source = str(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TaskFileError(source, None, "a readable task file", exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(source, None, "UTF-8 text", f"invalid byte at offset {exc.start}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = exc.problem or exc.context or "syntax error"
        raise TaskFileError(where, None, "valid YAML", str(problem)) from None
    except yaml.YAMLError as exc:
        raise TaskFileError(source, None, "valid YAML", str(exc)) from None
    return parse_task(data, source)


def parse_task(mapping: Any, source: str = "<task>") -> TaskSpec:
    """Validate a mapping (already parsed YAML/JSON) into a TaskSpec."""
    if not isinstance(mapping, Mapping):
        raise TaskFileError(source, None, "a mapping of task keys", type(mapping).__name__)
    for key in mapping:
        if not isinstance(key, str) or key not in ALL_KEYS:
            raise TaskFileError(source, str(key), "one of the known keys: " + ", ".join(ALL_KEYS),
                                "an unknown key")
    for key in REQUIRED_KEYS:
        if key not in mapping or mapping[key] is None:
            raise TaskFileError(source, key, "this key to be present (required)")

    v = _Validator(source, mapping)
    name = v.slug("name")
    kind = v.choice("kind", KINDS)
    classes = v.classes(kind)
    metric = v.choice("metric", METRICS_BY_KIND[kind],
                      what=f"a metric valid for a {kind} task")
    ap = v.ap(kind)
    split = v.text("split")
    title = v.text("title") if mapping.get("title") is not None else name
    public_fraction = v.fraction("public_fraction", DEFAULT_PUBLIC_FRACTION)
    points = v.points()
    scores = v.choice("scores", SCORE_KINDS, default="any")
    image_size = v.image_size(kind)
    max_upload_mb = v.positive("max_upload_mb", 64.0, MAX_UPLOAD_MB_LIMIT)
    input_mean, input_std = v.normalisation()
    accepts = v.accepts()
    reference_model = v.reference_model(accepts)
    model_time_limit_s = v.positive("model_time_limit_s", 300.0, MAX_MODEL_TIME_LIMIT_S)
    allow_autocast = v.boolean("allow_autocast", True)
    ignore_index = v.ignore_index(kind, len(classes))
    public_detail = v.boolean("public_detail", False)
    return TaskSpec(
        name=name, title=title, kind=kind, classes=classes, metric=metric, ap=ap, split=split,
        public_fraction=public_fraction, points=points, scores=scores, image_size=image_size,
        max_upload_mb=max_upload_mb, input_mean=input_mean, input_std=input_std, accepts=accepts,
        reference_model=reference_model, model_time_limit_s=model_time_limit_s,
        allow_autocast=allow_autocast, ignore_index=ignore_index, public_detail=public_detail,
        source=source,
    )


def task_to_dict(spec: TaskSpec) -> dict[str, Any]:
    """Plain-data form of a spec (YAML/JSON-ready); `parse_task` of it gives the spec back."""
    out: dict[str, Any] = {
        "name": spec.name, "title": spec.title, "kind": spec.kind, "classes": list(spec.classes),
        "metric": spec.metric, "split": spec.split, "public_fraction": spec.public_fraction,
        "scores": spec.scores, "max_upload_mb": spec.max_upload_mb,
        "accepts": list(spec.accepts), "model_time_limit_s": spec.model_time_limit_s,
        "allow_autocast": spec.allow_autocast,
    }
    if spec.ap is not None:
        out["ap"] = spec.ap
    if spec.points is not None:
        pts: dict[str, Any] = {"kind": spec.points.kind, "max_points": spec.points.max_points,
                               "bar": spec.points.bar}
        if spec.points.baseline is not None:
            pts["baseline"] = spec.points.baseline
        out["points"] = pts
    if spec.image_size is not None:
        out["image_size"] = list(spec.image_size)
    if spec.input_mean is not None:
        out["input_mean"] = list(spec.input_mean)
        out["input_std"] = list(spec.input_std or ())
    if spec.reference_model is not None:
        out["reference_model"] = spec.reference_model
    if spec.ignore_index is not None:
        out["ignore_index"] = spec.ignore_index
    if spec.public_detail:  # written only when set, so existing tasks keep their stored spec
        out["public_detail"] = True
    return out


# --------------------------------------------------------------------------- validation

def _is_number(x: Any) -> bool:
    # bool is an int subclass; `true` must not pass as 1.
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Validator:
    """Key-by-key checks; each raises TaskFileError naming the key."""

    def __init__(self, source: str, mapping: Mapping[str, Any]):
        self.source, self.m = source, mapping

    def fail(self, key: str, expected: str, found: Any = None) -> TaskFileError:
        if isinstance(found, str) and len(found) > 80:
            found = found[:77] + "..."
        return TaskFileError(self.source, key, expected, found)

    def text(self, key: str) -> str:
        x = self.m[key]
        if not isinstance(x, str) or not x.strip():
            raise self.fail(key, "a non-empty string", x)
        return x

    def slug(self, key: str) -> str:
        x = self.m[key]
        if not isinstance(x, str) or not _SLUG.match(x):
            raise self.fail(key, "a url-safe slug (lowercase letters, digits, '-', '_'; "
                                 "starts and ends with a letter or digit; at most 64 characters)", x)
        return x

    def choice(self, key: str, options: tuple[str, ...], *, default: str | None = None,
               what: str | None = None) -> Any:
        x = self.m.get(key)
        if x is None and default is not None:
            return default
        if x not in options:
            raise self.fail(key, f"{what or 'a value'}: one of {', '.join(options)}", x)
        return x

    def classes(self, kind: str) -> tuple[str, ...]:
        x = self.m["classes"]
        if not isinstance(x, list) or not x:
            raise self.fail("classes", "a non-empty list of class names", x)
        minimum = 1 if kind == "multilabel" else 2
        if len(x) < minimum:
            raise self.fail("classes", f"at least {minimum} classes for a {kind} task", len(x))
        if kind == "segmentation" and len(x) > 255:
            raise self.fail("classes", "at most 255 classes (labels are stored as uint8)", len(x))
        seen: dict[str, int] = {}
        for i, c in enumerate(x):
            if not isinstance(c, str) or not c.strip():
                raise self.fail("classes", f"class {i} to be a non-empty string", c)
            if c != c.strip() or any(ord(ch) < 32 for ch in c):
                raise self.fail("classes", f"class {i} without surrounding spaces or control "
                                           "characters", c)
            folded = c.casefold()
            if folded in seen:
                raise self.fail("classes", f"unique class names (ignoring case); class {i} repeats "
                                           f"class {seen[folded]}", c)
            seen[folded] = i
            # A numeric class name must be its own index, or `id,label` files become ambiguous.
            if _INT_TEXT.match(c) and int(c) != i:
                raise self.fail("classes", f"class {i}: a name that is an integer must equal its "
                                           "index", c)
        return tuple(x)

    def ap(self, kind: str) -> APVariant | None:
        x = self.m.get("ap")
        if kind == "classification":
            if x is not None:
                raise self.fail("ap", "no 'ap' key for a classification task (AP does not apply)", x)
            return None
        if x is None:
            raise self.fail("ap", f"an AP variant for a {kind} task: one of {', '.join(AP_VARIANTS)}")
        for variant in AP_VARIANTS:  # the match, typed as the Literal it is
            if x == variant:
                return variant
        raise self.fail("ap", f"one of {', '.join(AP_VARIANTS)}", x)

    def number(self, key: str, x: Any, what: str) -> float:
        if not _is_number(x) or not math.isfinite(x):
            raise self.fail(key, what, x)
        return float(x)

    def fraction(self, key: str, default: float) -> float:
        x = self.m.get(key)
        if x is None:
            return default
        v = self.number(key, x, "a number in (0, 1]")
        if not 0.0 < v <= 1.0:
            raise self.fail(key, "a number in (0, 1]", x)
        return v

    def positive(self, key: str, default: float, upper: float) -> float:
        x = self.m.get(key)
        if x is None:
            return default
        v = self.number(key, x, f"a positive number at most {upper:g}")
        if not 0.0 < v <= upper:
            raise self.fail(key, f"a positive number at most {upper:g}", x)
        return v

    def boolean(self, key: str, default: bool) -> bool:
        x = self.m.get(key)
        if x is None:
            return default
        if not isinstance(x, bool):
            raise self.fail(key, "true or false", x)
        return x

    def points(self) -> PointsRule | None:
        x = self.m.get("points")
        if x is None:
            return None
        key = "points"
        if not isinstance(x, Mapping):
            raise self.fail(key, "a mapping {kind, max_points, bar, baseline}", x)
        for k in x:
            if k not in POINTS_KEYS:
                raise self.fail(f"points.{k}", "one of the keys " + ", ".join(POINTS_KEYS),
                                "an unknown key")
        kind = x.get("kind")
        if kind not in POINTS_KINDS:
            raise self.fail("points.kind", "one of " + ", ".join(POINTS_KINDS), kind)
        if x.get("max_points") is None:
            raise self.fail("points.max_points", "a positive number (required)")
        max_points = self.number("points.max_points", x["max_points"], "a positive number")
        if not 0 < max_points <= 10000:
            raise self.fail("points.max_points", "a positive number at most 10000", x["max_points"])
        if x.get("bar") is None:
            raise self.fail("points.bar", "a metric value in [0, 1] (required)")
        bar = self.number("points.bar", x["bar"], "a metric value in [0, 1]")
        if not 0.0 <= bar <= 1.0:
            raise self.fail("points.bar", "a metric value in [0, 1]", x["bar"])
        baseline = None
        if x.get("baseline") is not None:
            baseline = self.number("points.baseline", x["baseline"], "a metric value in [0, bar)")
            if not 0.0 <= baseline < bar:
                raise self.fail("points.baseline", f"a metric value in [0, bar={bar:g})",
                                x["baseline"])
        elif kind == "linear":
            raise self.fail("points.baseline", "a baseline (0 points) for a linear rule (required)")
        return PointsRule(kind=kind, max_points=max_points, bar=bar, baseline=baseline)

    def image_size(self, kind: str) -> tuple[int, int] | None:
        x = self.m.get("image_size")
        if x is None:
            if kind == "segmentation":
                raise self.fail("image_size", "[H, W] for a segmentation task (required)")
            return None
        if (not isinstance(x, list) or len(x) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in x)
                or not all(1 <= s <= MAX_IMAGE_SIDE for s in x)):
            raise self.fail("image_size", f"[H, W], two integers in 1..{MAX_IMAGE_SIDE}", x)
        return (x[0], x[1])

    def _floats(self, key: str, x: Any, positive: bool) -> tuple[float, ...]:
        what = "a list of 1, 3 or 4 " + ("positive numbers" if positive else "numbers") + \
               " (one per input channel)"
        if not isinstance(x, list) or len(x) not in (1, 3, 4):
            raise self.fail(key, what, x)
        out = []
        for item in x:
            v = self.number(key, item, what)
            if positive and v <= 0:
                raise self.fail(key, what, x)
            out.append(v)
        return tuple(out)

    def normalisation(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        mean, std = self.m.get("input_mean"), self.m.get("input_std")
        if mean is None and std is None:
            return None, None
        if mean is None:
            raise self.fail("input_mean", "input_mean together with input_std")
        if std is None:
            raise self.fail("input_std", "input_std together with input_mean")
        m = self._floats("input_mean", mean, positive=False)
        s = self._floats("input_std", std, positive=True)
        if len(m) != len(s):
            raise self.fail("input_std", f"{len(m)} values, one per channel like input_mean", len(s))
        return m, s

    def accepts(self) -> tuple[Literal["predictions", "model"], ...]:
        x = self.m.get("accepts")
        if x is None:
            return ("predictions",)
        if (not isinstance(x, list) or not x or any(a not in ACCEPTS for a in x)
                or len(set(x)) != len(x)):
            raise self.fail("accepts", "a non-empty list of distinct values from "
                                       "[predictions, model]", x)
        return tuple(x)

    def reference_model(self, accepts: tuple[str, ...]) -> str | None:
        x = self.m.get("reference_model")
        if x is None:
            return None
        if "model" not in accepts:
            raise self.fail("reference_model", "no reference_model unless accepts includes model", x)
        if not isinstance(x, str) or not re.match(r"^[A-Za-z0-9_]{1,64}$", x):
            raise self.fail("reference_model", "a reference architecture name (letters, digits, _)", x)
        return x

    def ignore_index(self, kind: str, num_classes: int) -> int | None:
        x = self.m.get("ignore_index")
        if x is None:
            return None
        if kind != "segmentation":
            raise self.fail("ignore_index", "no ignore_index except for a segmentation task", x)
        if not isinstance(x, int) or isinstance(x, bool) or not num_classes <= x <= 255:
            raise self.fail("ignore_index", f"an integer in {num_classes}..255 (not a class id)", x)
        return x
