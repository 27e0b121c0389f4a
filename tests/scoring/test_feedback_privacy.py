"""The public part's feedback is no membership or label oracle (issue 16, D9).

The attack: predict classes 1-9 for nine chosen ids and class 0 everywhere else; before the fix
the public confusion matrix (and per-class accuracy, most-confused pairs) showed which of the
nine are public, and their labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scoring.errors import TaskFileError
from scoring.evaluate import DETAIL_KEYS, WITHHELD_REASON, evaluate, withhold_detail
from scoring.splits import public_mask
from scoring.tasks import parse_task, task_to_dict
from scoring.types import Predictions, Split, TaskSpec

N, K = 2000, 10


def classification_task(public_detail: bool = False) -> TaskSpec:
    return TaskSpec(name="cifar", title="CIFAR", kind="classification",
                    classes=tuple(f"c{i}" for i in range(K)), metric="accuracy", ap=None,
                    split="unused", public_fraction=0.5, points=None, public_detail=public_detail)


def split_with(mask: np.ndarray, labels: np.ndarray) -> Split:
    ids = [f"img{i:05d}" for i in range(len(labels))]
    return Split(root=Path("."), labels=labels, ids=ids, public_mask=mask,
                 id_index={x: i for i, x in enumerate(ids)})


@pytest.fixture(scope="module")
def course():
    rng = np.random.default_rng(16)
    labels = rng.integers(0, K, N)
    ids = [f"img{i:05d}" for i in range(N)]
    mask = public_mask(ids, 0.5, seed=123456789)
    chosen = rng.choice(N, 9, replace=False)  # the attacker's nine ids
    return labels, mask, chosen


def attack_predictions(chosen: np.ndarray) -> np.ndarray:
    pred = np.zeros(N, dtype=np.int64)
    pred[chosen] = np.arange(1, 10)
    return pred


def decode_nine(public: dict, chosen: np.ndarray) -> dict[int, int | str]:
    """What the attacker reads off the public part: for each chosen id, 'private' or its label.
    Reads the confusion matrix, else the most-confused pairs; {} when neither is shown."""
    out: dict[int, int | str] = {}
    names = [f"c{i}" for i in range(K)]
    if public.get("confusion"):
        cm = np.asarray(public["confusion"]["matrix"])
        for j, row in enumerate(chosen, start=1):
            hits = np.nonzero(cm[:, j])[0]
            out[int(row)] = int(hits[0]) if len(hits) else "private"
    elif public.get("most_confused"):
        seen = {names.index(p["predicted"]): names.index(p["true"]) for p in public["most_confused"]}
        for j, row in enumerate(chosen, start=1):
            out[int(row)] = seen.get(j, "private")
    return out


def without_score(part: dict) -> dict:
    """A part minus its primary score: the inherent one-number leak of any public leaderboard."""
    return {k: v for k, v in part.items() if k not in ("primary", "metrics")}


def test_the_attack_as_filed_reads_all_nine_when_detail_is_shown(course):
    """The attack works on a task that opts in to public detail: the decoder is sound."""
    labels, mask, chosen = course
    r = evaluate(classification_task(public_detail=True), split_with(mask, labels),
                 Predictions(labels=attack_predictions(chosen)))
    truth = {int(i): (int(labels[i]) if mask[i] else "private") for i in chosen}
    assert decode_nine(r["parts"]["public"], chosen) == truth


def test_nine_chosen_ids_learn_nothing_from_the_public_feedback(course):
    labels, mask, chosen = course
    task = classification_task()
    attack = evaluate(task, split_with(mask, labels), Predictions(labels=attack_predictions(chosen)))
    public = attack["parts"]["public"]
    assert decode_nine(public, chosen) == {}
    assert all(public[k] is None for k in DETAIL_KEYS)
    assert public["withheld"] == WITHHELD_REASON
    # Apart from the score, the feedback is the same whatever is predicted for the nine.
    baseline = evaluate(task, split_with(mask, labels), Predictions(labels=np.zeros(N, np.int64)))
    assert without_score(public) == without_score(baseline["parts"]["public"])


@pytest.mark.parametrize("j", range(9))
def test_one_id_public_or_private_changes_nothing_but_the_score(course, j):
    """Diffing two submissions that differ in one chosen id: the same feedback (score aside)
    whether that id is public or private."""
    labels, mask, chosen = course
    row = int(chosen[j])
    other = int(np.nonzero((mask != mask[row]) & (labels == labels[row]))[0][0])
    flipped = mask.copy()
    flipped[[row, other]] = mask[[other, row]]  # same public size and class supports
    task = classification_task()
    before = np.zeros(N, dtype=np.int64)
    after = before.copy()
    after[row] = labels[row]  # the attacker guessed the label right
    for m in (mask, flipped):
        a = evaluate(task, split_with(m, labels), Predictions(labels=before))["parts"]["public"]
        b = evaluate(task, split_with(m, labels), Predictions(labels=after))["parts"]["public"]
        assert without_score(a) == without_score(b)
        changed = b["primary"] - a["primary"]
        # The score moves by one item iff the id is public: the channel every public board has.
        expected = (int(labels[row] != 0) - int(labels[row] == 0)) / int(m.sum()) if m[row] else 0.0
        assert changed == pytest.approx(expected)


def test_private_and_whole_split_keep_their_detail(course):
    labels, mask, chosen = course
    r = evaluate(classification_task(), split_with(mask, labels), Predictions(labels=attack_predictions(chosen)))
    private = r["parts"]["private"]
    assert private["confusion"] and private["per_class"] and "withheld" not in private
    assert np.asarray(private["confusion"]["matrix"]).sum() == int((~mask).sum())
    assert np.asarray(r["confusion"]["matrix"]).sum() == N and r["per_class"]["c0"]["accuracy"] is not None


def test_grade_score_can_ask_for_detail(course):
    labels, mask, chosen = course
    r = evaluate(classification_task(), split_with(mask, labels), Predictions(labels=attack_predictions(chosen)),
                 public_detail=True)
    assert r["parts"]["public"]["confusion"] and r["parts"]["public"]["withheld"] is None


def test_multilabel_and_segmentation_public_parts_withhold_per_class_values():
    rng = np.random.default_rng(3)
    mask = np.arange(40) % 2 == 0
    ml = TaskSpec(name="voc", title="VOC", kind="multilabel", classes=("a", "b", "c"), metric="mean_ap",
                  ap="step", split="x", public_fraction=0.5, points=None)
    y = (rng.random((40, 3)) < 0.3).astype(np.uint8)
    y[mask, 2] = 0  # class c has no public positives: its undefined entry must not show either
    r = evaluate(ml, split_with(mask, y), Predictions(scores=rng.random((40, 3))))
    pub = r["parts"]["public"]
    assert pub["per_class"] is None and pub["primary"] is not None and pub["withheld"]
    assert all(u["class"] is None for u in pub["undefined"])
    assert r["parts"]["private"]["per_class"]["c"]["ap"] is not None

    seg = TaskSpec(name="seg", title="Seg", kind="segmentation", classes=("bg", "x", "y"), metric="mean_iou",
                   ap="voc", split="x", public_fraction=0.5, points=None, image_size=(8, 8))
    y = rng.integers(0, 3, (40, 8, 8)).astype(np.uint8)
    r = evaluate(seg, split_with(mask, y), Predictions(scores=rng.integers(0, 256, (40, 3, 8, 8)).astype(np.uint8)))
    pub = r["parts"]["public"]
    assert pub["per_class"] is None and set(pub["metrics"]) == {"mean_ap", "mean_iou"}
    assert r["parts"]["private"]["per_class"]["x"]["iou"] is not None


def test_withholding_a_stored_report_part_is_idempotent(course):
    labels, mask, chosen = course
    old = evaluate(classification_task(public_detail=True), split_with(mask, labels),
                   Predictions(labels=attack_predictions(chosen)))["parts"]["public"]
    once = withhold_detail(old)
    assert decode_nine(once, chosen) == {} and withhold_detail(once) == once
    assert once["primary"] == old["primary"] and once["n"] == old["n"]


def test_public_detail_task_key():
    base = {"name": "t", "kind": "classification", "classes": ["a", "b"], "metric": "accuracy", "split": "s"}
    assert parse_task(base).public_detail is False
    assert "public_detail" not in task_to_dict(parse_task(base))  # stored specs of old tasks unchanged
    spec = parse_task({**base, "public_detail": True})
    assert spec.public_detail is True and parse_task(task_to_dict(spec)).public_detail is True
    with pytest.raises(TaskFileError, match="public_detail.*true or false"):
        parse_task({**base, "public_detail": "yes"})
