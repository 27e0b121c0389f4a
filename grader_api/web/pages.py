"""Server-rendered HTML pages: tasks, leaderboards, submissions, history, instructor views.

Thin handlers: the services decide who may see what (the same functions the JSON API calls);
this module turns their plain data into templates and SVG charts. Log-in is by API token and
keeps a signed session cookie (see `session.py`); every POST form carries the CSRF token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from grader_api.errors import domain_status
from grader_api.models import Task, User
from grader_api.routers.deps import SessionDep, SubmissionId
from grader_api.schemas import LeaderboardRow, SubmissionOut
from grader_api.services.courses import Member, memberships, require_staff, resolve_task
from grader_api.services.errors import DomainError
from grader_api.web import charts, queries
from grader_api.web import session as websession
from grader_api.web.render import render
from scoring.metrics.info import PER_CLASS_KEY, PER_CLASS_KEYS

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 2
# What a POST with a missing or stale CSRF token is told (every form of every page module).
FORM_EXPIRED = "The form expired; reload the page and try again."


@dataclass
class Viewer:
    user: User | None
    sess: websession.WebSession
    memberships: list[Member]

    def ctx(self) -> dict[str, Any]:
        u = self.user
        return {"user": {"id": u.id, "name": u.name, "staff": self.is_staff_anywhere} if u else None,
                "csrf_token": self.sess.csrf}

    @property
    def is_staff_anywhere(self) -> bool:
        """Instructor or TA of some course: the staff pages are worth linking to."""
        return any(m.is_staff for m in self.memberships)


def _viewer(request: Request, session) -> Viewer:
    sess = websession.load(request)
    user = websession.user_of(session, sess)
    return Viewer(user, sess, memberships(session, user) if user is not None else [])


def _staff_task(session, v: Viewer, name: str, course: str | None) -> tuple[Task, Member]:
    """The task and the viewer's membership, refused unless the viewer is staff of its course."""
    assert v.user is not None  # the pages send anonymous visitors to the log-in first
    task, member = resolve_task(session, v.user, name, course)
    return task, require_staff(member)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _refused(request: Request, v: Viewer, e: DomainError) -> HTMLResponse:
    """A service's refusal as a page, with the status the JSON API gives it."""
    return _error(request, v, domain_status(e), e.message)


def _error(request: Request, v: Viewer, status: int, message: str) -> HTMLResponse:
    heading = {403: "Not allowed", 404: "Not found", 409: "Not possible now"}.get(status, "Something went wrong")
    return render(request, "error.html", {**v.ctx(), "status": status, "heading": heading, "message": message},
                  status=status, sess=v.sess)


def _safe_next(url: str | None) -> str:
    """Only local paths: `//evil.example` and absolute URLs would make the form an open redirect."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


# --------------------------------------------------------------------------------------------
# log in / out


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    v = _viewer(request, session)
    if v.user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {**v.ctx(), "next_url": _safe_next(next)}, sess=v.sess)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, token: Annotated[str, Form()] = "",
          csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    from grader_api.auth import client_address
    from grader_api.tokens import hash_token, live_token

    v = _viewer(request, session)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    limiter, client = request.app.state.limiter, client_address(request)
    retry = limiter.auth_retry_after(client)
    index = request.app.state.token_index
    if retry is not None and not index.may_be_live(request.app.state.db, hash_token(token.strip())):
        # a throttled address: decided without a per-request lookup (see LiveTokenIndex)
        resp = render(request, "login.html", {**v.ctx(), "next_url": _safe_next(next),
                                              "error": f"Too many failed log-ins from your address; "
                                                       f"try again in {retry} s."},
                      status=429, sess=v.sess)
        resp.headers["Retry-After"] = str(retry)
        return resp
    row = live_token(session, token.strip())
    if row is None:
        limiter.count_auth_failure(client)
        return render(request, "login.html", {**v.ctx(), "next_url": _safe_next(next),
                                              "error": "That token is not valid (or was revoked)."},
                      status=401, sess=v.sess)
    websession.log_out(session, v.sess)  # this browser's previous session, if any, ends here
    new = websession.log_in(session, row)  # a new session id and CSRF secret after log-in
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    websession.store(request, redirect, new)
    return redirect


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    websession.log_out(session, v.sess)
    resp = RedirectResponse("/login", status_code=303)
    websession.clear(resp)
    return resp


# --------------------------------------------------------------------------------------------
# student pages


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep) -> Response:
    from grader_api.services.tasks import list_tasks

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    return render(request, "tasks.html", {**v.ctx(), "tasks": list_tasks(session, v.user)}, sess=v.sess)


def _sort_rows(rows: list[LeaderboardRow], sort: str, direction: str, per_class: dict[str, dict],
               classes: list[str]) -> None:
    def value(r: LeaderboardRow) -> Any:
        if sort == "name":
            return r.user.casefold()
        if sort == "entries":
            return r.entries
        if sort == "last":
            return r.submitted_at
        if sort == "score":
            return r.score
        if sort.startswith("c") and sort[1:].isdigit() and int(sort[1:]) < len(classes):
            return per_class.get(r.display_name, {}).get(classes[int(sort[1:])])
        return r.rank

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]  # undefined per-class values sort last either way
    present.sort(key=value, reverse=direction == "desc")
    rows[:] = present + missing


@router.get("/tasks/{name}", response_class=HTMLResponse)
def leaderboard_page(request: Request, session: SessionDep, name: str, board: str = "public", sort: str = "rank",
                     dir: str = "", classes: int = 0, course: str | None = None) -> Response:
    from grader_api.services import leaderboard as board_service
    from grader_api.services import tasks as task_service
    from grader_api.services.submissions import can_see_private

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        task, member = resolve_task(session, v.user, name, course)
        summary = task_service.task_summary(session, task, member)
    except DomainError as e:
        return _refused(request, v, e)
    board = "private" if board == "private" else "public"
    can_private = can_see_private(task, member)
    ctx: dict[str, Any] = {**v.ctx(), "task": summary, "board": board, "can_private": can_private,
                           "rows": [], "classes": [], "per_class": {}, "show_classes": bool(classes),
                           "hidden_reason": None}
    if board == "private" and not can_private:
        ctx["hidden_reason"] = "The private leaderboard is shown to everyone once the task closes."
        return render(request, "leaderboard.html", ctx, status=403, sess=v.sess)
    lb = board_service.leaderboard(session, task, board, member)
    class_names = list(task.spec.get("classes", []))
    # Per-class values of the public part would show which items are public; a task may opt in.
    classes_available = board == "private" or bool(task.spec.get("public_detail"))
    classes = classes if classes_available else 0
    per_class = queries.board_per_class(session, task, board) if classes else {}
    default_dir = "asc" if sort in ("rank", "name") else "desc"
    if sort == "score" and not task.higher_is_better:
        default_dir = "asc"
    direction = dir if dir in ("asc", "desc") else default_dir
    rows = lb.rows
    _sort_rows(rows, sort, direction, per_class, class_names)

    def sort_link(key: str) -> str:
        flip = "desc" if (sort == key and direction == "asc") else "asc"
        if sort != key:
            flip = "asc" if key in ("rank", "name") or (key == "score" and not task.higher_is_better) else "desc"
        q: dict[str, str | int] = {"course": member.course_slug, "board": board, "sort": key, "dir": flip}
        if classes:
            q["classes"] = 1
        return f"?{urlencode(q)}"

    ctx.update(rows=rows, classes=class_names if classes else [], per_class=per_class, sort=sort, dir=direction,
               classes_available=classes_available, show_classes=bool(classes),
               sort_link=sort_link, metric=lb.metric, per_class_metric=PER_CLASS_KEY.get(task.metric),
               toggle_link="?" + urlencode({"course": member.course_slug, "board": board, "sort": sort,
                                            "dir": direction, **({} if classes else {"classes": 1})}))
    return render(request, "leaderboard.html", ctx, sess=v.sess)


# How the charts name a per-class key (the others as they are).
_CHART_LABEL = {"ap": "AP", "iou": "IoU"}


def _charts_for(view: SubmissionOut, kind: str, classes: list[str]) -> dict[str, Any]:
    """SVGs for the most complete report part the viewer may see (overall after the reveal, else public)."""
    part_name = "overall" if view.overall else "public"
    part = view.overall or view.public or {}
    per_class = part.get("per_class") or {}
    names = [c for c in classes if c in per_class] or list(per_class)
    out: dict[str, Any] = {"part_name": part_name, "part": part}
    if not per_class:
        return out
    keys = PER_CLASS_KEYS.get(kind, ("accuracy",))
    series: dict[str, Sequence[float | None]] = {
        _CHART_LABEL.get(key, key): [per_class[c].get(key) for c in names] for key in keys}
    out["bars"] = charts.bar_chart(names, series, title=f"per-class {' and '.join(series)} ({part_name})")
    conf = part.get("confusion") or {}
    if conf.get("matrix"):
        cls = list(conf.get("classes") or names)
        index = {c: i for i, c in enumerate(cls)}
        pairs = [(index[p["true"]], index[p["predicted"]]) for p in (part.get("most_confused") or [])[:5]
                 if p.get("true") in index and p.get("predicted") in index]
        out["heatmap"] = charts.heatmap(cls, conf["matrix"],
                                        title=f"confusion matrix ({part_name}): rows true, columns predicted",
                                        highlight=pairs)
    return out


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(request: Request, session: SessionDep, submission_id: SubmissionId) -> Response:
    from grader_api.services.submissions import get_visible, submission_view

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        sub, member = get_visible(session, submission_id, v.user)
    except DomainError as e:
        return _refused(request, v, e)
    view = submission_view(sub, member)
    classes = list(sub.task.spec.get("classes", []))
    ctx = {**v.ctx(), "sub": view, "kind": sub.task.kind, "task_title": sub.task.title,
           "refresh": REFRESH_SECONDS if view.status in ("queued", "running") else None,
           **_charts_for(view, sub.task.kind, classes)}
    return render(request, "submission.html", ctx, sess=v.sess)


@router.get("/tasks/{name}/history", response_class=HTMLResponse)
def history_page(request: Request, session: SessionDep, name: str, course: str | None = None) -> Response:
    from grader_api.services import submissions as submission_service
    from grader_api.services import tasks as task_service

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        task, member = resolve_task(session, v.user, name, course)
    except DomainError as e:
        return _refused(request, v, e)
    rows = submission_service.history(session, task, v.user)
    tips = [f"#{i} · {r.note or 'no note'} · {r.public_score:.4f}" if r.public_score is not None
            else f"#{i} · {r.note or 'no note'} · {r.status}" for i, r in enumerate(rows, 1)]
    chart = charts.line_chart([(str(i), r.public_score) for i, r in enumerate(rows, 1)],
                              title=f"public {task.metric} over your submissions", tooltips=tips,
                              higher_is_better=task.higher_is_better)
    ctx = {**v.ctx(), "task": task_service.task_summary(session, task, member), "rows": rows, "chart": chart,
           "higher_is_better": task.higher_is_better}
    return render(request, "history.html", ctx, sess=v.sess)


# --------------------------------------------------------------------------------------------
# instructor pages


@router.get("/instructor", response_class=HTMLResponse)
def instructor_index(request: Request, session: SessionDep) -> Response:
    from grader_api.services.courses import get_course
    from grader_api.services.tasks import get_task, list_tasks

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not v.is_staff_anywhere:
        return _error(request, v, 403, "These pages are for instructors and TAs.")
    tasks = [t for t in list_tasks(session, v.user) if t.role in ("instructor", "ta")]
    counts = {(t.course, t.name): queries.status_counts(
        session, get_task(session, t.name, get_course(session, t.course))) for t in tasks}
    return render(request, "instructor_index.html", {**v.ctx(), "tasks": tasks, "counts": counts}, sess=v.sess)


@router.get("/instructor/tasks/{name}", response_class=HTMLResponse)
def instructor_task(request: Request, session: SessionDep, name: str,
                    status: Annotated[str, Query()] = "", student: Annotated[str, Query()] = "",
                    done: Annotated[str, Query()] = "", n: Annotated[int, Query()] = 0,
                    course: Annotated[str | None, Query()] = None) -> Response:
    from grader_api.services import leaderboard as board_service
    from grader_api.services import submissions as submission_service
    from grader_api.services import tasks as task_service

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        task, member = _staff_task(session, v, name, course)
        subs = submission_service.list_for_task(session, task, user_name=student or None, status=status or None)
    except DomainError as e:
        return _refused(request, v, e)
    failed = submission_service.list_for_task(session, task, status="failed", limit=50)
    best = [r.score for r in board_service.leaderboard(session, task, "public", member).rows]
    all_scores = [s.public_score for s in submission_service.list_for_task(session, task, status="scored",
                                                                            limit=100_000)]
    lo_hi = (0.0, 1.0) if all(0.0 <= x <= 1.0 for x in best + [s for s in all_scores if s is not None]) else None
    ctx = {**v.ctx(), "task": task_service.task_summary(session, task, member), "subs": subs, "failed": failed,
           "status": status, "student": student, "statuses": ("queued", "running", "scored", "failed"),
           "students": queries.student_names(session, task.course_id), "counts": queries.status_counts(session, task),
           "hist_best": charts.histogram(best, bins=20, value_range=lo_hi,
                                         title=f"best public {task.metric} per student ({len(best)})"),
           "hist_all": charts.histogram(all_scores, bins=20, value_range=lo_hi,
                                        title=f"public {task.metric} of every scored submission ({len(all_scores)})"),
           "flash": f"Re-queued {n} submission(s) for rescoring." if done == "rescore" else None}
    return render(request, "instructor_task.html", ctx, sess=v.sess)


@router.post("/instructor/tasks/{name}/rescore")
def instructor_rescore(request: Request, session: SessionDep, name: str, csrf_token: Annotated[str, Form()] = "",
                       course: Annotated[str | None, Query()] = None) -> Response:
    from grader_api.services import submissions as submission_service

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        task, member = _staff_task(session, v, name, course)
    except DomainError as e:
        return _refused(request, v, e)
    count = submission_service.rescore_task(session, request.app.state.relay, task)
    where = urlencode({"course": member.course_slug, "done": "rescore", "n": count})
    return RedirectResponse(f"/instructor/tasks/{quote(name)}?{where}", status_code=303)


@router.get("/instructor/tasks/{name}/grades.csv")
def instructor_grades(request: Request, session: SessionDep, name: str,
                      course: Annotated[str | None, Query()] = None) -> Response:
    from grader_api.services import leaderboard as board_service

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        task, _member = _staff_task(session, v, name, course)
    except DomainError as e:
        return _refused(request, v, e)
    return PlainTextResponse(board_service.grades_csv(session, task), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{task.name}-grades.csv"',
                                      "Cache-Control": "private, no-store"})
