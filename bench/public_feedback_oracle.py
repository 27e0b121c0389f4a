"""Public feedback as a membership oracle (issue 16, D9): how many submissions an adaptive
attacker needs per test id to learn whether it is public, before and after the fix.

Run from the repository root:  .venv/bin/python bench/public_feedback_oracle.py
Prints a Markdown table (the figures in docs/RELIABILITY.md, "Public feedback as an oracle (D9)").

Each submission is scored by `scoring.evaluate`, as the worker does; the attacker reads only the
public part of the report (what a student is shown: with `public_detail` for today's feedback,
without it after the fix), and the harness checks every conclusion against the hidden mask.
Two attackers: one who knows nothing about the labels (the attack as filed), and one who knows
every label (a strong model; the worst case). Two rules the fix did not take are simulated too,
to show why: small confusion cells suppressed, and per-class values rounded to a grid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMAND = ".venv/bin/python bench/public_feedback_oracle.py"
SUPPRESS_BELOW = 10   # the "cells below k" rule: k
GRID = 0.05           # the "round to a grid" rule: 5 percentage points

Feedback = Callable[[dict], dict]   # the public part as scored -> what the student sees


# -- the course and its feedback rules ----------------------------------------------------------


class Course:
    """A hidden split; `submit` scores a full prediction vector and returns the public feedback."""

    def __init__(self, n: int, k: int, fraction: float, rng: np.random.Generator,
                 feedback: Feedback, detail: bool):
        from scoring.splits import public_mask
        from scoring.types import Split, TaskSpec

        self.k = k
        self.labels = rng.integers(0, k, n)
        ids = [f"img{i:05d}" for i in range(n)]
        self.mask = public_mask(ids, fraction, seed=int(rng.integers(2**62)))
        self.split = Split(root=Path("."), labels=self.labels, ids=ids, public_mask=self.mask)
        self.task = TaskSpec(name="sim", title="sim", kind="classification",
                             classes=tuple(f"c{i}" for i in range(k)), metric="accuracy", ap=None,
                             split="sim", public_fraction=fraction, points=None)
        self.feedback, self.detail = feedback, detail
        self.submissions = 0

    def submit(self, pred: np.ndarray) -> dict:
        from scoring.evaluate import evaluate
        from scoring.types import Predictions

        self.submissions += 1
        report = evaluate(self.task, self.split, Predictions(labels=pred), public_detail=self.detail)
        return self.feedback(report["parts"]["public"])


def as_scored(part: dict) -> dict:
    return part


def cells_below_k_suppressed(part: dict) -> dict:
    """Confusion cells under k and most-confused pairs under k hidden (None)."""
    matrix = [[c if c >= SUPPRESS_BELOW else None for c in row] for row in part["confusion"]["matrix"]]
    pairs = [p for p in part["most_confused"] if p["count"] >= SUPPRESS_BELOW]
    return {**part, "confusion": {**part["confusion"], "matrix": matrix}, "most_confused": pairs}


def rounded_to_grid(part: dict) -> dict:
    """Per-class accuracy and confusion rates rounded to GRID; no counts."""
    def snap(v: float | None) -> float | None:
        return None if v is None else float(np.floor(v / GRID + 0.5) * GRID)

    m = np.asarray(part["confusion"]["matrix"], dtype=float)
    support = np.maximum(m.sum(axis=1, keepdims=True), 1)
    return {**part, "per_class": {c: {"accuracy": snap(v["accuracy"])} for c, v in part["per_class"].items()},
            "confusion": {**part["confusion"], "matrix": None,
                          "rates": [[snap(x) for x in row] for row in m / support]},
            "most_confused": []}


RULES: dict[str, tuple[Feedback, bool]] = {
    "today (full public detail)": (as_scored, True),
    "after the fix (score only)": (as_scored, False),
    f"rejected: cells below {SUPPRESS_BELOW} suppressed": (cells_below_k_suppressed, True),
    f"rejected: per-class values rounded to {GRID:.0%}": (rounded_to_grid, True),
}


# -- attacks: each returns {row: (is_public, label or None)} ------------------------------------


def nine_ids(course: Course, targets: np.ndarray, max_subs: int) -> dict[int, tuple[bool, int | None]]:
    """The attack as filed: nine ids predicted 1..9, class 0 elsewhere, read off one submission."""
    learned: dict[int, tuple[bool, int | None]] = {}
    for start in range(0, len(targets), 9):
        if course.submissions >= max_subs:
            break
        chosen = targets[start:start + 9]
        pred = np.zeros(len(course.labels), dtype=np.int64)
        pred[chosen] = np.arange(1, len(chosen) + 1)
        matrix = (course.submit(pred).get("confusion") or {}).get("matrix")
        if matrix is None:
            continue
        for j, row in enumerate(chosen, start=1):
            column = [r[j] for r in matrix]
            if any(c is None for c in column):
                continue  # a hidden cell: this column tells nothing
            hits = [y for y, c in enumerate(column) if c]
            learned[int(row)] = (True, hits[0]) if hits else (False, None)
    return learned


def score_only_no_labels(course: Course, targets: np.ndarray, max_subs: int) -> dict:
    """Public score only, no labels: from an all-class-0 submission, move one id to class c;
    the score drops by one item iff it is public with label 0, rises iff public with label c."""
    n = len(course.labels)
    base_pred = np.zeros(n, dtype=np.int64)
    first = course.submit(base_pred)
    n_pub, base = first["n"], round(first["primary"] * first["n"])
    learned: dict[int, tuple[bool, int | None]] = {}
    for row in targets:
        for c in range(1, course.k):
            if course.submissions >= max_subs:
                return learned
            pred = base_pred.copy()
            pred[row] = c
            delta = round(course.submit(pred)["primary"] * n_pub) - base
            if delta:
                learned[int(row)] = (True, 0 if delta < 0 else c)
                break
        else:
            learned[int(row)] = (False, None)
    return learned


def _wrong_everywhere(course: Course) -> np.ndarray:
    return (course.labels + 1) % course.k  # the attacker knows the labels


def score_only_labels_one_by_one(course: Course, targets: np.ndarray, max_subs: int) -> dict:
    """Public score only, labels known: every id wrong but one; the score is 1/n_public iff it is public."""
    learned: dict[int, tuple[bool, int | None]] = {}
    for row in targets:
        if course.submissions >= max_subs:
            break
        pred = _wrong_everywhere(course)
        pred[row] = course.labels[row]
        learned[int(row)] = (course.submit(pred)["primary"] > 0, int(course.labels[row]))
    return learned


def score_only_labels_splitting(course: Course, targets: np.ndarray, max_subs: int) -> dict:
    """Public score only, labels known: the score of "right on S, wrong elsewhere" counts the public
    ids in S; halve S until each count is 0 or |S| (the other half's count by subtraction)."""
    learned: dict[int, tuple[bool, int | None]] = {}

    def count(rows: np.ndarray) -> int:
        pred = _wrong_everywhere(course)
        pred[rows] = course.labels[rows]
        part = course.submit(pred)
        return round(part["primary"] * part["n"])

    stack = [(targets, count(targets))]
    while stack and course.submissions < max_subs:
        rows, c = stack.pop()
        if c in (0, len(rows)):
            learned.update({int(r): (c > 0, int(course.labels[r])) for r in rows})
            continue
        half = rows[: len(rows) // 2]
        ch = count(half)
        stack += [(half, ch), (rows[len(rows) // 2:], c - ch)]
    return learned


def padded_diff(course: Course, targets: np.ndarray, max_subs: int, pad: int = 600) -> dict:
    """Against suppressed small cells, no labels: fill columns 1..9 with `pad` ids each so every
    cell is shown, then add one test id per column and diff against that reference."""
    n, learned = len(course.labels), {}
    others = np.setdiff1d(np.arange(n), targets)
    base_pred = np.zeros(n, dtype=np.int64)
    for j in range(1, 10):
        base_pred[others[(j - 1) * pad: j * pad]] = j
    ref = course.submit(base_pred)["confusion"]["matrix"]
    if any(ref[y][j] is None for y in range(course.k) for j in range(1, 10)):
        raise SystemExit(f"padding {pad} leaves hidden cells; raise it")
    for start in range(0, len(targets), 9):
        if course.submissions >= max_subs:
            break
        chosen = targets[start:start + 9]
        pred = base_pred.copy()
        pred[chosen] = np.arange(1, len(chosen) + 1)
        matrix = course.submit(pred)["confusion"]["matrix"]
        for j, row in enumerate(chosen, start=1):
            grown = [y for y in range(course.k) if matrix[y][j] != ref[y][j]]
            learned[int(row)] = (True, grown[0]) if grown else (False, None)
    return learned


def grid_boundary(course: Course, targets: np.ndarray, max_subs: int) -> dict:
    """Against rounded per-class accuracy, labels known: for each class, binary-search how many of
    its ids (predicted right) bring the rounded value to its next step, stop one short; then one
    test id per class per submission moves the value iff it is public."""
    k, labels = course.k, course.labels
    tested = {int(t) for t in targets}
    pools = [np.array([i for i in np.nonzero(labels == c)[0] if int(i) not in tested]) for c in range(k)]

    def values(lengths: list[int], extra: dict[int, int] | None = None) -> list[float]:
        pred = _wrong_everywhere(course)
        for c in range(k):
            pred[pools[c][: lengths[c]]] = c
        for row, c in (extra or {}).items():
            pred[row] = c
        per_class = course.submit(pred)["per_class"]
        return [per_class[f"c{c}"]["accuracy"] or 0.0 for c in range(k)]

    lo, hi = [0] * k, [len(p) for p in pools]  # per class: value(lo) = start value < value(hi)
    start = values(lo)
    if any(v <= s for v, s in zip(values(hi), start)):
        raise SystemExit("a class has too few public items to reach the next grid step")
    while any(h - lo_ > 1 for lo_, h in zip(lo, hi)):
        mid = [(a + b) // 2 for a, b in zip(lo, hi)]
        now = values(mid)
        for c in range(k):
            if hi[c] - lo[c] > 1:
                (hi if now[c] > start[c] else lo)[c] = mid[c]
    queues = [[int(t) for t in targets if labels[t] == c] for c in range(k)]
    learned: dict[int, tuple[bool, int | None]] = {}
    while any(queues) and course.submissions < max_subs:
        batch = {q.pop(): c for c, q in enumerate(queues) if q}
        now = values(lo, batch)
        for row, c in batch.items():
            learned[row] = (now[c] > start[c], c)
    return learned


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Case:
    rule: str
    attacker: str
    attack: Callable[..., dict]


CASES = [
    Case("today (full public detail)", "no labels: nine ids predicted 1-9 (as filed)", nine_ids),
    Case("after the fix (score only)", "no labels: nine ids predicted 1-9 (as filed)", nine_ids),
    Case("after the fix (score only)", "no labels: one id moved per submission", score_only_no_labels),
    Case("after the fix (score only)", "all labels known: one id right per submission", score_only_labels_one_by_one),
    Case("after the fix (score only)", "all labels known: halving sets by their counts", score_only_labels_splitting),
    Case(f"rejected: cells below {SUPPRESS_BELOW} suppressed", "no labels: nine ids predicted 1-9 (as filed)",
         nine_ids),
    Case(f"rejected: cells below {SUPPRESS_BELOW} suppressed", "no labels: padded columns, diff", padded_diff),
    Case(f"rejected: per-class values rounded to {GRID:.0%}", "all labels known: rounding boundary", grid_boundary),
]


def run_case(case: Case, args, seed: int) -> tuple[int, int, int]:
    """(ids learned, submissions, wrong conclusions) on one fresh course."""
    rng = np.random.default_rng(seed)
    feedback, detail = RULES[case.rule]
    course = Course(args.n, args.k, args.fraction, rng, feedback, detail)
    targets = rng.choice(args.n, args.ids, replace=False)
    learned = case.attack(course, targets, args.max_subs)
    wrong = sum(1 for row, (public, _) in learned.items() if public != bool(course.mask[row]))
    return len(learned), course.submissions, wrong


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="items in the split")
    ap.add_argument("--k", type=int, default=10, help="classes")
    ap.add_argument("--fraction", type=float, default=0.5, help="public fraction (the shipped tasks use 0.5)")
    ap.add_argument("--ids", type=int, default=270, help="test ids per attack")
    ap.add_argument("--trials", type=int, default=5, help="courses (fresh labels and partition) per attack")
    ap.add_argument("--max-subs", type=int, default=5000, help="submissions an attack may use")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()

    rows, baseline = [], None
    for case in CASES:
        learned = subs = wrong = 0
        for t in range(args.trials):
            a, b, c = run_case(case, args, args.seed * 1000 + t)
            learned, subs, wrong = learned + a, subs + b, wrong + c
        per_id = subs / learned if learned else None
        if baseline is None:
            baseline = per_id
        ratio = "cannot learn" if per_id is None else f"{per_id / baseline:.1f}x"
        rows.append([case.rule, case.attacker, f"{learned / args.trials:.0f}", f"{subs / args.trials:.1f}",
                     "-" if per_id is None else f"{per_id:.2f}", ratio, str(wrong)])
    command = " ".join([COMMAND, *sys.argv[1:]])
    print(f"Command: `{command}` (n = {args.n}, {args.k} classes, public fraction {args.fraction}, "
          f"{args.ids} test ids per attack, mean of {args.trials} courses, seed {args.seed})\n")
    print("| public feedback | attacker | ids learned | submissions | submissions per id | vs today | wrong |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
