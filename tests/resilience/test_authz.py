"""Authorization matrix over every operation in the service's OpenAPI schema, for the three
roles of a course (instructor, TA, student: the owner and another), the same roles of another
course, and no token; guessed and revoked tokens; and the private leaderboard never reachable by a
student before the deadline, error messages included."""

from __future__ import annotations

import re
import secrets
import socket
import time

import pytest

from tests.resilience.course import make_task, post_file
from tests.resilience.record import record
from tests.service.helpers import auth

pytestmark = [pytest.mark.resilience, pytest.mark.slow]

# Who calls. In the task's course: its instructor, a TA, the student who owns the submission and
# another student; in another course: its instructor, TA and a student; and nobody (no token).
ACTORS = ("anonymous", "instructor", "ta", "owner", "student", "other instructor", "other ta", "other student")
IN_COURSE = ("instructor", "ta", "owner", "student")
OTHER_COURSE = ("other instructor", "other ta", "other student")

# What each kind of operation answers each actor (`"2xx"`: any success). The course's objects do
# not exist for another course (404, as another student's submission); a role too low in the
# right course is 403. A route the matrix does not classify fails test_schema_lists...
def _expect(kind: str) -> dict[str, object]:
    own_staff = {"instructor": "2xx", "ta": "2xx"}
    elsewhere = {a: 404 for a in OTHER_COURSE}
    table: dict[str, dict[str, object]] = {
        "public": {a: "2xx" for a in ACTORS},
        # not tied to one course: every signed-in user, about themselves
        "self": {**{a: "2xx" for a in ACTORS}, "anonymous": 401},
        # a task of the course: its members
        "member": {**{a: "2xx" for a in IN_COURSE}, **elsewhere, "anonymous": 401},
        # staff of the task's course (instructor and TA)
        "staff": {**own_staff, "owner": 403, "student": 403, **elsewhere, "anonymous": 401},
        # the course's instructor only
        "instructor": {"instructor": "2xx", "ta": 403, "owner": 403, "student": 403, **elsewhere, "anonymous": 401},
        # a user of the caller's courses: minting a token only by an instructor of every course that user
        # is in; revoking also by an instructor of any course the user is a student in ({name} is one)
        "user admin": {"instructor": "2xx", "ta": 404, "owner": 404, "student": 404, **elsewhere,
                       "anonymous": 401},
        # alice's submission: her, and the course's staff; not another student
        "owned read": {**own_staff, "owner": "2xx", "student": 404, **elsewhere, "anonymous": 401},
        # marking alice's submission final: her only (staff do not choose for students)
        "owned write": {"instructor": 404, "ta": 404, "owner": "2xx", "student": 404, **elsewhere,
                        "anonymous": 401},
        # leaving a team: alice is in one; nobody else of the course is (404: no team to leave)
        "team leave": {"instructor": 404, "ta": 404, "owner": "2xx", "student": 404, **elsewhere,
                       "anonymous": 401},
        # a join code that belongs to no team: the same 404 for everyone signed in
        "wrong join code": {**{a: 404 for a in ACTORS}, "anonymous": 401},
        # an empty roster file: the instructor gets past the checks and is told what is wrong with it
        "roster upload": {"instructor": "refused", "ta": 403, "owner": 403, "student": 403, **elsewhere,
                          "anonymous": 401},
        # course-level routes (the course is in the path): another course's users do not see it either
        "course member": {**{a: "2xx" for a in IN_COURSE}, **elsewhere, "anonymous": 401},
    }
    return table[kind]


OPERATIONS: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/health"): "public",
    ("GET", "/api/v1/me"): "self",
    ("GET", "/api/v1/tasks"): "self",
    ("GET", "/api/v1/tasks/{task}"): "member",
    ("GET", "/api/v1/tasks/{task}/leaderboard"): "member",
    ("POST", "/api/v1/tasks/{task}/submissions"): "member",
    ("GET", "/api/v1/me/submissions"): "member",
    ("GET", "/api/v1/tasks/{task}/submissions"): "staff",
    ("POST", "/api/v1/tasks/{task}/rescore"): "staff",
    ("GET", "/api/v1/tasks/{task}/grades.csv"): "staff",
    ("PATCH", "/api/v1/tasks/{task}"): "instructor",
    ("POST", "/api/v1/tasks"): "instructor",
    ("POST", "/api/v1/users"): "instructor",
    ("POST", "/api/v1/users/{name}/tokens"): "user admin",
    ("POST", "/api/v1/users/{name}/revoke"): "user admin",
    ("GET", "/api/v1/submissions/{submission_id}"): "owned read",
    ("GET", "/api/v1/me/submissions/diff"): "owned read",
    ("POST", "/api/v1/submissions/{submission_id}/select"): "owned write",
    # teams, on a task with team_size 2 (alice starts in a team of her own)
    ("POST", "/api/v1/tasks/{task}/teams"): "member",
    ("GET", "/api/v1/tasks/{task}/team"): "member",
    ("POST", "/api/v1/tasks/{task}/team/leave"): "team leave",
    ("GET", "/api/v1/tasks/{task}/teams"): "staff",
    ("PATCH", "/api/v1/teams/{team_id}"): "staff",
    ("DELETE", "/api/v1/teams/{team_id}"): "staff",
    ("POST", "/api/v1/teams/join"): "wrong join code",
    # the course's roster, members and invites; one's own display name and token
    ("POST", "/api/v1/courses/{course}/roster"): "roster upload",
    ("GET", "/api/v1/courses/{course}/roster"): "staff",
    ("PATCH", "/api/v1/courses/{course}/members/{login}"): "instructor",
    ("POST", "/api/v1/courses/{course}/invites"): "instructor",
    ("PUT", "/api/v1/courses/{course}/me/display-name"): "course member",
    ("POST", "/api/v1/me/token/rotate"): "self",
}

# Rotating a token revokes the caller's others: each actor rotates the token of a fresh user with
# the same role in the same course (made by that course's instructor), never its own.
_ROTATE_AS = {"instructor": ("default", "instructor"), "ta": ("default", "ta"), "owner": ("default", "student"),
              "student": ("default", "student"), "other instructor": ("other", "instructor"),
              "other ta": ("other", "ta"), "other student": ("other", "student")}


def _tokens(env) -> dict[str, str | None]:
    o = env.others
    return {"anonymous": None, "instructor": env.prof, "ta": o["tara"], "owner": env.alice, "student": env.bob,
            "other instructor": o["oprof"], "other ta": o["ota"], "other student": o["olga"]}


@pytest.fixture(scope="module")
def course(env):
    env.heal()
    task = make_task(env.client, env.prof, env.data_root, n=200, k=4, prefix="authz")
    sid = post_file(env.client, env.alice, task.name, task.csv(0.7, 1)).json()["id"]
    deadline = time.monotonic() + 60
    while env.client.get(f"/api/v1/submissions/{sid}", headers=auth(env.alice)).json()["status"] != "scored":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    private = env.client.get(f"/api/v1/submissions/{sid}", headers=auth(env.prof)).json()["private_score"]
    team_task = make_task(env.client, env.prof, env.data_root, n=200, k=4, prefix="authzteam", extra="team_size: 2\n")
    r = env.client.post(f"/api/v1/tasks/{team_task.name}/teams", json={"name": "alices-team"}, headers=auth(env.alice))
    assert r.status_code == 201, r.text
    task.team_task = team_task
    return env, task, sid, private


def _staff_team(env, team_task) -> int:
    """A new empty team made by the course's instructor (one per PATCH or DELETE call)."""
    r = env.client.post(f"/api/v1/tasks/{team_task.name}/teams", json={"name": f"t-{secrets.token_hex(4)}"},
                        headers=auth(env.prof))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _stand_in(env, who: str) -> str:
    course, role = _ROTATE_AS[who]
    maker = env.prof if course == "default" else env.others["oprof"]
    r = env.client.post("/api/v1/users", json={"name": f"r{secrets.token_hex(4)}", "role": role, "course": course},
                        headers=auth(maker))
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _call(env, method, path, task, sid, token):
    if "/courses/" in path:
        return _course_call(env, method, path, token)
    if "/team" in path:
        return _team_call(env, method, path, task.team_task, token)
    # {name} is a spare student of the course: revoking or replacing its tokens spoils no one's calls.
    url = (path.replace("{task}", task.name).replace("{submission_id}", str(sid)).replace("{name}", "victim"))
    params = {}
    if path.endswith("/diff"):
        params = {"a": sid, "b": sid}
    elif path == "/api/v1/me/submissions":
        params = {"task": task.name}
    elif path == "/api/v1/tasks" and method == "POST":
        params = {"course": "default"}
    kw = {"headers": auth(token) if token else {}, "params": params}
    if method == "POST" and path.endswith("/submissions") and "{task}" in path:
        kw["files"] = {"file": ("p.csv", task.csv(0.5, 9))}
    elif path == "/api/v1/tasks" and method == "POST":
        kw["json"] = {"yaml": task.yaml.replace(f"name: {task.name}", f"name: {task.name}x{secrets.token_hex(2)}")}
    elif path == "/api/v1/users":
        kw["json"] = {"name": f"u{secrets.token_hex(3)}", "role": "student", "course": "default"}
    elif method == "PATCH":
        kw["json"] = {"daily_limit": 50}
    return env.client.request(method, url, **kw)


def _course_call(env, method, path, token):
    url = path.replace("{course}", "default").replace("{login}", "victim")
    kw: dict = {"headers": auth(token) if token else {}}
    if path.endswith("/roster") and method == "POST":
        kw.update(content=b"", headers={**kw["headers"], "Content-Type": "text/csv"})
    elif path.endswith("/display-name"):
        kw["json"] = {"display_name": f"shown-{secrets.token_hex(4)}"}
    elif method == "PATCH":
        kw["json"] = {"section": f"S{secrets.randbelow(9)}"}
    return env.client.request(method, url, **kw)


def _team_call(env, method, path, team_task, token):
    url = path.replace("{task}", team_task.name)
    if "{team_id}" in path:
        url = url.replace("{team_id}", str(_staff_team(env, team_task)))
    kw: dict = {"headers": auth(token) if token else {}}
    if path.endswith("/teams") and method == "POST":
        kw["json"] = {"name": f"n-{secrets.token_hex(4)}"}
    elif path.endswith("/join"):
        kw["json"] = {"code": secrets.token_urlsafe(16)}
    elif method == "PATCH":
        kw["json"] = {"name": f"r-{secrets.token_hex(4)}"}
    return env.client.request(method, url, **kw)


def test_schema_lists_exactly_the_classified_operations(course):
    env, *_ = course
    schema = env.client.get("/api/v1/openapi.json").json()
    ops = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    assert ops == set(OPERATIONS), "classify new endpoints in this matrix"


def test_matrix(course):
    """Every operation × every actor: the status the rules give, an error envelope on refusals, and
    no private score in anything a student or another course's user receives."""
    env, task, sid, private = course
    tokens = _tokens(env)
    rows, problems = [], []
    for (method, path), kind in sorted(OPERATIONS.items()):
        expected = _expect(kind)
        for who in ACTORS:
            token = tokens[who]
            if path == "/api/v1/me/token/rotate" and token is not None:
                token = _stand_in(env, who)
            r = _call(env, method, path, task, sid, token)
            want = expected[who]
            if want == "2xx":
                ok = 200 <= r.status_code < 300
            elif want == "refused":  # a 4xx about the request itself, past authentication and roles
                ok = 400 <= r.status_code < 500 and r.status_code not in (401, 403, 404)
            else:
                ok = r.status_code == want
            if ok and r.status_code >= 400:
                body = r.json()
                ok = bool(body.get("detail")) and body.get("code") is not None
            if who not in ("instructor", "ta") and private is not None:
                ok = ok and repr(private) not in r.text  # no private score outside the course's staff
            rows.append((method, path, who, r.status_code, want, ok))
            if not ok:
                problems.append(f"{who} {method} {path}: {r.status_code} (wanted {want}) {r.text[:200]}")
    record("authz", "matrix", rows=rows)
    assert not problems, "\n".join(problems)


def test_guessed_malformed_and_revoked_tokens(course):
    env, task, sid, _ = course
    guesses = [secrets.token_urlsafe(32), env.alice + "x", env.alice[:-1], env.prof.upper(), "null",
               "' OR 1=1 --", "a" * 10_000]
    problems = []
    for g in guesses:
        r = env.client.get("/api/v1/me", headers={"Authorization": f"Bearer {g}"})
        if r.status_code != 401:
            problems.append(f"guess {g[:20]!r}: {r.status_code}")
    headers = (f"Basic {env.alice}", env.alice, f"bearer{env.alice}", "Bearer")
    for header in headers:
        r = env.client.get("/api/v1/me", headers={"Authorization": header})
        if r.status_code != 401:
            problems.append(f"header {header[:12]!r}: {r.status_code}")
    # replay after revocation
    name = f"carol{secrets.token_hex(2)}"
    token = env.client.post("/api/v1/users", json={"name": name, "role": "student"},
                            headers=auth(env.prof)).json()["token"]
    assert env.client.get("/api/v1/me", headers=auth(token)).status_code == 200
    assert env.client.post(f"/api/v1/users/{name}/revoke", headers=auth(env.prof)).status_code == 200
    replay = env.client.get("/api/v1/me", headers=auth(token))
    up = post_file(env.client, token, task.name, task.csv(0.5, 3))
    new = env.client.post(f"/api/v1/users/{name}/tokens", headers=auth(env.prof)).json()["token"]
    rotated = env.client.post(f"/api/v1/users/{name}/tokens?revoke_old=true", headers=auth(env.prof)).json()["token"]
    old_after_rotation = env.client.get("/api/v1/me", headers=auth(new))
    record("authz", "tokens", guesses=len(guesses), malformed_headers=len(headers), not_401=len(problems),
           replay_status=replay.status_code, upload_status=up.status_code,
           rotated_old_status=old_after_rotation.status_code)
    assert replay.status_code == 401 and up.status_code == 401, (replay.text, up.text)
    assert old_after_rotation.status_code == 401
    assert env.client.get("/api/v1/me", headers=auth(rotated)).status_code == 200
    assert not problems, problems


def _raw_get(port: int, path: str, token: str) -> tuple[int, str]:
    """GET `path` exactly as written (no dot-segment removal), return status and body text."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
           "Connection: close\r\n\r\n").encode()
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(req)
        while len(reply) < 1 << 20:
            part = s.recv(65536)
            if not part:
                break
            reply += part
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1") else 0
    return status, reply.partition(b"\r\n\r\n")[2].decode("latin-1")


def test_private_board_and_labels_hidden_from_students_before_the_deadline(course):
    env, task, sid, private = course
    a = auth(env.alice)
    r = env.client.get(f"/api/v1/tasks/{task.name}/leaderboard", params={"board": "private"}, headers=a)
    assert r.status_code == 403 and r.json()["code"]
    sub = env.client.get(f"/api/v1/submissions/{sid}", headers=a).json()
    assert sub["private_score"] is None and sub["private"] is None and sub["overall"] is None and sub["points"] is None
    hist = env.client.get("/api/v1/me/submissions", params={"task": task.name}, headers=a)
    assert all(row.get("private_score") is None for row in hist.json()["submissions"] if isinstance(row, dict))
    for part in ("private", "overall"):
        d = env.client.get("/api/v1/me/submissions/diff", params={"a": sid, "b": sid, "part": part}, headers=a)
        assert d.status_code == 403, d.text
    texts = [r.text, hist.text, str(sub)]
    # labels: no route serves split files; path tricks against the API and static mount, sent
    # byte for byte (an HTTP client would remove the dot segments before sending)
    for path in ("/static/../var/data", f"/static/../../data/{task.name}/test/labels.npy",
                 f"/api/v1/tasks/{task.name}/../../../data/{task.name}/test/labels.npy",
                 "/static/%2e%2e/%2e%2e/var", f"/static/..%2f..%2fdata/{task.name}/test/labels.npy",
                 f"/api/v1/tasks/{task.name}/labels", "/api/v1/splits"):
        status, body = _raw_get(env.stack.api_port, path, env.alice)
        texts.append(body)
        assert status in (404, 405, 401, 403), (path, status)
        assert "NUMPY" not in body, path
    # An error about a wrong row names the row, never that row's true label: the message for two
    # rows with different true labels is the same once the line number is masked.
    i = 7
    j = next(k for k in range(8, 200) if task.labels[k] != task.labels[i])
    errs = []
    for k in (i, j):
        good = f"img{k:05d},{task.classes[task.labels[k]]}\n".encode()
        wrong = task.csv(1.0, 4).replace(good, f"img{k:05d},nope\n".encode())
        errs.append(post_file(env.client, env.alice, task.name, wrong).json()["detail"])
    assert "nope" in errs[0]
    assert re.sub(r"line \d+", "line N", errs[0]) == re.sub(r"line \d+", "line N", errs[1]), errs
    labels_text = ",".join(task.classes[i] for i in task.labels[:20])
    assert all(labels_text not in t and (private is None or repr(private) not in t) for t in texts)
    record("authz", "private board and labels", checked=len(texts) + 1, ok=True)


def test_private_rows_change_nothing_a_student_sees_even_after_a_rescore(course):
    """Two files that agree on the public rows and differ only on the private ones (all right
    against all wrong) must look the same to their student before the deadline: same public
    scores, no private field, and an instructor's rescore changes that in no way. What differs
    is only bookkeeping (ids, times, hashes, notes)."""
    import yaml

    from scoring.splits import load_split
    from scoring.tasks import parse_task

    env, task, _sid, _private = course
    spec = parse_task(yaml.safe_load(task.yaml), f"{task.name}.yaml")
    public = load_split(spec.resolve_split_dir(task.data_root), spec).public_mask
    k = len(task.classes)
    base = task.labels.copy()
    base[public] = (base[public] + 1) % k          # public rows: the same (wrong) answers in both
    worse = base.copy()
    worse[~public] = (worse[~public] + 1) % k      # private rows: all right in `base`, all wrong here

    def csv(pred):
        rows = "".join(f"{i},{task.classes[c]}\n" for i, c in zip(task.ids, pred, strict=True))
        return ("id,label\n" + rows).encode()

    a = auth(env.alice)
    ids = [post_file(env.client, env.alice, task.name, csv(p), note=f"privacy-{n}").json()["id"]
           for n, p in (("right", base), ("wrong", worse))]
    bookkeeping = {"id", "note", "created_at", "started_at", "finished_at", "updated_at", "scored_at",
                   "sha256", "url", "attempts", "selected"}

    def views():
        out = []
        for sid in ids:
            deadline = time.monotonic() + 60
            while (body := env.client.get(f"/api/v1/submissions/{sid}", headers=a).json())["status"] != "scored":
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            out.append({key: v for key, v in body.items() if key not in bookkeeping})
        return out

    before = views()
    assert before[0] == before[1], before
    truth = [env.client.get(f"/api/v1/submissions/{sid}", headers=auth(env.prof)).json()["private_score"]
             for sid in ids]
    assert truth[0] != truth[1]                     # the instructor sees the private difference
    r = env.client.post(f"/api/v1/tasks/{task.name}/rescore", headers=auth(env.prof))
    assert r.status_code == 202 and r.json()["requeued"] >= 2, r.text
    after = views()
    assert after == before, (before, after)
    board = env.client.get(f"/api/v1/tasks/{task.name}/leaderboard", headers=a).json()
    assert all(row.get("private_score") is None for row in board.get("rows", [])), board
    record("authz", "private rows invisible to the student, before and after a rescore", checked=4, ok=True)
