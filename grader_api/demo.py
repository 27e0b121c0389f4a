"""`grade serve --demo`: a small demo course, seeded once and left alone on later starts.

Seeds the task files of `datasets/` with small generated splits under the data root, an
instructor and two students (tokens printed once, on the first start), and a few sample
submissions of varying quality with ablation-style notes, graded by the normal pipeline.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from grader_api.config import Settings
from grader_api.db import Database
from grader_api.lifecycle.outbox import OutboxRelay
from grader_api.models import Task, User, utcnow
from grader_api.storage import LocalStorage

log = logging.getLogger(__name__)

DEMO_USERS = (("prof", "instructor"), ("alice", "student"), ("bob", "student"))
# (student, quality, note): quality is the share of items predicted right.
DEMO_ATTEMPTS = (
    ("alice", 0.45, "baseline (BaseNet as given)"),
    ("alice", 0.58, "+BatchNorm"),
    ("alice", 0.66, "+BatchNorm +Dropout 0.3"),
    ("bob", 0.52, "baseline, 20 epochs"),
    ("bob", 0.61, "+RandomResizedCrop +flip"),
)
_SIZES = {"classification": 300, "multilabel": 200, "segmentation": 20}


def seed_demo(settings: Settings, db: Database, relay: OutboxRelay, storage: LocalStorage) -> None:
    task_files = sorted(Path(settings.datasets_dir).glob("*.yaml"))
    if not task_files:
        log.warning("demo: no task files in %s; nothing to seed", settings.datasets_dir)
    for path in task_files:
        _seed_task(settings, db, path)
    tokens = _seed_users(db)
    if tokens:
        _print_tokens(tokens)
        _seed_submissions(settings, db, relay, storage)
    else:
        print("demo: already seeded; tokens were printed on the first start "
              "(new one: `grade admin token NAME`)", flush=True)
    _print_samples(_write_sample_files(settings, db))


def _write_sample_files(settings: Settings, db: Database) -> list[tuple[str, Path]]:
    """One ready-to-submit predictions file per task, so a newcomer can try `grade submit`."""
    from grader_api.lifecycle.split_cache import task_spec
    from scoring.splits import load_split

    out_dir = settings.var_dir / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    with db.transaction() as s:
        tasks = s.scalars(sa.select(Task).order_by(Task.name)).all()
        specs = [task_spec(t.name, t.spec_version, t.spec) for t in tasks]
    written = []
    for spec in specs:
        split = load_split(spec.resolve_split_dir(settings.effective_data_root), spec)
        content, name = _demo_predictions(spec, split, quality=0.75, seed=99)
        path = out_dir / f"{spec.name}-{name}"
        path.write_bytes(content)
        written.append((spec.name, path))
    return written


def _print_samples(samples: list[tuple[str, Path]]) -> None:
    if not samples:
        return
    lines = ["sample prediction files to try (one per task):"]
    lines += [f"  grade submit {path} --task {name} -m 'my first try' --wait" for name, path in samples]
    print("\n".join(lines) + "\n", flush=True)


def _seed_task(settings: Settings, db: Database, path: Path) -> None:
    from grader_api.services.courses import DEFAULT_COURSE, get_course
    from grader_api.services.tasks import CourseOptions, create_task
    from scoring.tasks import load_task

    spec = load_task(path)
    with db.transaction() as s:
        if s.scalar(sa.select(Task.id).where(Task.name == spec.name)) is not None:
            return
    split_dir = spec.resolve_split_dir(settings.effective_data_root)
    if not split_dir.exists():
        _write_demo_split(spec, split_dir)
    opts = CourseOptions(deadline=utcnow() + timedelta(days=14), late_days=2, daily_limit=10)
    with db.transaction() as s:
        create_task(s, settings, path.read_text(encoding="utf-8"), opts, course=get_course(s, DEFAULT_COURSE))
    log.info("demo: task %s with a generated split at %s", spec.name, split_dir)


def _write_demo_split(spec, split_dir: Path) -> None:
    from scoring.splits import write_split

    # Labels from a fresh secret seed: one derived from the task name (or fixed in the source)
    # would give anyone who reads the code every private label of a demo course.
    rng = np.random.default_rng(secrets.randbits(128))
    n, k = _SIZES[spec.kind], spec.num_classes
    if spec.kind == "classification":
        labels = rng.integers(0, k, n)
    elif spec.kind == "multilabel":
        labels = (rng.random((n, k)) < 1.5 / k).astype(np.uint8)
        labels[np.arange(n), rng.integers(0, k, n)] = 1  # every image has at least one class
    else:
        h, w = spec.image_size or (224, 224)
        labels = _blob_masks(rng, n, k, h, w)
    inputs = _demo_inputs(rng, spec, n) if "model" in spec.accepts else None
    # A fresh partition seed per demo: a seed anyone can read in the source reveals which items
    # are public. 63 bits keep it out of reach of a search over seeds.
    write_split(split_dir, labels, ids=[f"{spec.name}-{i:04d}" for i in range(n)], inputs=inputs,
                seed=secrets.randbits(63), source="generated by grade serve --demo")


def _blob_masks(rng, n: int, k: int, h: int, w: int) -> np.ndarray:
    """Background with a few rectangles of other classes: enough structure for IoU/AP."""
    masks = np.zeros((n, h, w), np.uint8)
    for m in masks:
        for _ in range(3):
            c = int(rng.integers(1, k))
            y, x = rng.integers(0, h - 40), rng.integers(0, w - 40)
            m[y:y + int(rng.integers(30, 100)), x:x + int(rng.integers(30, 100))] = c
    return masks


def _demo_inputs(rng, spec, n: int) -> np.ndarray:
    channels = len(spec.input_mean) if spec.input_mean else 3
    if spec.image_size:
        h, w = spec.image_size
    else:
        h = w = 28 if channels == 1 else 32
    return rng.integers(0, 256, (n, channels, h, w), dtype=np.uint8)


def _seed_users(db: Database) -> dict[str, str]:
    from grader_api.services.users import create_user

    tokens = {}
    with db.transaction() as s:
        if s.scalar(sa.select(sa.func.count(User.id))):
            return {}
        for name, role in DEMO_USERS:
            tokens[name] = create_user(s, name, role)[1]
    return tokens


def _print_tokens(tokens: dict[str, str]) -> None:
    lines = ["", "demo course seeded. Tokens (shown once; keep them):"]
    for (name, role) in DEMO_USERS:
        lines.append(f"  {name:6s} ({role}): {tokens[name]}")
    lines += ["  log in:  grade login --server <the address above> --token <token>",
              "           or open the address above in a browser and paste a token", ""]
    print("\n".join(lines), flush=True)


def _seed_submissions(settings: Settings, db: Database, relay: OutboxRelay, storage: LocalStorage) -> None:
    from grader_api.lifecycle.split_cache import task_spec
    from grader_api.services.submissions import accept_upload
    from scoring.splits import load_split

    with db.transaction() as s:
        tasks = s.scalars(sa.select(Task).order_by(Task.name)).all()
        users = {u.name: u for u in s.scalars(sa.select(User)).all()}
    for t in tasks:
        spec = task_spec(t.name, t.spec_version, t.spec)
        split = load_split(spec.resolve_split_dir(settings.effective_data_root), spec)
        for i, (student, quality, note) in enumerate(DEMO_ATTEMPTS):
            content, name = _demo_predictions(spec, split, quality, seed=i)
            temp = storage.temp_file()
            temp.write_bytes(content)
            sha = hashlib.sha256(content).hexdigest()
            try:
                with db.transaction() as s:
                    accept_upload(s, relay=relay, storage=storage, data_root=settings.effective_data_root,
                                  task=t, user=users[student], temp_path=temp, sha256=sha, size=len(content),
                                  filename=name, note=note)
            finally:
                temp.unlink(missing_ok=True)


def _demo_predictions(spec, split, quality: float, seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(1000 + seed)
    k = spec.num_classes
    if spec.kind == "classification":
        pred = split.labels.copy()
        wrong = rng.random(split.n) > quality
        pred[wrong] = (pred[wrong] + rng.integers(1, k, int(wrong.sum()))) % k
        body = "id,label\n" + "".join(f"{i},{spec.classes[p]}\n" for i, p in zip(split.ids, pred, strict=True))
        return body.encode(), "predictions.csv"
    if spec.kind == "multilabel":
        scores = np.clip(split.labels * quality + rng.random((split.n, k)) * 0.8, 0, 1)
        out = io.StringIO()
        out.write("id," + ",".join(spec.classes) + "\n")
        for i, row in zip(split.ids, scores, strict=True):
            out.write(i + "," + ",".join(f"{v:.4f}" for v in row) + "\n")
        return out.getvalue().encode(), "scores.csv"
    labels = np.minimum(split.labels, k - 1)  # an ignore value (e.g. 255) gets any class
    flip = rng.random(labels.shape) > quality
    labels = np.where(flip, rng.integers(0, k, labels.shape), labels)
    onehot = np.eye(k, dtype=np.float32)[labels].transpose(0, 3, 1, 2)  # N, K, H, W
    probs = 0.6 * onehot + 0.4 * rng.random(onehot.shape, dtype=np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    buf = io.BytesIO()
    np.save(buf, (probs * 255).round().astype(np.uint8), allow_pickle=False)
    return buf.getvalue(), "scores.npy"
