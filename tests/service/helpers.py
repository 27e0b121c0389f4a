"""Builders shared by the service tests: small splits, task files, prediction files, clients."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

CLASSES = ("cat", "dog", "bird", "fish")


def make_split(data_root: Path, rel: str, n: int = 200, seed: int = 0) -> np.ndarray:
    """A classification split of `n` items over CLASSES; returns its labels."""
    from scoring.splits import write_split

    labels = np.random.default_rng(seed).integers(0, len(CLASSES), n)
    ids = [f"img{i:05d}" for i in range(n)]
    write_split(data_root / rel, labels, ids=ids, seed=seed, overwrite=True)
    return labels


def ids_for(n: int) -> list[str]:
    return [f"img{i:05d}" for i in range(n)]


def task_yaml(name: str = "pets", split: str = "pets/test", *, public_fraction: float = 0.5,
              extra: str = "") -> str:
    return (f"name: {name}\ntitle: Pets\nkind: classification\n"
            f"classes: [{', '.join(CLASSES)}]\nmetric: accuracy\nsplit: {split}\n"
            f"public_fraction: {public_fraction}\nmax_upload_mb: 1\n"
            "points: {kind: threshold, max_points: 10, bar: 0.9, baseline: 0.25}\n" + extra)


def predictions_csv(labels: np.ndarray, accuracy: float, seed: int = 1) -> bytes:
    """An `id,label` CSV that gets about `accuracy` of `labels` right."""
    rng = np.random.default_rng(seed)
    pred = labels.copy()
    wrong = rng.random(len(labels)) > accuracy
    pred[wrong] = (pred[wrong] + rng.integers(1, len(CLASSES), wrong.sum())) % len(CLASSES)
    out = io.StringIO()
    out.write("id,label\n")
    for i, p in zip(ids_for(len(labels)), pred, strict=True):
        out.write(f"{i},{CLASSES[p]}\n")
    return out.getvalue().encode()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def upload(client, token: str, task: str, content: bytes, note: str | None = None, filename: str = "preds.csv"):
    data = {"note": note} if note is not None else {}
    return client.post(f"/api/v1/tasks/{task}/submissions", headers=auth(token),
                       files={"file": (filename, content, "text/csv")}, data=data)


def wait_for_status(client, token: str, sid: int, timeout: float = 30.0,
                    done: tuple[str, ...] = ("scored", "failed")) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/submissions/{sid}", headers=auth(token))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in done:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"submission {sid} still {body['status']} after {timeout} s")
        time.sleep(0.05)


def stored_files(storage_dir: Path) -> list[Path]:
    return sorted(p for p in (storage_dir / "objects").rglob("*") if p.is_file())


def wait_for_each_other_after(monkeypatch, module, name: str, parties: int) -> None:
    """Make `parties` concurrent callers of `module.name` wait for each other (up to 2 s) right
    after it returns: without a lock around that check all pass it before any of them writes;
    with one, the others are still waiting for the lock, the barrier times out and the first
    goes on alone."""
    import threading

    barrier = threading.Barrier(parties, timeout=2.0)
    check = getattr(module, name)

    def check_then_wait(*args, **kwargs):
        result = check(*args, **kwargs)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the others are waiting for the lock: go on alone
        return result

    monkeypatch.setattr(module, name, check_then_wait)


def race_for_the_last_submission(client, token: str, task: str, labels: np.ndarray, monkeypatch) -> list[int]:
    """Two uploads by one student, one submission left today, made to interleave at the worst
    point: after its daily-limit check each waits for the other to pass its own. Without a
    lock both pass and both are stored; with one, the second checks only after the first has
    committed. Returns the two status codes, sorted."""
    from concurrent.futures import ThreadPoolExecutor

    from grader_api.services import tasks as task_service

    wait_for_each_other_after(monkeypatch, task_service, "check_daily_limit", 2)
    files = [predictions_csv(labels, 0.6, seed) for seed in (11, 12)]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda f: upload(client, token, task, f), files))
    return sorted(r.status_code for r in answers)


def race_to_select(client, token: str, submission_ids: list[int], monkeypatch) -> list[int]:
    """Select all `submission_ids` at once, each call waiting after its final-count check for
    the others to pass theirs. Returns the status codes, sorted."""
    from concurrent.futures import ThreadPoolExecutor

    from grader_api.services import submissions as submission_service

    wait_for_each_other_after(monkeypatch, submission_service, "check_final_count", len(submission_ids))
    with ThreadPoolExecutor(len(submission_ids)) as pool:
        answers = list(pool.map(
            lambda sid: client.post(f"/api/v1/submissions/{sid}/select", headers=auth(token)), submission_ids))
    return sorted(r.status_code for r in answers)


# Display names the test courses give their students, so tests can tell what a student sees on
# a board (the display name) from what staff see (the login name).
DISPLAY_NAMES = {"alice": "quiet-otter-11", "bob": "brave-lynx-22", "carol": "calm-heron-33"}


def set_display_names(session, names: dict[str, str] = DISPLAY_NAMES) -> None:
    import sqlalchemy as sa

    from grader_api.display_names import display_name_key
    from grader_api.models import Enrollment, User

    for login, display in names.items():
        user_id = session.scalar(sa.select(User.id).where(User.name == login))
        if user_id is not None:
            session.execute(sa.update(Enrollment).where(Enrollment.user_id == user_id)
                            .values(display_name=display, display_key=display_name_key(display)))
