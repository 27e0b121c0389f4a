"""`grade` student commands end to end against a real server (`grade serve`, embedded default).

Every error path asserts its exit code and that stderr is ONE line without a traceback:
0 ok, 1 the submission failed grading, 2 usage/validation/quota/closed, 3 unreachable/auth.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from grader_api.cli.main import app
from tests.web.live_server import REPO, free_port, predictions_csv, running_server, seed_course


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    var = tmp_path_factory.mktemp("cli-e2e") / "var"
    tokens, labels = seed_course(var)
    with running_server(var) as server:
        server.tokens, server.labels = tokens, labels
        yield server


@pytest.fixture
def grade(live, tmp_path):
    """Run `grade ...` in-process against the live server, as alice unless told otherwise."""
    runner = CliRunner()
    cfg = tmp_path / "cfg"

    def run(*args: str, token: str | None = None, server: str | None = None, env: dict | None = None):
        e = {"GRADE_CONFIG_DIR": str(cfg), "GRADE_SERVER": server or live.url,
             "GRADE_TOKEN": token if token is not None else live.tokens["alice"], **(env or {})}
        return runner.invoke(app, list(args), env=e, catch_exceptions=False)

    return run


def one_line_error(result) -> str:
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(err.splitlines()) == 1, result.stderr
    assert err.startswith("error: ")
    return err


@pytest.fixture
def good_file(live, tmp_path) -> Path:
    f = tmp_path / "preds.csv"
    f.write_bytes(predictions_csv(live.labels, 0.8, seed=3))
    return f


def history(live, task: str, who: str = "alice") -> list[dict]:
    r = httpx.get(f"{live.url}/api/v1/me/submissions", params={"task": task},
                  headers={"Authorization": f"Bearer {live.tokens[who]}"})
    return r.json()["submissions"]


# --------------------------------------------------------------------------------------- login


def test_login_stores_private_config_and_verifies_token(live, tmp_path) -> None:
    cfg = tmp_path / "cfg"
    env = {"GRADE_CONFIG_DIR": str(cfg), "GRADE_SERVER": "", "GRADE_TOKEN": ""}
    r = CliRunner().invoke(app, ["login", "--server", live.url], input=live.tokens["alice"] + "\n", env=env)
    assert r.exit_code == 0, r.output
    assert "logged in" in r.stdout and "alice" in r.stdout and live.tokens["alice"] not in r.stdout
    path = cfg / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"server": live.url, "token": live.tokens["alice"]}
    # the stored credentials are used by the next command
    r = CliRunner().invoke(app, ["tasks", "--json"], env=env)
    assert r.exit_code == 0 and {t["name"] for t in json.loads(r.stdout)["tasks"]} >= {"pets", "pets-limited"}


def test_login_with_bad_token_exits_3_and_saves_nothing(live, tmp_path) -> None:
    cfg = tmp_path / "cfg"
    r = CliRunner().invoke(app, ["login", "--server", live.url, "--token", "not-a-token"],
                           env={"GRADE_CONFIG_DIR": str(cfg)})
    assert r.exit_code == 3
    assert "authentication failed: invalid or revoked token" in one_line_error(r)
    assert not (cfg / "config.json").exists()


# -------------------------------------------------------------------------------------- submit


def test_submit_wait_scores_and_says_why_per_class_is_withheld(grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets", "-m", "+BatchNorm", "--wait")
    assert r.exit_code == 0, r.output
    assert "scored" in r.stdout and "+BatchNorm" in r.stdout
    # before the task closes: the public score, no per-class table (it would reveal the split, D9)
    assert "per class" not in r.stdout and "would reveal which test items are public" in r.stdout
    assert "accuracy" in r.stdout


def test_submit_json_is_one_document(grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets", "-m", "json run", "--wait", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "scored" and doc["note"] == "json run"
    assert doc["public"]["per_class"] is None and doc["public"]["withheld"]
    assert 0.0 <= doc["public_score"] <= 1.0


def test_submit_without_wait_prints_id_and_next_command(grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets")
    assert r.exit_code == 0, r.output
    assert "grade status" in r.stdout


def test_bad_file_is_rejected_locally_exit_2_nothing_uploaded(live, grade, tmp_path) -> None:
    before = len(history(live, "pets"))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nitem000,cat\nitem001,horse\n")
    r = grade("submit", str(bad), "--task", "pets")
    assert r.exit_code == 2
    err = one_line_error(r)
    assert "line 3, column 2" in err and "'horse' is not a class" in err and "checked locally" in err
    assert len(history(live, "pets")) == before


def test_local_check_catches_nan_and_duplicates(grade, tmp_path) -> None:
    f = tmp_path / "scores.csv"
    f.write_text("id,cat,dog,bird\nitem000,0.1,nan,0.2\n")
    r = grade("submit", str(f), "--task", "pets", "--json")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["code"] == "not_finite" and doc["line"] == 2 and doc["column"] == 3 and doc["exit_code"] == 2
    f.write_text("id,label\nitem000,cat\nitem000,dog\n")
    r = grade("submit", str(f), "--task", "pets")
    assert r.exit_code == 2 and "appears twice" in one_line_error(r)


def test_server_side_validation_gives_the_same_kind_of_message(live, grade, tmp_path) -> None:
    # Missing ids can only be known by the server (it has the split): exit 2, its message.
    f = tmp_path / "short.csv"
    f.write_text("id,label\nitem000,cat\n")
    r = grade("submit", str(f), "--task", "pets")
    assert r.exit_code == 2
    assert "have no row" in one_line_error(r)


def test_missing_file_is_usage_error(grade) -> None:
    r = grade("submit", "does-not-exist.csv", "--task", "pets")
    assert r.exit_code == 2 and "no such file" in one_line_error(r)


def test_full_daily_quota_exit_2_one_line(live, grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets-limited", token=live.tokens["bob"])
    assert r.exit_code == 0, r.output
    r = grade("submit", str(good_file), "--task", "pets-limited", token=live.tokens["bob"])
    assert r.exit_code == 2
    assert "daily limit reached: 1 of 1" in one_line_error(r)


def test_closed_task_exit_2_one_line(grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets-closed")
    assert r.exit_code == 2
    err = one_line_error(r)
    assert "closed" in err and "no longer accepted" in err


def test_unknown_task_exit_2(grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "nope")
    assert r.exit_code == 2 and "task 'nope' not found" in one_line_error(r)


# ------------------------------------------------------------------------------ network / auth


def test_server_down_exit_3(grade, good_file) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for args in (("tasks",), ("submit", str(good_file), "--task", "pets"), ("status", "1")):
        r = grade(*args, server=down)
        assert r.exit_code == 3, args
        assert f"cannot reach {down}" in one_line_error(r)


def test_bad_token_exit_3(grade) -> None:
    r = grade("tasks", token="revoked-or-made-up")
    assert r.exit_code == 3
    assert "authentication failed: invalid or revoked token" in one_line_error(r)
    r = grade("tasks", "--json", token="revoked-or-made-up")
    assert r.exit_code == 3 and json.loads(r.stdout)["exit_code"] == 3


def test_no_credentials_exit_3(tmp_path) -> None:
    r = CliRunner().invoke(app, ["tasks"], env={"GRADE_CONFIG_DIR": str(tmp_path), "GRADE_SERVER": "",
                                                "GRADE_TOKEN": ""})
    assert r.exit_code == 3 and "grade login" in one_line_error(r)


# ------------------------------------------------------------------- status, history, board


def test_status_latest_and_by_id(live, grade, good_file) -> None:
    r = grade("submit", str(good_file), "--task", "pets", "-m", "latest one", "--wait", "--json")
    sid = json.loads(r.stdout)["id"]
    r = grade("status", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == sid
    r = grade("status", str(sid))
    assert r.exit_code == 0 and f"submission {sid}" in r.stdout and "latest one" in r.stdout
    r = grade("status", "999999")
    assert r.exit_code == 2 and "not found" in one_line_error(r)


def test_submissions_ablation_table_and_diff(live, grade, tmp_path) -> None:
    ids = []
    for acc, note in ((0.5, "baseline"), (0.9, "+Dropout")):
        f = tmp_path / f"p{acc}.csv"
        f.write_bytes(predictions_csv(live.labels, acc, seed=int(acc * 10)))
        r = grade("submit", str(f), "--task", "pets", "-m", note, "--wait", "--json", token=live.tokens["bob"])
        ids.append(json.loads(r.stdout)["id"])
    r = grade("submissions", "--task", "pets", token=live.tokens["bob"])
    assert r.exit_code == 0 and "baseline" in r.stdout and "+Dropout" in r.stdout and "change" in r.stdout
    doc = json.loads(grade("submissions", "--task", "pets", "--json", token=live.tokens["bob"]).stdout)
    assert [s["note"] for s in doc["submissions"]][-2:] == ["baseline", "+Dropout"]
    assert doc["submissions"][-1]["change"] is not None
    r = grade("diff", str(ids[0]), str(ids[1]), token=live.tokens["bob"])
    assert r.exit_code == 0 and "primary" in r.stdout and "would reveal which test items" in r.stdout
    d = json.loads(grade("diff", str(ids[0]), str(ids[1]), "--json", token=live.tokens["bob"]).stdout)
    assert d["per_class"] == {} and d["primary"]["delta"] > 0
    # someone else's submission is not found (404, not 403)
    r = grade("diff", str(ids[0]), str(ids[1]))
    assert r.exit_code == 2 and "not found" in one_line_error(r)


def test_leaderboard_public_and_private(live, grade, good_file) -> None:
    grade("submit", str(good_file), "--task", "pets", "--wait")
    r = grade("leaderboard", "--task", "pets")
    assert r.exit_code == 0 and "quiet-otter-11" in r.stdout and "public leaderboard" in r.stdout
    doc = json.loads(grade("leaderboard", "--task", "pets", "--json").stdout)
    assert doc["board"] == "public" and any(row["is_me"] and row["user"] == "quiet-otter-11" for row in doc["rows"])
    r = grade("leaderboard", "--task", "pets", "--private")
    assert r.exit_code == 2 and "private leaderboard" in one_line_error(r)
    r = grade("leaderboard", "--task", "pets", "--private", "--json", token=live.tokens["prof"])
    assert r.exit_code == 0 and json.loads(r.stdout)["board"] == "private"


def test_tasks_table(grade) -> None:
    r = grade("tasks")
    assert r.exit_code == 0 and "pets-limited" in r.stdout and "accuracy" in r.stdout
    doc = json.loads(grade("tasks", "--json").stdout)
    pets = next(t for t in doc["tasks"] if t["name"] == "pets")
    assert pets["daily_limit"] == 10 and isinstance(pets["submissions_left_today"], int)


def test_failed_grading_exits_1(grade, monkeypatch) -> None:
    from grader_api import client

    monkeypatch.setattr(client.Client, "submission", lambda self, sid: {
        "id": sid, "task": "pets", "status": "failed", "error": "the model ran out of time (300 s)"})
    r = grade("status", "5")
    assert r.exit_code == 1 and "ran out of time" in r.stdout


# ------------------------------------------------------------------------ the real entry point


def test_entry_point_subprocess_json_and_exit_codes(live, good_file, tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GRADE_CONFIG_DIR": str(tmp_path / "cfg"),
           "GRADE_SERVER": live.url, "GRADE_TOKEN": live.tokens["alice"]}
    cmd = [sys.executable, "-m", "grader_api.cli.main"]
    p = subprocess.run([*cmd, "submit", str(good_file), "--task", "pets", "--wait", "--json"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "scored"
    env["GRADE_SERVER"] = f"http://127.0.0.1:{free_port()}"
    p = subprocess.run([*cmd, "tasks"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert p.returncode == 3 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
