"""The embedded default end to end: SQLite, local storage, in-process worker."""

from __future__ import annotations

import pytest

from tests.service.helpers import auth, predictions_csv, upload, wait_for_status


def test_upload_is_scored_and_ranked_like_offline_scoring(course):
    c = course.client
    r = upload(c, course.alice, "pets", predictions_csv(course.labels, 0.8), note="baseline")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] in ("queued", "running", "scored")
    sub = wait_for_status(c, course.alice, body["id"])
    assert sub["status"] == "scored", sub

    # Same numbers as the scoring core called directly.
    import yaml

    from scoring.evaluate import evaluate
    from scoring.parsers import parse_predictions
    from scoring.splits import load_split
    from scoring.tasks import parse_task
    from tests.service.helpers import task_yaml

    spec = parse_task(yaml.safe_load(task_yaml()), "t")
    split = load_split(course.settings.effective_data_root / "pets/test", spec)
    offline = evaluate(spec, split, parse_predictions(predictions_csv(course.labels, 0.8), spec, split))
    assert sub["public_score"] == pytest.approx(offline["parts"]["public"]["primary"])
    assert sub["public"]["per_class"] == offline["parts"]["public"]["per_class"]
    # Before the deadline the student sees no private/overall scores.
    assert sub["private"] is None and sub["private_score"] is None and sub["overall"] is None

    prof = c.get(f"/api/v1/submissions/{body['id']}", headers=auth(course.instructor)).json()
    assert prof["private_score"] == pytest.approx(offline["parts"]["private"]["primary"])
    assert prof["overall_score"] == pytest.approx(offline["primary"])
    assert prof["points"] == pytest.approx(offline["points"]["earned"])

    board = c.get("/api/v1/tasks/pets/leaderboard", headers=auth(course.bob)).json()
    assert [(row["rank"], row["user"], row["entries"]) for row in board["rows"]] == [(1, "quiet-otter-11", 1)]
    assert board["rows"][0]["score"] == pytest.approx(sub["public_score"])
