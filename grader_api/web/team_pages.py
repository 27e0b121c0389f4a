"""Team pages: a student's team for a task (create, join by code, members, leave) and the staff
list of a task's teams (create with members, rename, add or move, remove, dissolve).

Thin like grader_api/web/pages.py, whose log-in, error and CSRF helpers these pages share: the
team service decides who may do what, the same functions the JSON API calls. Every POST
checks the CSRF token and answers with a redirect (the outcome named by a fixed `done` word,
never text from the request) or, when refused, the page again with the refusal. The team
service checks everything before it writes, so a refused form stores nothing although the
request's unit of work still commits.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from grader_api.errors import ApiError, domain_status
from grader_api.routers.deps import SessionDep
from grader_api.services import teams as team_service
from grader_api.services.courses import require_staff, resolve_task
from grader_api.services.errors import DomainError
from grader_api.web import session as websession
from grader_api.web.pages import FORM_EXPIRED, Viewer, _error, _refused, _to_login, _viewer
from grader_api.web.render import render

router = APIRouter(include_in_schema=False)

CourseParam = Annotated[str | None, Query(max_length=40)]
_DONE = {"created": "Team created: share the join code with your teammates.", "joined": "You joined the team.",
         "left": "You left the team.", "dissolved": "You were its last member: the team is dissolved.",
         "changed": "Team changed.", "removed": "Team dissolved."}


def _team_url(task: str, course: str, done: str | None = None) -> str:
    query = {"course": course, **({"done": done} if done else {})}
    return f"/tasks/{quote(task, safe='')}/team?{urlencode(query)}"


def _staff_url(task: str, course: str, done: str | None = None) -> str:
    query = {"course": course, **({"done": done} if done else {})}
    return f"/instructor/tasks/{quote(task, safe='')}/teams?{urlencode(query)}"


def _names(text: str) -> list[str]:
    """Login names from a form field: separated by commas, spaces or new lines."""
    return [n for n in text.replace(",", " ").split() if n][: team_service.MAX_NAMES + 1]


# --------------------------------------------------------------------------------------------
# students


def _team_page(request: Request, session, v: Viewer, name: str, course: str | None, *, done: str = "",
               error: DomainError | ApiError | None = None) -> Response:
    from grader_api.services import tasks as task_service

    assert v.user is not None  # anonymous viewers were sent to log in
    try:
        task, member = resolve_task(session, v.user, name, course)
    except DomainError as e:
        return _refused(request, v, e)
    ctx: dict[str, Any] = {**v.ctx(), "task": task_service.task_summary(session, task, member),
                           "mine": team_service.my_team(session, task, member),
                           "teams_open": _teams_open(task), "flash": _DONE.get(done), "flash_kind": None}
    status = 200
    if error is not None:
        status = domain_status(error) if isinstance(error, DomainError) else error.status
        ctx.update(flash=error.message if isinstance(error, DomainError) else error.detail, flash_kind="error")
    return render(request, "team.html", ctx, status=status, sess=v.sess)


def _teams_open(task) -> bool:
    try:
        team_service.check_teams_open(task)
    except DomainError:
        return False
    return True


@router.get("/tasks/{name}/team", response_class=HTMLResponse)
def team_page(request: Request, session: SessionDep, name: str, course: CourseParam = None,
              done: Annotated[str, Query(max_length=20)] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    return _team_page(request, session, v, name, course, done=done)


@router.post("/tasks/{name}/team/create")
def create_team(request: Request, session: SessionDep, name: str, course: CourseParam = None,
                team_name: Annotated[str, Form(max_length=400)] = "",
                csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        task, member = resolve_task(session, v.user, name, course)
        team_service.create_team(session, task, member, team_name)
    except DomainError as e:
        return _team_page(request, session, v, name, course, error=e)
    return RedirectResponse(_team_url(task.name, member.course_slug, "created"), status_code=303)


@router.post("/teams/join")
def join_team(request: Request, session: SessionDep, code: Annotated[str, Form(max_length=200)] = "",
              csrf_token: Annotated[str, Form()] = "", task: Annotated[str, Form(max_length=100)] = "",
              course: Annotated[str, Form(max_length=40)] = "") -> Response:
    """Join by code from a task's team page (`task`/`course`: where to show a refusal)."""
    from grader_api.routers.teams import join_with_code

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        team, joined_task, member = join_with_code(request, session, v.user, code)
    except (DomainError, ApiError) as e:
        if not task:
            return _error(request, v, domain_status(e) if isinstance(e, DomainError) else e.status,
                          e.message if isinstance(e, DomainError) else e.detail)
        return _team_page(request, session, v, task, course or None, error=e)
    return RedirectResponse(_team_url(joined_task.name, member.course_slug, "joined"), status_code=303)


@router.post("/tasks/{name}/team/leave")
def leave_team(request: Request, session: SessionDep, name: str, course: CourseParam = None,
               csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        task, member = resolve_task(session, v.user, name, course)
        out = team_service.leave_team(session, task, member)
    except DomainError as e:
        return _team_page(request, session, v, name, course, error=e)
    return RedirectResponse(_team_url(task.name, member.course_slug, "dissolved" if out.dissolved else "left"),
                            status_code=303)


# --------------------------------------------------------------------------------------------
# staff


def _staff_page(request: Request, session, v: Viewer, name: str, course: str | None, *, done: str = "",
                error: DomainError | None = None) -> Response:
    from grader_api.services import tasks as task_service

    assert v.user is not None  # anonymous viewers were sent to log in
    try:
        task, member = resolve_task(session, v.user, name, course)
        require_staff(member)
    except DomainError as e:
        return _refused(request, v, e)
    ctx: dict[str, Any] = {**v.ctx(), "task": task_service.task_summary(session, task, member),
                           "teams": team_service.list_teams(session, task, member),
                           "flash": _DONE.get(done), "flash_kind": None}
    status = 200
    if error is not None:
        status = domain_status(error)
        ctx.update(flash=error.message, flash_kind="error")
    return render(request, "team_staff.html", ctx, status=status, sess=v.sess)


@router.get("/instructor/tasks/{name}/teams", response_class=HTMLResponse)
def staff_teams(request: Request, session: SessionDep, name: str, course: CourseParam = None,
                done: Annotated[str, Query(max_length=20)] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    return _staff_page(request, session, v, name, course, done=done)


@router.post("/instructor/tasks/{name}/teams")
def staff_create(request: Request, session: SessionDep, name: str, course: CourseParam = None,
                 team_name: Annotated[str, Form(max_length=400)] = "",
                 members: Annotated[str, Form(max_length=10_000)] = "",
                 csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        task, member = resolve_task(session, v.user, name, course)
        team_service.create_team(session, task, require_staff(member), team_name, _names(members))
    except DomainError as e:
        return _staff_page(request, session, v, name, course, error=e)
    return RedirectResponse(_staff_url(task.name, member.course_slug, "created"), status_code=303)


@router.post("/instructor/teams/{team_id}")
def staff_edit(request: Request, session: SessionDep, team_id: int,
               team_name: Annotated[str, Form(max_length=400)] = "",
               add: Annotated[str, Form(max_length=10_000)] = "", remove: Annotated[str, Form(max_length=10_000)] = "",
               dissolve: Annotated[str, Form(max_length=10)] = "", csrf_token: Annotated[str, Form()] = "") -> Response:
    """One form per team: rename, add (or move here), remove; or dissolve."""
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    if not 1 <= team_id <= 2**31 - 1:
        return _error(request, v, 404, f"team {team_id} not found")
    try:
        team, task, member = team_service.team_for_staff(session, team_id, v.user)
    except DomainError as e:
        return _refused(request, v, e)
    task_name, slug = task.name, member.course_slug
    try:
        if dissolve:
            team_service.dissolve_team(session, team)
        else:
            team_service.edit_team(session, team, task, name=team_name.strip() or None,
                                   add=_names(add), remove=_names(remove))
    except DomainError as e:
        return _staff_page(request, session, v, task_name, slug, error=e)
    return RedirectResponse(_staff_url(task_name, slug, "removed" if dissolve else "changed"), status_code=303)
