"""Student commands of `grade`: login, submit, status, submissions, diff, leaderboard, tasks.

All talk to the server through `grader_api.client.Client`. Every command takes `--json`
(one JSON document on stdout, for scripts and notebooks). Errors are one line on stderr,
never a traceback, with a documented exit code (docs/cli.md):

    0 ok · 1 the submission failed grading · 2 usage or validation error (also: quota full,
    task closed, not allowed, not found) · 3 server unreachable or failing (5xx), or
    authentication failure
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from grader_api.cli import config_store
from grader_api.cli.safe_text import for_rich, for_terminal
from scoring import deadlines

EXIT_OK, EXIT_GRADING_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


# --------------------------------------------------------------------------------------------
# output helpers (rich imported lazily: `grade --help` must stay fast). Every string that came
# from the server (or names a local file) goes through `for_rich` before it reaches Rich markup
# or a table cell, and through `for_terminal` before plain output.


def _console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    # emoji=False: a `:name:` in student text stays as written.
    console = Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)
    if not console.is_terminal:
        # Piped or captured: do not fold cells at 80 columns, so `grep` and logs see whole rows.
        console = Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False, width=200)
    return console


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _die(message: str, exit_code: int, as_json: bool, **extra: Any) -> NoReturn:
    """One line on stderr (and, with --json, an error document on stdout), then exit."""
    if as_json:
        _emit_json({"error": message, "exit_code": exit_code, **{k: v for k, v in extra.items() if v is not None}})
    sys.stderr.write(f"error: {' '.join(for_terminal(message).split())}\n")  # one line, no escape sequences
    raise typer.Exit(exit_code)


def _exit_code_for(err: Exception) -> int:
    from grader_api import client as c

    if isinstance(err, (c.ServerUnreachable, c.ServerError, c.AuthError)):
        return EXIT_UNREACHABLE
    return EXIT_USAGE


def _guard(as_json: bool, fn: Callable[[], int | None]) -> None:
    """Run a command body, turning client errors into one line and an exit code."""
    from grader_api.client import AuthError, ClientError, WaitTimeout

    try:
        code = fn() or EXIT_OK
    except AuthError as e:
        hint = "" if "grade login" in e.message else " (log in again with `grade login --server URL`)"
        _die(f"authentication failed: {e.message}{hint}", EXIT_UNREACHABLE, as_json, status=e.status)
    except WaitTimeout as e:
        _die(e.message, EXIT_USAGE, as_json, code="timeout")
    except ClientError as e:
        _die(e.message, _exit_code_for(e), as_json, status=e.status, code=e.code, line=e.line, column=e.column)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _client(as_json: bool):  # -> grader_api.client.Client
    from grader_api.client import Client

    creds = config_store.load()
    if not creds.server:
        _die("no server configured: run `grade login --server URL` or set GRADE_SERVER", EXIT_UNREACHABLE, as_json)
    if not creds.token:
        _die("no token configured: run `grade login --server URL` or set GRADE_TOKEN", EXIT_UNREACHABLE, as_json)
    return Client(creds.server, creds.token, course=os.environ.get("GRADE_COURSE", "").strip() or None)


def _fmt_score(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return for_rich(v)


def _fmt_delta(v: Any, higher_is_better: bool = True) -> str:
    """Rich markup: green when the change is an improvement, red when worse."""
    if not isinstance(v, (int, float)):
        return "[dim]—[/]"
    if abs(v) < 5e-5:
        return "[dim]±0.0000[/]"
    good = (v > 0) == higher_is_better
    return f"[{'green' if good else 'red'}]{v:+.4f}[/]"


def _fmt_time(s: Any) -> str:
    dt = deadlines.aware_datetime(s) if isinstance(s, str) else None
    return dt.astimezone().strftime("%Y-%m-%d %H:%M") if dt else (for_rich(s) if s else "—")


def _fmt_task_left(task: dict[str, Any], now: datetime | None = None) -> str:
    """Time to the deadline, or to the end of late days, worded as the web pages word it."""
    if task.get("open") is False:
        return "closed"
    return deadlines.deadline_left(task.get("deadline"), task.get("closes_at"), now)


def _status_style(status: str | None) -> str:
    return {"scored": "green", "failed": "red", "running": "yellow", "queued": "cyan"}.get(status or "", "white")


# --------------------------------------------------------------------------------------------
# submission rendering (shared by submit --wait and status)


def _report_part(sub: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The most complete report the caller may see: overall, else public."""
    for key in ("overall", "public"):
        part = sub.get(key)
        if isinstance(part, dict) and part:
            return key, part
    return "public", None


def _render_submission(sub: dict[str, Any]) -> None:
    from rich.table import Table

    out = _console()
    status = sub.get("status")
    title = f"submission {for_rich(sub.get('id'))}"
    if sub.get("task"):
        title += f" · task {for_rich(sub.get('task'))}"
    out.print(f"[bold]{title}[/] · [{_status_style(status)}]{for_rich(status)}[/]")
    if sub.get("note"):
        out.print(f"note: {for_rich(sub['note'])}")
    if sub.get("created_at"):
        out.print(f"submitted: {_fmt_time(sub.get('created_at'))}")
    if status == "failed":
        out.print(f"[red]reason:[/] {for_rich(sub.get('error') or 'no reason recorded')}")
        return
    if status != "scored":
        out.print(f"check again with `grade status {for_rich(sub.get('id'))}`")
        return

    parts = [(k, sub[k]) for k in ("public", "private", "overall") if isinstance(sub.get(k), dict) and sub.get(k)]
    if parts:
        t = Table(title="scores", title_justify="left")
        t.add_column("part")
        metric_names: list[str] = []
        for _, p in parts:
            for m in (p.get("metrics") or {}):
                if m not in metric_names:
                    metric_names.append(m)
        for m in metric_names:
            t.add_column(for_rich(m), justify="right")
        t.add_column("n", justify="right")
        for name, p in parts:
            t.add_row(name, *[_fmt_score((p.get("metrics") or {}).get(m)) for m in metric_names],
                      for_rich(p.get("n", "")))
        out.print(t)

    _, part = _report_part(sub)
    if part and part.get("per_class"):
        per_class = part["per_class"]
        cols: list[str] = []
        for v in per_class.values():
            for m in (v or {}):
                if m not in cols:
                    cols.append(m)
        t = Table(title="per class", title_justify="left")
        t.add_column("class")
        for m in cols:
            t.add_column(for_rich(m), justify="right")
        for cls, v in per_class.items():
            t.add_row(for_rich(cls), *[_fmt_score((v or {}).get(m)) for m in cols])
        out.print(t)
    if part and part.get("most_confused"):
        pairs = ", ".join(f"{p.get('true')} → {p.get('predicted')} ({p.get('count')})"
                          for p in part["most_confused"][:5])
        out.print(f"most confused: {for_rich(pairs)}")
    if part and part.get("withheld"):
        out.print(f"[dim]{for_rich(part['withheld'])}[/]")
    if part and part.get("undefined"):
        undefined = ", ".join(f"{u.get('class')} {u.get('metric')}: {u.get('reason')}" for u in part["undefined"])
        out.print(f"[dim]undefined (left out of the mean): {for_rich(undefined)}[/]")
    overall = sub.get("overall")
    points = overall.get("points") if isinstance(overall, dict) else None  # {earned, max}: once private scores show
    if isinstance(points, dict) and points.get("max") is not None:
        out.print(f"points: {for_rich(points.get('earned'))}/{for_rich(points.get('max'))}")
    stats = sub.get("model_stats")
    if isinstance(stats, dict) and stats:
        out.print("model: " + for_rich(model_summary(stats)))


def model_summary(stats: dict) -> str:
    """What a student compares between model submissions, in words (all fields: --json)."""
    def num(key: str) -> float | None:
        v = stats.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    parts = []
    if (params := num("params")) is not None:
        parts.append(f"{int(params):,} parameters")
    if (ms := num("ms_per_image")) is not None:
        parts.append(f"{ms:.2f} ms/image")
    if (peak := num("peak_memory_mb")) is not None:
        parts.append(f"peak memory {peak:,.0f} MB")
    where = str(stats.get("device") or "")
    if stats.get("autocast"):
        where += f" ({stats['autocast']})"
    if where:
        parts.append(where)
    if (batch := num("batch_size")) is not None:
        parts.append(f"batch {int(batch)}")
    return " · ".join(parts) or ", ".join(f"{k} {v}" for k, v in stats.items())


# --------------------------------------------------------------------------------------------
# commands


def login(
    server: Annotated[str, typer.Option("--server", help="Server URL, e.g. http://127.0.0.1:8000")],
    token: Annotated[str | None, typer.Option("--token", help="Token (prompted for, hidden, when omitted).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store the server and your token (config file, mode 0600) after checking them."""
    from grader_api.client import Client

    if not token:
        token = typer.prompt("token", hide_input=True).strip()
    server = config_store.normalize_server(server)

    def body() -> None:
        with Client(server, token) as c:
            me = c.me()
        path = config_store.save(server, token)
        if as_json:
            _emit_json({"server": server, "user": me, "config": str(path)})
        else:
            _console().print(f"logged in to {for_rich(server)} as [bold]{for_rich(me.get('name'))}[/] "
                             f"({for_rich(me.get('role'))}); saved to {for_rich(path)}")

    _guard(as_json, body)


def submit(
    file: Annotated[Path, typer.Argument(help="Predictions (.csv, .npy, .npz) or model file.")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see `grade tasks`).")],
    note: Annotated[str | None, typer.Option("-m", "--note", help="What changed, e.g. '+BatchNorm'.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait for the score and print it.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")] = 600.0,
    skip_check: Annotated[bool, typer.Option("--no-check", help="Skip the local format check.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check FILE locally, upload it to TASK, and (with --wait) show its scores."""
    if not file.is_file():
        _die(f"{file}: no such file", EXIT_USAGE, as_json)

    def body() -> int:
        from grader_api.client import ValidationFailed

        with _client(as_json) as c:
            info = c.task(task)
            if not skip_check:
                from grader_api.cli.local_check import check_file

                try:
                    check_file(file, info)
                except ValidationFailed as e:
                    _die(f"{e.message} (checked locally; nothing was uploaded)", EXIT_USAGE, as_json,
                         code=e.code, line=e.line, column=e.column)
            created = _upload(c, file, task, note, quiet=as_json)
            sub_id = created.get("id")
            if not wait:
                if as_json:
                    _emit_json(created)
                else:
                    _console().print(f"submitted [bold]{for_rich(sub_id)}[/] to {for_rich(task)} "
                                     f"({for_rich(created.get('status', 'queued'))}); "
                                     f"check it with `grade status {for_rich(sub_id)}`")
                return EXIT_OK
            sub = _wait(c, sub_id, timeout, quiet=as_json)
        if as_json:
            _emit_json(sub)
        else:
            _render_submission(sub)
        return EXIT_GRADING_FAILED if sub.get("status") == "failed" else EXIT_OK

    _guard(as_json, body)


_PROGRESS_MIN_BYTES = 1 << 20  # below 1 MiB the upload is instant; a bar would only flicker


def _upload(c, file: Path, task: str, note: str | None, quiet: bool) -> dict[str, Any]:
    size = file.stat().st_size
    err = _console(stderr=True)
    if quiet or size < _PROGRESS_MIN_BYTES or not err.is_terminal:
        return c.submit(file, task, note)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err, transient=True) as bar:
        tid = bar.add_task(for_rich(file.name), total=size)
        return c.submit(file, task, note, progress=lambda sent, total: bar.update(tid, completed=min(sent, total)))


def _wait(c, sub_id: Any, timeout: float, quiet: bool) -> dict[str, Any]:
    if quiet:
        return c.wait(sub_id, timeout)
    err = _console(stderr=True)
    with err.status(f"submission {for_rich(sub_id)}: queued") as live:
        def on_status(sub: dict[str, Any]) -> None:
            state = sub.get("status")
            live.update(f"submission {for_rich(sub_id)}: [{_status_style(state)}]{for_rich(state)}[/]")

        return c.wait(sub_id, timeout, on_status=on_status)


def status(
    submission_id: Annotated[int | None, typer.Argument(help="Submission id (default: your latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one submission: status, scores, per-class table, failure reason."""

    def body() -> int:
        with _client(as_json) as c:
            sid = submission_id
            if sid is None:
                sid = _latest_id(c)
                if sid is None:
                    _die("you have no submissions yet", EXIT_USAGE, as_json)
            sub = c.submission(sid)
        if as_json:
            _emit_json(sub)
        else:
            _render_submission(sub)
        return EXIT_GRADING_FAILED if sub.get("status") == "failed" else EXIT_OK

    _guard(as_json, body)


def _latest_id(c) -> int | None:
    """Your most recent submission over all tasks (the history endpoint is per task)."""
    latest: tuple[str, int] | None = None
    for t in c.tasks():
        for r in c.history(t["name"]):
            key = (str(r.get("created_at") or ""), int(r.get("id") or 0))
            latest = max(latest, key) if latest else key
    return latest[1] if latest else None


def _row_score(row: dict[str, Any]) -> Any:
    for k in ("public_primary", "primary", "score", "public_score"):
        if k in row:
            return row[k]
    pub = row.get("public")
    return pub.get("primary") if isinstance(pub, dict) else None


def _row_change(row: dict[str, Any]) -> Any:
    for k in ("change", "delta", "change_from_previous"):
        if k in row:
            return row[k]
    return None


def submissions(
    task: Annotated[str, typer.Option("--task", "-t", help="Task name.")],
    as_json: JsonOpt = False,
) -> None:
    """Your submissions to TASK as an ablation table: note, time, public score, change."""
    from rich.table import Table

    def body() -> None:
        with _client(as_json) as c:
            rows = c.history(task)
            hib = True
            try:
                hib = bool(c.task(task).get("higher_is_better", True))
            except Exception:  # the table is still useful without the direction
                pass
        if as_json:
            _emit_json({"task": task, "submissions": rows})
            return
        if not rows:
            _console().print(f"no submissions to {for_rich(task)} yet")
            return
        t = Table(title=f"{for_rich(task)}: your submissions", title_justify="left")
        for col, right in (("#", True), ("id", True), ("time", False), ("note", False),
                           ("public", True), ("change", True), ("status", False)):
            t.add_column(col, justify="right" if right else "left")
        for i, r in enumerate(rows, 1):
            st = r.get("status")
            sel = " ★" if r.get("selected") else ""
            t.add_row(str(i), for_rich(r.get("id")), _fmt_time(r.get("created_at")),
                      for_rich(r.get("note") or "") + sel,
                      _fmt_score(_row_score(r)), _fmt_delta(_row_change(r), hib),
                      f"[{_status_style(st)}]{for_rich(st)}[/]")
        _console().print(t)

    _guard(as_json, body)


def diff(
    a: Annotated[int, typer.Argument(help="Older submission id.")],
    b: Annotated[int, typer.Argument(help="Newer submission id.")],
    as_json: JsonOpt = False,
) -> None:
    """Per-class differences between two of your submissions (B − A)."""
    from rich.table import Table

    def body() -> None:
        with _client(as_json) as c:
            d = c.diff(a, b)
        if as_json:
            _emit_json(d)
            return
        hib = bool(d.get("higher_is_better", True))
        out = _console()
        prim = d.get("primary") or {}
        if isinstance(prim, dict) and prim:
            out.print(f"primary: {_fmt_score(prim.get('a'))} → {_fmt_score(prim.get('b'))}  "
                      f"{_fmt_delta(prim.get('delta'), hib)}")
        t = Table(title=f"per class: {a} → {b}", title_justify="left")
        t.add_column("class")
        rows = _diff_rows(d)
        metrics = sorted({m for _, per in rows for m in per})
        for m in metrics:
            t.add_column(f"{for_rich(m)} {a}", justify="right")
            t.add_column(f"{for_rich(m)} {b}", justify="right")
            t.add_column("Δ", justify="right")
        for cls, per in rows:
            cells: list[str] = []
            for m in metrics:
                v = per.get(m) or {}
                cells += [_fmt_score(v.get("a")), _fmt_score(v.get("b")), _fmt_delta(v.get("delta"), hib)]
            t.add_row(for_rich(cls), *cells)
        if rows or not d.get("withheld"):
            out.print(t)
        else:
            out.print(f"[dim]{for_rich(d['withheld'])}[/]")

    _guard(as_json, body)


def _diff_rows(d: dict[str, Any]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """Normalise the diff body to [(class, {metric: {a, b, delta}})], accepting a dict or a list of rows."""
    per = d.get("per_class") or {}
    out: list[tuple[str, dict[str, dict[str, Any]]]] = []
    if isinstance(per, dict):
        for cls, v in per.items():
            if isinstance(v, dict) and {"a", "b"} & set(v):  # single-metric shape {a, b, delta}
                out.append((cls, {d.get("metric", "score"): v}))
            else:
                out.append((cls, {m: mv for m, mv in (v or {}).items() if isinstance(mv, dict)}))
    elif isinstance(per, list):
        for r in per:
            cls = str(r.get("class"))
            metric = r.get("metric", d.get("metric", "score"))
            out.append((cls, {metric: r}))
    return out


def leaderboard(
    task: Annotated[str, typer.Option("--task", "-t", help="Task name.")],
    private: Annotated[bool, typer.Option("--private", help="The private board (after the deadline).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The leaderboard of TASK (public part of the split, or --private)."""
    from rich.table import Table

    def body() -> None:
        board = "private" if private else "public"
        with _client(as_json) as c:
            lb = c.leaderboard(task, board)
            info: dict[str, Any] = {}
            try:  # the deadline is on the task, not on the board
                info = c.task(task)
                lb.setdefault("deadline", info.get("deadline"))
            except Exception:
                pass
        if as_json:
            _emit_json(lb)
            return
        rows = lb.get("rows") or []
        t = Table(title=f"{for_rich(task)} · {board} leaderboard", title_justify="left")
        for col, right in (("rank", True), ("name", False), (for_rich(lb.get("metric") or "score"), True),
                           ("entries", True), ("last", False)):
            t.add_column(col, justify="right" if right else "left")
        for r in rows:
            name = r.get("user") or r.get("name")
            if isinstance(name, dict):
                name = name.get("name")
            style = "bold reverse" if r.get("is_me") else None
            t.add_row(for_rich(r.get("rank", "")), for_rich(name), _fmt_score(r.get("score")),
                      for_rich(r.get("entries", "")),
                      _fmt_time(r.get("submitted_at") or r.get("last_submission_at")), style=style)
        out = _console()
        out.print(t)
        if not rows:
            out.print("no scored submissions yet")
        if lb.get("deadline"):
            left = _fmt_task_left({**info, "deadline": lb["deadline"]})
            out.print(f"deadline {_fmt_time(lb['deadline'])} ({left})")

    _guard(as_json, body)


def tasks(as_json: JsonOpt = False) -> None:
    """Open tasks, their deadlines and the submissions you have left today."""
    from rich.table import Table

    def body() -> None:
        with _client(as_json) as c:
            items = c.tasks()
        if as_json:
            _emit_json({"tasks": items})
            return
        t = Table(title="tasks", title_justify="left")
        for col in ("task", "title", "metric", "deadline", "left", "today", "accepts"):
            t.add_column(col)
        for x in items:
            limit, left = x.get("daily_limit"), x.get("submissions_left_today")
            today = "unlimited" if limit is None and left is None else f"{left}/{limit}" if limit else str(left)
            metric = f"{x.get('metric')} {'↑' if x.get('higher_is_better', True) else '↓'}"
            accepts = x.get("accepts")
            accepts_txt = ", ".join(map(str, accepts)) if isinstance(accepts, list) else str(accepts or "")
            t.add_row(for_rich(x.get("name")), for_rich(x.get("title") or ""), for_rich(metric),
                      _fmt_time(x.get("deadline")), _fmt_task_left(x), for_rich(today), for_rich(accepts_txt))
        out = _console()
        out.print(t)
        if not items:
            out.print("no tasks yet")

    _guard(as_json, body)


def register(app: typer.Typer) -> None:
    app.command("login", rich_help_panel="Students")(login)
    app.command("submit", rich_help_panel="Students")(submit)
    app.command("status", rich_help_panel="Students")(status)
    app.command("submissions", rich_help_panel="Students")(submissions)
    app.command("diff", rich_help_panel="Students")(diff)
    app.command("leaderboard", rich_help_panel="Students")(leaderboard)
    app.command("tasks", rich_help_panel="Students")(tasks)
