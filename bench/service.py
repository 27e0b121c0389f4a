"""End-to-end latency and throughput of the grading service on the real stack.

    .venv/bin/python bench/service.py [--submissions 200] [--clients 4] [--concurrent 100] [--workers 2]

Starts, on 127.0.0.1 only: a throwaway PostgreSQL database, an isolated Redis namespace,
uvicorn serving `grader_api.app:create_app` in a subprocess, and celery worker subprocesses.
Each submission is a 10,000-row CIFAR-100 predictions CSV (a few labels changed each time,
so every file is distinct). Latency = from sending the upload to the first GET that shows
`scored`; also reported from the 202 answer. Reference in the same run: parsing and scoring
the same file in-process (the floor any service can reach). Every loop is bounded; at the
end the database is checked for lost (missing) and stuck (not scored) submissions. The
`## service` section of bench/RESULTS.md is replaced with the results.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = os.environ.get("HELDOUT_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HELDOUT_BENCH_REDIS", "redis://127.0.0.1:6379/14")
N_ROWS = 10_000
POLL_S = 0.005
PER_SUBMISSION_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _process(cmd: list[str], env: dict, log: Path, ready: bytes, timeout: float = 60.0):
    fh = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t_end = time.monotonic() + timeout
        while ready not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > t_end:
                raise RuntimeError(f"{cmd[2:5]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        fh.close()


def _csv_variants(labels: np.ndarray, ids: list[str], classes, count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    base = labels.copy()
    wrong = rng.random(len(base)) > 0.6
    base[wrong] = rng.integers(0, len(classes), int(wrong.sum()))
    out = []
    for _ in range(count):
        pred = base.copy()
        flip = rng.integers(0, len(pred), 20)
        pred[flip] = rng.integers(0, len(classes), 20)
        out.append(("Id,Prediction1\n" + "".join(f"{i},{p}\n" for i, p in zip(ids, pred, strict=True))).encode())
    return out


def _one(client: httpx.Client, token: str, content: bytes, note: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    r = client.post("/api/v1/tasks/cifar100/submissions", headers=headers,
                    files={"file": ("preds.csv", content, "text/csv")}, data={"note": note})
    t_acc = time.perf_counter()
    if r.status_code != 202:
        return {"error": f"{r.status_code} {r.text[:200]}"}
    sid = r.json()["id"]
    t_end = t_acc + PER_SUBMISSION_TIMEOUT_S
    status = "queued"
    while time.perf_counter() < t_end:
        status = client.get(f"/api/v1/submissions/{sid}", headers=headers).json()["status"]
        if status in ("scored", "failed"):
            break
        time.sleep(POLL_S)
    t_done = time.perf_counter()
    return {"id": sid, "status": status, "e2e": t_done - t0, "after_202": t_done - t_acc, "upload": t_acc - t0}


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _reference_ms(task_path: Path, split_dir: Path, content: bytes, repeats: int = 20) -> float:
    from scoring.evaluate import evaluate
    from scoring.parsers import parse_predictions
    from scoring.splits import load_split
    from scoring.tasks import load_task

    spec = load_task(task_path)
    split = load_split(split_dir, spec)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        evaluate(spec, split, parse_predictions(content, spec, split))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submissions", type=int, default=200, help="sequential submissions (latency)")
    ap.add_argument("--concurrent", type=int, default=100, help="submissions in the concurrent phase")
    ap.add_argument("--clients", type=int, default=4, help="concurrent httpx clients")
    ap.add_argument("--workers", type=int, default=2, help="celery worker processes (solo pool each)")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()

    import sqlalchemy as sa

    from grader_api.config import Settings
    from grader_api.db import get_database, migrate
    from grader_api.models import Submission
    from grader_api.services.tasks import create_task
    from grader_api.services.users import create_user
    from scoring.splits import write_split
    from scoring.tasks import load_task
    from tests.support.databases import throwaway_database

    task_path = REPO / "datasets" / "cifar100.yaml"
    spec = load_task(task_path)
    tmp = Path(tempfile.mkdtemp(prefix="heldout-bench-"))
    prefix = f"heldout-bench-{secrets.token_hex(4)}-"
    total = args.submissions + args.concurrent
    students = [f"student{i:02d}" for i in range(max(args.clients, 1))]

    with ExitStack() as stack:
        db_url = stack.enter_context(throwaway_database(PG_ADMIN_URL, prefix="heldout_bench"))
        settings = Settings(var_dir=tmp / "var", database_url=db_url, redis_url=REDIS_URL, queue_prefix=prefix)
        settings.ensure_dirs()
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 100, N_ROWS)
        ids = [str(i) for i in range(N_ROWS)]
        split_dir = spec.resolve_split_dir(settings.effective_data_root)
        write_split(split_dir, labels, ids=ids, seed=3, source="bench")
        migrate(db_url)
        db = get_database(db_url)
        tokens = {}
        with db.transaction() as s:
            create_user(s, "prof", "instructor")
            for name in students:
                tokens[name] = create_user(s, name, "student")[1]
            create_task(s, settings, task_path.read_text())
        files = _csv_variants(labels, ids, spec.classes, total)
        ref_ms = _reference_ms(task_path, split_dir, files[0])

        env = {k: v for k, v in os.environ.items() if not k.startswith("HELDOUT_")}
        env.update({"DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "HELDOUT_QUEUE_PREFIX": prefix,
                    "HELDOUT_VAR_DIR": str(settings.var_dir), "HELDOUT_RATE_LIMIT": "1000000/minute",
                    "HELDOUT_UPLOAD_RATE_LIMIT": "1000000/minute", "PYTHONPATH": str(REPO)})
        port = _free_port()
        stack.enter_context(_process(
            [sys.executable, "-m", "uvicorn", "grader_api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"], env, tmp / "uvicorn.log", b"",
            timeout=5))
        queues = f"{prefix}cpu,{prefix}gpu"
        for w in range(args.workers):
            stack.enter_context(_process(
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo", "-Q", queues,
                 "-n", f"bench{w}-{prefix}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel=INFO"], env, tmp / f"celery{w}.log", b" ready.", timeout=60))
        base = f"http://127.0.0.1:{port}"
        t_end = time.monotonic() + 60
        while True:  # wait for the API (migrations applied on start) and warm both sides up
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > t_end:
                raise RuntimeError((tmp / "uvicorn.log").read_text()[-3000:])
            time.sleep(0.2)

        with httpx.Client(base_url=base, timeout=30) as client:
            for k in range(3):  # warm-up: split caches in the API and the workers (not counted)
                _one(client, tokens[students[0]], files[k], "warm-up")
            seq = [_one(client, tokens[students[0]], files[k], f"seq {k}") for k in range(args.submissions)]

        def client_run(c: int) -> list[dict]:
            with httpx.Client(base_url=base, timeout=30) as cl:
                mine = range(args.submissions + c, total, args.clients)
                return [_one(cl, tokens[students[c]], files[k], f"conc {k}") for k in mine]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            conc = [r for rs in pool.map(client_run, range(args.clients)) for r in rs]
        conc_wall = time.perf_counter() - t0

        with db.transaction() as s:
            counts = dict(s.execute(sa.select(Submission.status, sa.func.count()).group_by(Submission.status)).all())
            n_rows = s.scalar(sa.select(sa.func.count(Submission.id)))
        from grader_api.db import dispose_database

        dispose_database(db_url)

    import shutil

    import redis

    shutil.rmtree(tmp, ignore_errors=True)
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}*"))
    if keys:
        r.delete(*keys)

    sent = 3 + args.submissions + args.concurrent
    errors = [x for x in seq + conc if "error" in x]
    ok_seq = [x for x in seq if x.get("status") == "scored"]
    ok_conc = [x for x in conc if x.get("status") == "scored"]
    stuck = sum(v for k, v in counts.items() if str(k) not in ("scored", "SubmissionStatus.SCORED"))
    lost = sent - len(errors) - n_rows
    e2e = [x["e2e"] * 1000 for x in ok_seq]
    after = [x["after_202"] * 1000 for x in ok_seq]
    upl = [x["upload"] * 1000 for x in ok_seq]
    ce2e = [x["e2e"] * 1000 for x in ok_conc]
    result = {
        "seq_n": len(ok_seq), "p50": _pct(e2e, 0.5), "p95": _pct(e2e, 0.95), "max": max(e2e),
        "after_p50": _pct(after, 0.5), "after_p95": _pct(after, 0.95), "upload_p50": _pct(upl, 0.5),
        "conc_n": len(ok_conc), "conc_p50": _pct(ce2e, 0.5), "conc_p95": _pct(ce2e, 0.95),
        "throughput": len(ok_conc) / conc_wall, "ref_ms": ref_ms,
        "errors": len(errors), "lost": lost, "stuck": stuck,
    }
    report = _markdown(result, args)
    print(report)
    if errors:
        print("errors:", errors[:3])
    if not args.no_write:
        _write_section(REPO / "bench" / "RESULTS.md", report)


def _markdown(r: dict, args) -> str:
    cmd = (f".venv/bin/python bench/service.py --submissions {args.submissions} --concurrent {args.concurrent} "
           f"--clients {args.clients} --workers {args.workers}")
    verdict = "met" if r["p50"] < 300 else "NOT met"
    return "\n".join([
        "## service",
        "",
        f"Command: `{cmd}` (PostgreSQL, Redis, uvicorn and {args.workers} celery worker(s), solo pool, "
        f"all on 127.0.0.1; host CPUs: {os.cpu_count()}). One submission = a {N_ROWS:,}-row CIFAR-100 CSV "
        "(`Id,Prediction1`). Latency = upload sent → first GET showing `scored` (polling every 5 ms).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| sequential submissions scored | {r['seq_n']} |",
        f"| end-to-end p50 / p95 / max | {r['p50']:.0f} / {r['p95']:.0f} / {r['max']:.0f} ms |",
        f"| upload answered (202) p50 | {r['upload_p50']:.0f} ms |",
        f"| 202 → scores visible p50 / p95 | {r['after_p50']:.0f} / {r['after_p95']:.0f} ms |",
        f"| reference: parse + score the same file in-process | {r['ref_ms']:.1f} ms "
        f"(end-to-end p50 = {r['p50'] / r['ref_ms']:.1f}× that) |",
        f"| concurrent: {args.clients} clients, submissions scored | {r['conc_n']} |",
        f"| concurrent end-to-end p50 / p95 | {r['conc_p50']:.0f} / {r['conc_p95']:.0f} ms |",
        f"| concurrent throughput | {r['throughput']:.1f} submissions/s |",
        f"| rejected uploads / lost / stuck | {r['errors']} / {r['lost']} / {r['stuck']} |",
        "",
        f"Target p50 < 300 ms: {verdict}. The file is parsed twice (validation at upload, scoring in "
        "the worker), the rest is two commits, one Redis round trip and polling.",
        "",
    ])


def _write_section(path: Path, section: str) -> None:
    """Replace the `## service` section (up to the next `## `), or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## service"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + section + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    path.write_text(new)


if __name__ == "__main__":
    main()
