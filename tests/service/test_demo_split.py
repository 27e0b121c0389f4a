"""`grade serve --demo` draws a fresh public/private partition seed and fresh labels for each
split it writes (issue 16, D9): a seed fixed in the source, or derived from the task name, would
tell anyone which items are public and what their labels are."""

from __future__ import annotations

import json

import numpy as np

from grader_api.demo import _write_demo_split
from scoring.splits import load_split
from scoring.tasks import load_task
from tests.web.live_server import REPO


def test_each_demo_split_gets_its_own_random_seed(tmp_path) -> None:
    spec = load_task(REPO / "datasets" / "cifar10.yaml")
    splits = []
    for name in ("a", "b"):
        _write_demo_split(spec, tmp_path / name)
        seed = json.loads((tmp_path / name / "split.json").read_text())["seed"]
        splits.append((seed, load_split(tmp_path / name, spec)))
    (seed_a, a), (seed_b, b) = splits
    assert seed_a != seed_b and 0 <= seed_a < 2**63 and 0 <= seed_b < 2**63
    assert a.ids == b.ids and not np.array_equal(a.public_mask, b.public_mask)


def test_two_demo_courses_get_different_labels_and_matching_sample_files(tmp_path) -> None:
    """Labels come from a secret seed, not from the task name: a second demo course has other
    labels, and each one's ready-to-submit sample file is still right about 75% of the time."""
    from fastapi.testclient import TestClient

    from grader_api.app import create_app
    from scoring.parsers import parse_predictions
    from tests.service.conftest import embedded_settings

    spec = load_task(REPO / "datasets" / "cifar10.yaml")
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "cifar10.yaml").write_text((REPO / "datasets" / "cifar10.yaml").read_text())
    courses = []
    for name in ("one", "two"):
        settings = embedded_settings(tmp_path / name, demo=True, datasets_dir=datasets)
        with TestClient(create_app(settings)):
            pass
        split = load_split(spec.resolve_split_dir(settings.effective_data_root), spec)
        sample = parse_predictions(settings.var_dir / "demo" / "cifar10-predictions.csv", spec, split)
        courses.append((split, float(np.mean(sample.labels == split.labels))))
    (one, sample_one), (two, sample_two) = courses
    assert one.ids == two.ids and not np.array_equal(one.labels, two.labels)
    assert (one.labels == two.labels).mean() < 0.3     # unrelated draws agree ~10% of the time
    assert 0.6 < sample_one < 0.9 and 0.6 < sample_two < 0.9
