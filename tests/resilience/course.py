"""Tasks, users and prediction files for the scenarios, plus the offline scorer the service's
results are compared with (scoring.evaluate on the same bytes, no service code involved)."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.service.helpers import auth, ids_for


@dataclass
class TaskHandle:
    name: str
    classes: list[str]
    labels: np.ndarray
    yaml: str
    data_root: Path
    _offline: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return ids_for(len(self.labels))

    def csv(self, accuracy: float, seed: int) -> bytes:
        """An `id,label` CSV getting about `accuracy` right (distinct bytes per seed)."""
        rng = np.random.default_rng(seed)
        pred = self.labels.copy()
        wrong = rng.random(len(pred)) > accuracy
        pred[wrong] = (pred[wrong] + rng.integers(1, len(self.classes), int(wrong.sum()))) % len(self.classes)
        names = np.asarray(self.classes, dtype=object)[pred]
        rows = "\n".join(f"{i},{c}" for i, c in zip(self.ids, names, strict=True))
        return ("id,label\n" + rows + "\n").encode()

    def npy(self, seed: int) -> bytes:
        pred = np.random.default_rng(seed).integers(0, len(self.classes), len(self.labels))
        buf = io.BytesIO()
        np.save(buf, pred.astype(np.int64))
        return buf.getvalue()

    def offline_report(self, content: bytes) -> dict:
        """What the scoring core says about `content`, as the service would store it (JSON types)."""
        import hashlib

        key = hashlib.sha256(content).hexdigest()
        if key not in self._offline:
            import yaml

            from scoring.evaluate import evaluate
            from scoring.splits import load_split
            from scoring.tasks import parse_task
            from worker.grading import jsonable

            task = parse_task(yaml.safe_load(self.yaml), f"{self.name}.yaml")
            split_dir = task.resolve_split_dir(self.data_root)
            split = load_split(split_dir, task)
            predictions = self.predictions(content, task, split_dir, split)
            self._offline[key] = jsonable(evaluate(task, split, predictions))
        return self._offline[key]

    def predictions(self, content: bytes, task, split_dir: Path, split):
        """The predictions in `content` (a prediction file; model tasks evaluate it instead)."""
        from scoring.parsers import parse_predictions

        return parse_predictions(content, task, split)


def make_task(client: httpx.Client, prof: str, data_root: Path, *, n: int, k: int, prefix: str = "t",
              max_upload_mb: float = 2, extra: str = "") -> TaskHandle:
    """A classification task of `n` items and `k` classes with its own split (CIFAR-100: 10,000 × 100)."""
    from scoring.splits import write_split

    name = f"{prefix}_{secrets.token_hex(3)}"
    classes = [f"c{i:03d}" for i in range(k)]
    labels = np.random.default_rng(len(name) + n).integers(0, k, n)
    write_split(data_root / name / "test", labels, ids=ids_for(n), seed=7, overwrite=True)
    yaml = (f"name: {name}\ntitle: {name}\nkind: classification\nclasses: [{', '.join(classes)}]\n"
            f"metric: accuracy\nsplit: {name}/test\npublic_fraction: 0.5\nmax_upload_mb: {max_upload_mb}\n"
            "points: {kind: threshold, max_points: 10, bar: 0.9, baseline: 0.25}\n" + extra)
    r = client.post("/api/v1/tasks", json={"yaml": yaml}, headers=auth(prof))
    assert r.status_code == 201, r.text
    return TaskHandle(name, classes, labels, yaml, data_root)


def post_file(client: httpx.Client, token: str, task: str, content: bytes, *, filename: str = "preds.csv",
              note: str | None = None, timeout: float = 60) -> httpx.Response:
    data = {"note": note} if note is not None else {}
    return client.post(f"/api/v1/tasks/{task}/submissions", headers=auth(token), data=data,
                       files={"file": (filename, content, "application/octet-stream")}, timeout=timeout)
