"""`grade score` end to end: task file, split directory, predictions file -> report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from sklearn.metrics import accuracy_score, average_precision_score
from typer.testing import CliRunner

from grader_api.cli import offline
from scoring.splits import write_split


@pytest.fixture()
def cli():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so the command is invoked as `score`
        pass

    offline.register(app)
    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(app, ["score", *args], **kw)


def _write_task(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def _classification(tmp_path: Path, split_rel: str = "data/cls/test"):
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 3, n)
    write_split(tmp_path / split_rel, y, ids=[f"img{i}" for i in range(n)], seed=3)
    task = _write_task(tmp_path / "cls.yaml", f"""
name: cls
kind: classification
classes: [cat, dog, bird]
metric: accuracy
split: {split_rel}
public_fraction: 0.5
points: {{kind: threshold, max_points: 10, bar: 0.9, baseline: 0.3}}
""")
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    order = rng.permutation(n)  # rows are matched by id, order ignored
    csv = "id,label\n" + "".join(f"img{i},{p[i]}\n" for i in order)
    pred = tmp_path / "pred.csv"
    pred.write_text(csv, encoding="utf-8")
    return task, pred, y, p


def test_classification_text_and_json(cli, tmp_path):
    task, pred, y, p = _classification(tmp_path)
    res = cli("--task", str(task), "--predictions", str(pred))
    assert res.exit_code == 0, res.output
    acc = accuracy_score(y, p)
    assert f"Accuracy of the network on the 200 test images: {100 * acc:.1f} %" in res.stdout
    assert "Accuracy of cat : " in res.stdout and "Points: " in res.stdout

    res = cli("--task", str(task), "--predictions", str(pred), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # exactly one JSON object
    assert report["primary"] == pytest.approx(acc, abs=1e-12)
    assert report["parts"]["public"]["n"] + report["parts"]["private"]["n"] == 200
    assert report["points"]["max"] == 10.0


def test_multilabel_scores_csv(cli, tmp_path):
    rng = np.random.default_rng(1)
    n, classes = 120, ["aeroplane", "bicycle", "bird"]
    y = (rng.random((n, 3)) < 0.3).astype(np.uint8)
    write_split(tmp_path / "ml", y, seed=1)
    task = _write_task(tmp_path / "ml.yaml", f"""
name: ml
kind: multilabel
classes: [{", ".join(classes)}]
metric: mean_ap
ap: step
split: ml
""")
    s = np.round(rng.random((n, 3)) + 0.4 * y, 3)
    rows = "".join(f"{i}," + ",".join(f"{v:.3f}" for v in s[i]) + "\n" for i in range(n))
    pred = tmp_path / "ml.csv"
    pred.write_text("id," + ",".join(classes) + "\n" + rows, encoding="utf-8")
    res = cli("--task", str(task), "--predictions", str(pred), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.mean([average_precision_score(y[:, c], s[:, c]) for c in range(3)])
    assert report["primary"] == pytest.approx(ref, abs=1e-9)
    res = cli("--task", str(task), "--predictions", str(pred))
    assert res.stdout.splitlines()[1] == f"mAP: {ref:.4f}"


def test_segmentation_npy_with_data_root_env(cli, tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    n, k, h, w = 4, 3, 16, 16
    y = rng.integers(0, k, (n, h, w)).astype(np.uint8)
    root = tmp_path / "root"
    write_split(root / "seg" / "test", y, seed=0)
    task = _write_task(tmp_path / "seg.yaml", f"""
name: seg
kind: segmentation
classes: [background, sports, person]
metric: mean_iou
ap: voc
split: seg/test
image_size: [{h}, {w}]
points: {{kind: threshold, max_points: 30, bar: 0.5, baseline: 0.2}}
""")
    s = rng.integers(0, 256, (n, k, h, w)).astype(np.uint8)
    pred = tmp_path / "pred.npy"
    np.save(pred, s)
    monkeypatch.setenv("HELDOUT_DATA_ROOT", str(root))
    res = cli("--task", str(task), "--predictions", str(pred))
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].startswith("background: AP: ")
    assert "mean: AP: " in res.stdout and "Points: " in res.stdout


def test_split_option_and_task_relative_default(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("HELDOUT_DATA_ROOT", raising=False)
    task, pred, _, _ = _classification(tmp_path)  # split relative to the task file's directory
    assert cli("--task", str(task), "--predictions", str(pred)).exit_code == 0
    other = tmp_path / "elsewhere"
    (tmp_path / "data/cls/test").rename(other)
    res = cli("--task", str(task), "--predictions", str(pred))
    assert res.exit_code == 2 and "not found" in res.stderr
    res = cli("--task", str(task), "--predictions", str(pred), "--split", str(other), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 200


@pytest.mark.parametrize(
    "breakage",
    ["wrong_header", "missing_ids", "missing_task", "bad_task", "missing_predictions", "bad_split"],
)
def test_validation_errors_exit_2_without_traceback(cli, tmp_path, breakage):
    task, pred, _, _ = _classification(tmp_path)
    if breakage == "wrong_header":
        pred.write_text("identifier,label\nimg0,1\n", encoding="utf-8")
    elif breakage == "missing_ids":
        pred.write_text("id,label\nimg0,1\n", encoding="utf-8")
    elif breakage == "missing_task":
        task = tmp_path / "nope.yaml"
    elif breakage == "bad_task":
        task.write_text("name: cls\nkind: nonsense\n", encoding="utf-8")
    elif breakage == "missing_predictions":
        pred = tmp_path / "nope.csv"
    elif breakage == "bad_split":
        (tmp_path / "data/cls/test/labels.npy").write_bytes(b"not an array")
    res = cli("--task", str(task), "--predictions", str(pred), "--json")
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.startswith("error: ")
    assert "Traceback" not in res.stderr
