"""HTML pages of courses and accounts: the sign-in link (/join/<code>), the account page
(display names, token rotation) and the staff roster (search, roles, sections, drop/re-activate,
roster upload, invites.csv).

The join link is opened by mail scanners and link previews before the student clicks it, so a
GET only shows a button; the code is used by the POST that button sends (with the CSRF token).
A token is shown once, on the page that answers the POST that made it (never cached), and the
browser is logged in with it. Access rules are the services'; the same ones as the JSON API.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from grader_api.errors import ApiError, domain_status
from grader_api.models import Course, User
from grader_api.routers.deps import DatabaseDep, SessionDep, StorageDep
from grader_api.services import invites as invite_service
from grader_api.services import members as member_service
from grader_api.services import roster_import
from grader_api.services.courses import (
    Member,
    get_course,
    memberships,
    require_instructor,
    require_member,
    require_staff,
)
from grader_api.services.errors import DomainError
from grader_api.services.users import user_view
from grader_api.tokens import live_token, rotate_token
from grader_api.web import session as websession
from grader_api.web.pages import FORM_EXPIRED, Viewer, _error, _refused, _to_login, _viewer
from grader_api.web.render import render

router = APIRouter(include_in_schema=False)

_ROLES = ("student", "ta", "instructor")
_STATUSES = ("active", "dropped")


def _public_base(request: Request) -> str:
    return request.app.state.settings.public_url or str(request.base_url)


def _logged_in_as(request: Request, session, v: Viewer, token: str) -> Viewer:
    """End the browser's current session and start one with the token just issued."""
    session.flush()
    row = live_token(session, token)
    assert row is not None  # issued in this transaction
    websession.log_out(session, v.sess)
    user = session.get(User, row.user_id)
    return Viewer(user, websession.log_in(session, row), memberships(session, user))


# --------------------------------------------------------------------------------------------
# sign-in links


@router.get("/join/{code}", response_class=HTMLResponse)
def join_form(request: Request, session: SessionDep, code: str) -> Response:
    v = _viewer(request, session)
    if not invite_service.looks_like_code(code):
        return render(request, "join.html", {**v.ctx(), "code": None, "error": invite_service.InviteNotValid().message},
                      status=404, sess=v.sess)
    return render(request, "join.html", {**v.ctx(), "code": code, "error": None}, sess=v.sess)


@router.post("/join/{code}", response_class=HTMLResponse)
def join(request: Request, session: SessionDep, code: str, csrf_token: Annotated[str, Form()] = "") -> Response:
    from grader_api.auth import client_address

    v = _viewer(request, session)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    limiter, client = request.app.state.limiter, client_address(request)
    retry = limiter.join_retry_after(client)
    if retry is not None:
        resp = render(request, "join.html", {**v.ctx(), "code": None, "error": "Too many sign-in attempts from your "
                                             f"address; try again in {retry} s."}, status=429, sess=v.sess)
        resp.headers["Retry-After"] = str(retry)
        return resp
    try:
        user, token = invite_service.redeem(session, code)
    except invite_service.InviteNotValid as e:
        limiter.count_join_failure(client)
        return render(request, "join.html", {**v.ctx(), "code": None, "error": e.message}, status=404, sess=v.sess)
    new = _logged_in_as(request, session, v, token)
    return render(request, "join_done.html", {**new.ctx(), "token": token, "server": _public_base(request).rstrip("/"),
                                              "me": user_view(session, user)}, sess=new.sess)


# --------------------------------------------------------------------------------------------
# account


def _account(request: Request, session, v: Viewer, *, status: int = 200, **extra: Any) -> HTMLResponse:
    assert v.user is not None
    ctx = {**v.ctx(), "me": user_view(session, v.user), "error": None, "new_token": None, "flash": None, **extra}
    return render(request, "account.html", ctx, status=status, sess=v.sess)


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, session: SessionDep, done: str = "", course: str = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    flash = f"Display name saved for {course}." if done == "name" and course else None
    return _account(request, session, v, flash=flash)


@router.post("/account/display-name", response_class=HTMLResponse)
def account_display_name(request: Request, session: SessionDep, course: Annotated[str, Form(max_length=40)] = "",
                         display_name: Annotated[str, Form(max_length=1000)] = "",
                         csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        member = require_member(session, v.user, get_course(session, course))
        member_service.set_display_name(session, member, display_name)
    except DomainError as e:
        session.rollback()   # a refused name leaves the page showing what is stored
        return _account(request, session, v, status=domain_status(e), error=e.message)
    return RedirectResponse(f"/account?{urlencode({'done': 'name', 'course': course})}", status_code=303)


@router.post("/account/token", response_class=HTMLResponse)
def account_token(request: Request, session: SessionDep, confirm: Annotated[str, Form()] = "",
                  csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    if confirm != "yes":
        return _account(request, session, v, status=400,
                        error="Tick the box to confirm: your current token stops working everywhere.")
    token, _revoked = rotate_token(session, v.user)
    new = _logged_in_as(request, session, v, token)
    return _account(request, session, new, new_token=token)


# --------------------------------------------------------------------------------------------
# staff: rosters


@router.get("/instructor/courses", response_class=HTMLResponse)
def staff_courses(request: Request, session: SessionDep) -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    staff = [m for m in v.memberships if m.is_staff]
    if not staff:
        return _error(request, v, 403, "These pages are for instructors and TAs.")
    return render(request, "roster_courses.html", {**v.ctx(), "courses": staff}, sess=v.sess)


def _staff_of(session, user: User, course: str) -> tuple[Course, Member]:
    found = get_course(session, course)
    return found, require_staff(require_member(session, user, found))


def _roster_ctx(session, v: Viewer, found: Course, member: Member, q: str, role: str, status: str) -> dict[str, Any]:
    entries = member_service.roster(session, found, q=q or None, role=role or None, status=status or None)
    everyone = entries if not (q or role or status) else member_service.roster(session, found)
    # The course's count, whatever the search shows.
    return {**v.ctx(), "course": found, "member": member, "can_edit": member.is_instructor, "members": entries,
            "q": q, "role": role, "status": status, "roles": _ROLES, "statuses": _STATUSES, "result": None,
            "error": None, "flash": None, "count_active_students": sum(
                1 for e in everyone if e.role.value == "student" and e.status.value == "active"),
            "count_shown": len(entries)}


@router.get("/instructor/courses/{course}/roster", response_class=HTMLResponse)
def roster_page(request: Request, session: SessionDep, course: str,
                q: Annotated[str, Query(max_length=100)] = "", role: Annotated[str, Query(max_length=20)] = "",
                status: Annotated[str, Query(max_length=20)] = "", done: str = "", login: str = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    try:
        found, member = _staff_of(session, v.user, course)
        ctx = _roster_ctx(session, v, found, member, q, role if role in _ROLES else "",
                          status if status in _STATUSES else "")
    except DomainError as e:
        return _refused(request, v, e)
    if done == "member" and login:
        ctx["flash"] = f"Saved {login}."
    return render(request, "roster.html", ctx, sess=v.sess)


@router.post("/instructor/courses/{course}/roster", response_class=HTMLResponse)
async def roster_upload(request: Request, db: DatabaseDep, storage: StorageDep, course: str) -> Response:
    from grader_api.routers.courses import read_roster_body

    def caller() -> tuple[Viewer, DomainError | None]:
        # Short reads of their own: no connection is held while the file arrives.
        with db.transaction() as session:
            v = _viewer(request, session)
            try:
                if v.user is not None:
                    require_instructor(_staff_of(session, v.user, course)[1])
            except DomainError as e:
                return v, e
            return v, None

    v, refused = await run_in_threadpool(caller)
    user = v.user
    if user is None:
        return _to_login(request)
    if refused is not None:
        return _refused(request, v, refused)
    try:
        data, filename, fields = await read_roster_body(request, storage)
    except ApiError as e:
        return await run_in_threadpool(_roster_result, request, db, v, user, course, None, e.detail, e.status)
    if not websession.csrf_ok(v.sess, fields.get("csrf_token")):
        return _error(request, v, 403, FORM_EXPIRED)

    def apply() -> roster_import.RosterImportResult:
        parsed = roster_import.parse_roster_file(data, filename)
        return roster_import.import_roster_retrying(db, course, parsed, user)

    try:
        result = await run_in_threadpool(apply)
    except DomainError as e:
        message = e.message if e.line is None or f"line {e.line}" in e.message else f"line {e.line}: {e.message}"
        return await run_in_threadpool(_roster_result, request, db, v, user, course, None, message, domain_status(e))
    return await run_in_threadpool(_roster_result, request, db, v, user, course, result, None, 200)


def _roster_result(request: Request, db, v: Viewer, user: User, course: str,
                   result: roster_import.RosterImportResult | None, error: str | None, status: int) -> HTMLResponse:
    with db.transaction() as session:
        found, member = _staff_of(session, user, course)
        ctx = _roster_ctx(session, v, found, member, "", "", "")
        ctx.update(result=result, error=error)
        return render(request, "roster.html", ctx, status=status, sess=v.sess)


@router.post("/instructor/courses/{course}/members/{login}")
def roster_member(request: Request, session: SessionDep, course: str, login: str,
                  role: Annotated[str, Form(max_length=20)] = "", status: Annotated[str, Form(max_length=20)] = "",
                  section: Annotated[str, Form(max_length=1000)] = "",
                  csrf_token: Annotated[str, Form()] = "") -> Response:
    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        found, member = _staff_of(session, v.user, course)
        member_service.update_member(session, found, login, actor=member, role=role or None, status=status or None,
                                     section=section)
    except DomainError as e:
        session.rollback()
        return _refused(request, v, e)
    where = urlencode({"done": "member", "login": login})
    return RedirectResponse(f"/instructor/courses/{quote(course, safe='')}/roster?{where}", status_code=303)


@router.post("/instructor/courses/{course}/invites.csv")
def roster_invites(request: Request, session: SessionDep, course: str,
                   csrf_token: Annotated[str, Form()] = "") -> Response:
    from grader_api.routers.courses import invites_response

    v = _viewer(request, session)
    if v.user is None:
        return _to_login(request)
    if not websession.csrf_ok(v.sess, csrf_token):
        return _error(request, v, 403, FORM_EXPIRED)
    try:
        found, member = _staff_of(session, v.user, course)
        require_instructor(member)
        issued = invite_service.issue_invites(session, found, base_url=_public_base(request), issuer=v.user)
    except DomainError as e:
        return _refused(request, v, e)
    return invites_response(issued, found.slug)
