"""The invariants every fault scenario ends with, checked against the database itself.

A scenario tells the `Ledger` what it sent (a unique note per submission) and what the API
answered; `audit()` waits until every row of the task is terminal (or the bound passes), then
counts: accepted, scored, failed with a reason, lost (answered 202 but no row), stuck (not
terminal in time), duplicated (two rows for one note) and wrong score (a scored report that
differs from the offline scoring core's on the same bytes).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from tests.resilience.course import TaskHandle
from tests.resilience.record import record

TERMINAL = ("scored", "failed")


@dataclass
class Ledger:
    """What the clients sent: note -> file bytes, and the API's answer to each."""

    sent: dict[str, bytes] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)    # note -> "202", "503", "conn_error", ...
    ids: dict[str, int] = field(default_factory=dict)        # note -> id from a 202
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, note: str, content: bytes, answer: str, sid: int | None = None) -> None:
        with self._lock:
            self.sent[note], self.answers[note] = content, answer
            if sid is not None:
                self.ids[note] = sid

    def errors_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.answers.values():
            if a != "202":
                out[a] = out.get(a, 0) + 1
        return out


@dataclass
class Figures:
    scenario: str
    sent: int
    accepted: int
    scored: int
    failed_with_reason: int
    failed_without_reason: int
    lost: int
    stuck: int
    duplicated: int
    wrong_score: int
    refused: dict
    failure_reasons: dict
    seconds_to_terminal: float
    unexpected_failures: list = field(default_factory=list)  # (note, code, reason) not in expect_failed

    def assert_clean(self) -> None:
        bad = {k: getattr(self, k) for k in ("lost", "stuck", "duplicated", "wrong_score", "failed_without_reason")
               if getattr(self, k)}
        assert not bad, f"{self.scenario}: invariants broken: {bad}\n{self}"
        assert self.accepted == self.scored + self.failed_with_reason, self
        assert not self.unexpected_failures, f"{self.scenario}: failed, not expected to: {self.unexpected_failures}"
        five_xx = {k: v for k, v in self.refused.items() if k.startswith("5") and k != "503"}
        assert not five_xx, f"{self.scenario}: server errors {five_xx}"


def _rows(db_url: str, task: str) -> list[dict]:
    from grader_api.db import get_database
    from grader_api.models import Submission, Task

    db = get_database(db_url)
    with db.transaction() as s:
        res = s.execute(sa.select(Submission.id, Submission.note, Submission.status, Submission.error,
                                  Submission.error_code, Submission.report, Submission.attempts)
                        .join(Task, Task.id == Submission.task_id).where(Task.name == task)).all()
    return [dict(id=r[0], note=r[1], status=r[2].value, error=r[3], error_code=r[4], report=r[5], attempts=r[6])
            for r in res]


def audit(scenario: str, db_url: str, task: TaskHandle, ledger: Ledger, *, bound_s: float,
          expect_failed: set[str] = frozenset()) -> Figures:
    """Wait up to `bound_s` for every row of `task` to be terminal, then count (and record)."""
    start = time.monotonic()
    while True:
        try:
            rows = _rows(db_url, task.name)
        except sa.exc.OperationalError:
            rows = None  # the database is still coming back
        if rows is not None and all(r["status"] in TERMINAL for r in rows if r["note"] in ledger.sent):
            break
        if time.monotonic() - start > bound_s:
            break
        time.sleep(0.5)
    waited = time.monotonic() - start
    # Only this scenario's submissions (a task may also hold earlier scenarios' rows).
    rows = [r for r in rows or [] if r["note"] in ledger.sent]
    by_note: dict[str, list[dict]] = {}
    for r in rows:
        by_note.setdefault(r["note"], []).append(r)
    lost = sum(1 for n, a in ledger.answers.items() if a == "202" and n not in by_note)
    duplicated = sum(len(v) - 1 for v in by_note.values() if len(v) > 1)
    stuck = sum(1 for r in rows if r["status"] not in TERMINAL)
    scored = [r for r in rows if r["status"] == "scored"]
    failed = [r for r in rows if r["status"] == "failed"]
    wrong = 0
    for r in scored:
        content = ledger.sent.get(r["note"])
        if content is None or r["report"] != task.offline_report(content):
            wrong += 1
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r["error_code"] or "none"] = reasons.get(r["error_code"] or "none", 0) + 1
    unexpected_fail = [r for r in failed if r["note"] not in expect_failed]
    fig = Figures(
        scenario=scenario, sent=len(ledger.sent), accepted=len(rows), scored=len(scored),
        failed_with_reason=sum(1 for r in failed if r["error"]),
        failed_without_reason=sum(1 for r in failed if not r["error"]),
        lost=lost, stuck=stuck, duplicated=duplicated, wrong_score=wrong,
        refused=ledger.errors_by_kind(), failure_reasons=reasons, seconds_to_terminal=round(waited, 1),
        unexpected_failures=[(r["note"], r["error_code"], r["error"]) for r in unexpected_fail],
    )
    record("fault", scenario, **asdict(fig))
    return fig
