"""Task files: every shipped file loads; every key is validated with file + key in the message."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from scoring.errors import TaskFileError
from scoring.tasks import load_task, parse_task, task_to_dict

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
TASK_FILES = sorted(DATASETS.glob("*.yaml"))

BASE = {
    "name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
    "metric": "accuracy", "split": "pets/test",
}
SEG = {
    "name": "seg", "kind": "segmentation", "classes": ["background", "person"],
    "metric": "mean_iou", "ap": "voc", "split": "seg/test", "image_size": [4, 4],
}


def test_all_shipped_task_files_load_and_round_trip():
    assert {p.stem for p in TASK_FILES} >= {"cifar10", "cifar100", "fashion_mnist", "voc2007",
                                             "segmentation6"}
    for path in TASK_FILES:
        spec = load_task(path)
        assert spec.name == path.stem
        assert parse_task(task_to_dict(spec), str(path)) == spec
        assert yaml.safe_load(yaml.safe_dump(task_to_dict(spec))) == task_to_dict(spec)


def test_shipped_class_lists():
    assert load_task(DATASETS / "cifar10.yaml").classes == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    c100 = load_task(DATASETS / "cifar100.yaml").classes
    assert len(c100) == 100 and c100[:3] == ("apple", "aquarium_fish", "baby")
    assert c100[-3:] == ("wolf", "woman", "worm") and c100.index("maple_tree") == 47
    assert load_task(DATASETS / "fashion_mnist.yaml").classes[0] == "T-shirt/top"
    voc = load_task(DATASETS / "voc2007.yaml")
    assert voc.kind == "multilabel" and voc.ap == "step" and voc.classes[-1] == "tvmonitor"
    assert voc.classes.index("person") == 14 and len(voc.classes) == 20
    seg = load_task(DATASETS / "segmentation6.yaml")
    assert seg.classes == ("background", "sports", "accessory", "animal", "vehicle", "person")
    assert seg.image_size == (224, 224) and seg.metric == "mean_iou" and seg.ap == "voc"
    assert seg.points is not None and seg.points.max_points == 30


def test_defaults_and_resolve_split_dir(tmp_path):
    spec = parse_task(dict(BASE), "t.yaml")
    assert spec.title == "pets" and spec.public_fraction == 0.5 and spec.accepts == ("predictions",)
    assert spec.resolve_split_dir(tmp_path) == tmp_path / "pets" / "test"
    assert spec.source == "t.yaml"


def _err(mapping, key_expected):
    with pytest.raises(TaskFileError) as ei:
        parse_task(mapping, "course/t.yaml")
    assert ei.value.file == "course/t.yaml"
    assert ei.value.key == key_expected, str(ei.value)
    assert "course/t.yaml" in str(ei.value) and (key_expected is None or key_expected in str(ei.value))
    return ei.value


def with_(base, **kw):
    m = copy.deepcopy(base)
    for k, v in kw.items():
        if v is ...:
            m.pop(k, None)
        else:
            m[k] = v
    return m


@pytest.mark.parametrize("key,value", [
    ("name", "Has Spaces"), ("name", "-lead"), ("name", ""), ("name", 3),
    ("kind", "regression"),
    ("classes", []), ("classes", "cat,dog"), ("classes", ["cat", "cat"]), ("classes", ["cat", "Cat"]),
    ("classes", ["cat", ""]), ("classes", ["cat", 3]), ("classes", [" cat", "dog"]),
    ("classes", ["1", "0"]), ("classes", ["only"]),
    ("metric", "mean_ap"), ("metric", "f1"),
    ("ap", "step"),
    ("split", ""), ("split", 5),
    ("title", ""),
    ("public_fraction", 0), ("public_fraction", 1.5), ("public_fraction", "half"),
    ("public_fraction", True), ("public_fraction", float("nan")),
    ("points", 10), ("points", [1, 2]),
    ("scores", "probs"),
    ("image_size", [224]), ("image_size", [0, 5]), ("image_size", "224x224"), ("image_size", [2.5, 3]),
    ("max_upload_mb", 0), ("max_upload_mb", 1e9), ("max_upload_mb", "64"),
    ("input_mean", [0.5, 0.5]), ("accepts", []), ("accepts", ["csv"]),
    ("accepts", ["model", "model"]), ("model_time_limit_s", -1),
    ("allow_autocast", "yes"), ("allow_autocast", 1),
    ("ignore_index", 255),
    ("reference_model", "resnet18"),
])
def test_invalid_key_names_file_and_key(key, value):
    m = with_(BASE, **{key: value})
    if key == "input_mean":
        m["input_std"] = [0.2, 0.2]          # a 2-channel image is not a thing
    _err(m, key)


@pytest.mark.parametrize("points,key", [
    ({"kind": "threshold", "max_points": 0, "bar": 0.5}, "points.max_points"),
    ({"kind": "threshold", "bar": 0.5}, "points.max_points"),
    ({"kind": "threshold", "max_points": 10, "bar": 1.5}, "points.bar"),
    ({"kind": "threshold", "max_points": 10}, "points.bar"),
    ({"kind": "threshold", "max_points": 10, "bar": 0.5, "baseline": 0.6}, "points.baseline"),
    ({"kind": "linear", "max_points": 10, "bar": 0.5}, "points.baseline"),
    ({"kind": "linear", "max_points": 10, "bar": 0.5, "baseline": 0.1, "extra": 1}, "points.extra"),
    ({"kind": "stepwise", "max_points": 10, "bar": 0.5}, "points.kind"),
])
def test_invalid_points(points, key):
    _err(with_(BASE, points=points), key)


def test_unknown_key_rejected():
    e = _err(with_(BASE, pubic_fraction=0.5), "pubic_fraction")
    assert "unknown key" in str(e)


@pytest.mark.parametrize("missing", ["name", "kind", "classes", "metric", "split"])
def test_missing_required_key(missing):
    e = _err(with_(BASE, **{missing: ...}), missing)
    assert "required" in str(e)


def test_kind_specific_rules():
    _err(with_(SEG, ap=...), "ap")
    _err(with_(SEG, image_size=...), "image_size")
    _err(with_(SEG, metric="accuracy"), "metric")
    _err(with_(SEG, ignore_index=1), "ignore_index")          # a class id
    assert parse_task(with_(SEG, ignore_index=255), "x").ignore_index == 255
    assert parse_task(with_(SEG, metric="mean_ap"), "x").metric == "mean_ap"
    ml = {"name": "voc", "kind": "multilabel", "classes": ["a"], "metric": "mean_ap",
          "ap": "step", "split": "v"}
    assert parse_task(ml, "x").num_classes == 1
    _err(with_(ml, ap="interp"), "ap")
    _err(with_(ml, metric="accuracy"), "metric")
    _err(with_(BASE, accepts=["predictions"], reference_model="fashion_basenet"), "reference_model")
    ok = parse_task(with_(BASE, accepts=["predictions", "model"], reference_model="fashion_basenet",
                          input_mean=[0.5], input_std=[0.25]), "x")
    assert ok.input_std == (0.25,)
    _err(with_(BASE, input_mean=[0.5]), "input_std")
    _err(with_(BASE, input_std=[0.5]), "input_mean")
    _err(with_(BASE, input_mean=[0.5], input_std=[0.0]), "input_std")
    _err(with_(BASE, input_mean=[0.5], input_std=[0.2, 0.2, 0.2]), "input_std")   # lengths differ


def test_non_mapping_and_yaml_errors(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(TaskFileError) as ei:
        load_task(p)
    assert str(p) in str(ei.value) and "mapping" in str(ei.value)

    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nkind: classification\nclasses: [a, b\nmetric: accuracy\n")
    with pytest.raises(TaskFileError) as ei:
        load_task(p)
    assert f"{p}:" in str(ei.value) and "valid YAML" in str(ei.value)
    assert ei.value.file.startswith(str(p) + ":")      # line number appended

    p = tmp_path / "dup.yaml"
    p.write_text("name: x\nname: y\n")
    with pytest.raises(TaskFileError) as ei:
        load_task(p)
    assert "duplicate key 'name'" in str(ei.value) and ei.value.file == f"{p}:2"

    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(TaskFileError):
        load_task(p)

    with pytest.raises(TaskFileError) as ei:
        load_task(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(ei.value)

    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(TaskFileError, match="UTF-8"):
        load_task(p)


def test_load_task_file(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(BASE))
    spec = load_task(p)
    assert spec.classes == ("cat", "dog", "bird") and spec.source == str(p)
