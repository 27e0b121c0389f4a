"""Courses as their staff run them: roster import and listing, members' roles, sign-in invites;
and what any member manages of their own: display name, token.

The roster import takes no request session: the body is read (at most 2 MB, refused as soon as
it is larger) with no connection held, between a short read that checks the caller and one
transaction that applies the file (grader_api/db.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from grader_api.auth import CurrentUser
from grader_api.errors import ApiError
from grader_api.models import User
from grader_api.roster import DEFAULT_MAX_BYTES
from grader_api.routers.csv_response import CSV_ROUTE_ERRORS, CsvResponse
from grader_api.routers.deps import DatabaseDep, SessionDep, SettingsDep, StorageDep
from grader_api.routers.multipart import receive_upload
from grader_api.schemas import ErrorOut, RoleName
from grader_api.services import invites as invite_service
from grader_api.services import members as member_service
from grader_api.services import roster_import
from grader_api.services.courses import get_course, require_instructor, require_member, require_staff
from grader_api.storage import LocalStorage
from grader_api.tokens import rotate_token

router = APIRouter(tags=["courses"])

CourseSlug = Path(max_length=40, description="the course's slug")
MemberLogin = Path(max_length=100, description="the member's login (user name)")
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404)}
_CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel")


# --- bodies -------------------------------------------------------------------------------

class RowNote(BaseModel):
    line: int = Field(description="1-based line of the file")
    reason: str


class RosterImportOut(BaseModel):
    course: str
    format: Literal["canvas", "plain"]
    added: int
    unchanged: int
    updated: int
    dropped: int
    dropped_logins: list[str] = Field(description="students marked dropped by this import (kept, not deleted)")
    refused: list[RowNote] = Field(description="rows not imported, each with its line and why")
    skipped: list[RowNote] = Field(description="lines that are not people (Canvas's own lines)")
    drops_withheld: str | None = Field(description="why students missing from the file were not dropped")


class RosterMemberOut(BaseModel):
    login: str
    full_name: str | None
    email: str | None
    display_name: str
    role: RoleName
    status: Literal["active", "dropped"]
    section: str | None
    lms_id: str | None = Field(description="Canvas user id")
    sis_user_id: str | None
    sis_login_id: str | None
    joined: bool = Field(description="holds a live token (signed in through an invite, or was given one)")


class RosterOut(BaseModel):
    course: str
    members: list[RosterMemberOut]


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleName | None = None
    section: str | None = Field(None, max_length=1000, description="empty or null: no section")
    status: Literal["active", "dropped"] | None = None


class DisplayNameIn(BaseModel):
    display_name: str = Field(max_length=1000, description="3–40 printable characters, unique in the course")


class DisplayNameOut(BaseModel):
    course: str
    display_name: str


class RotatedToken(BaseModel):
    name: str
    token: str = Field(description="shown once; store it now (every earlier token stopped working)")
    revoked: int = Field(description="how many earlier tokens were revoked")


def _member_out(entry: member_service.RosterEntry) -> RosterMemberOut:
    return RosterMemberOut(login=entry.login, full_name=entry.full_name, email=entry.email,
                           display_name=entry.display_name, role=entry.role.value, status=entry.status.value,
                           section=entry.section, lms_id=entry.lms_id, sis_user_id=entry.sis_user_id,
                           sis_login_id=entry.sis_login_id, joined=entry.joined)


def import_out(course: str, result: roster_import.RosterImportResult) -> RosterImportOut:
    return RosterImportOut(course=course, format=result.format, added=result.added, unchanged=result.unchanged,
                           updated=result.updated, dropped=result.dropped, dropped_logins=list(result.dropped_logins),
                           refused=[RowNote(line=r.line, reason=r.reason) for r in result.refused],
                           skipped=[RowNote(line=s.line, reason=s.reason) for s in result.skipped],
                           drops_withheld=result.drops_withheld)


# --- the roster file ------------------------------------------------------------------------

def _roster_too_large(limit: int) -> ApiError:
    return ApiError(413, f"roster file too large: the limit is {limit // (1024 * 1024)} MB (a 400-student "
                         "Canvas export is about 40 KB)", "too_large")


async def read_roster_body(request: Request, storage: LocalStorage,
                           limit: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str | None, dict[str, str]]:
    """The roster file of a request: a text/csv body, or the multipart field `file` (with the
    form's text fields). Refused with 413 as soon as more than `limit` bytes arrive."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            received = await receive_upload(request, storage, limit)
        except ApiError as exc:
            raise _roster_too_large(limit) if exc.status == 413 else exc from None
        try:
            return received.path.read_bytes(), received.filename, received.fields
        finally:
            received.path.unlink(missing_ok=True)
    if ctype not in _CSV_TYPES:
        raise ApiError(415, "send the roster as text/csv, or as multipart/form-data with the field 'file'",
                       "unsupported_media_type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _roster_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _roster_too_large(limit)
    return bytes(body), None, {}


_ROSTER_DOC = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string",
                            "description": "a Canvas gradebook export, or name,email[,role][,section]"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the roster CSV (at most 2 MB)"}}}},
}}}


@router.post("/courses/{course}/roster", response_model=RosterImportOut, openapi_extra=_ROSTER_DOC,
             responses={**_ERRORS, 409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}})
async def import_roster(request: Request, user: CurrentUser, db: DatabaseDep, storage: StorageDep,
                        course: str = CourseSlug) -> RosterImportOut:
    """Import a roster (instructor): creates and enrols the people in it, updates sections, LMS
    ids and names, re-activates returning students and marks students missing from the file
    dropped (kept with their submissions). Importing the same file again changes nothing. A file
    that cannot be read is refused (422, with its line) and changes nothing."""

    def check_caller() -> None:
        with db.transaction() as session:
            require_instructor(require_member(session, user, get_course(session, course)))

    await run_in_threadpool(check_caller)
    data, filename, _fields = await read_roster_body(request, storage)
    parsed = await run_in_threadpool(roster_import.parse_roster_file, data, filename)

    result = await run_in_threadpool(roster_import.import_roster_retrying, db, course, parsed, user)
    return import_out(course, result)


@router.get("/courses/{course}/roster", response_model=RosterOut, responses=_ERRORS)
def list_roster(user: CurrentUser, session: SessionDep, course: str = CourseSlug,
                q: Annotated[str | None, Query(max_length=100, description="part of a login, real name, display "
                                                                            "name or section (ignoring case)")] = None,
                role: Annotated[RoleName | None, Query()] = None,
                status: Annotated[Literal["active", "dropped"] | None, Query()] = None) -> RosterOut:
    """The course's members with logins, real names and emails (instructors and TAs)."""
    found = get_course(session, course)
    require_staff(require_member(session, user, found))
    return RosterOut(course=course, members=[_member_out(e) for e in member_service.roster(
        session, found, q=q, role=role, status=status)])


@router.patch("/courses/{course}/members/{login}", response_model=RosterMemberOut,
              responses={**_ERRORS, 409: {"model": ErrorOut}})
def update_member(body: MemberPatch, user: CurrentUser, session: SessionDep, course: str = CourseSlug,
                  login: str = MemberLogin) -> RosterMemberOut:
    """Change a member's role, section or status (instructor). The last instructor stays one."""
    found = get_course(session, course)
    actor = require_member(session, user, found)
    fields = body.model_fields_set
    entry = member_service.update_member(session, found, login, actor=actor, role=body.role, status=body.status,
                                         section=body.section if "section" in fields else ...)
    return _member_out(entry)



_INVITE_HEADERS = {
    "X-Invites-Withheld": {"schema": {"type": "integer"}, "description": "students who got no link because they "
                           "are enrolled in a course you do not instruct too (the site administrator issues theirs)"},
    "X-Invites-Note": {"schema": {"type": "string"}, "description": "why some students got no link; absent if none"},
}


def invites_response(issued: invite_service.IssuedInvites, slug: str) -> PlainTextResponse:
    """invites.csv as a download; how many students got no link (and why) in its headers."""
    headers = {"Content-Disposition": f'attachment; filename="invites-{slug}.csv"',
               "Cache-Control": "private, no-store", "X-Invites-Withheld": str(len(issued.withheld))}
    if issued.note:
        headers["X-Invites-Note"] = issued.note
    return PlainTextResponse(invite_service.invites_csv(issued.links), media_type="text/csv", headers=headers)


@router.post("/courses/{course}/invites", response_class=CsvResponse, responses={
    **CSV_ROUTE_ERRORS, 200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                               "description": "invites.csv: student,email,link", "headers": _INVITE_HEADERS}})
def issue_invites(request: Request, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                  course: str = CourseSlug) -> PlainTextResponse:
    """invites.csv (instructor): a new one-time sign-in link, valid 14 days, for every active student
    who has not joined yet; their earlier unused links stop working. A student also enrolled in a
    course you do not instruct gets no link (a link signs in everywhere): they are counted in the
    header X-Invites-Withheld, and the site administrator issues theirs."""
    found = get_course(session, course)
    require_instructor(require_member(session, user, found))
    base = settings.public_url or str(request.base_url)
    return invites_response(invite_service.issue_invites(session, found, base_url=base, issuer=user), found.slug)


# --- the caller's own ---------------------------------------------------------------------

@router.post("/me/token/rotate", response_model=RotatedToken, responses={401: {"model": ErrorOut}})
def rotate_my_token(user: CurrentUser, session: SessionDep) -> RotatedToken:
    """A new token for the caller; every earlier one (this request's too) stops working."""
    row = session.get(User, user.id)
    if row is None:   # deleted while the request ran: as if the token had been revoked
        raise ApiError(401, "invalid or revoked token", "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    token, revoked = rotate_token(session, row)
    return RotatedToken(name=row.name, token=token, revoked=revoked)


@router.put("/courses/{course}/me/display-name", response_model=DisplayNameOut,
            responses={**_ERRORS, 409: {"model": ErrorOut}})
def set_display_name(body: DisplayNameIn, user: CurrentUser, session: SessionDep,
                     course: str = CourseSlug) -> DisplayNameOut:
    """Choose the name other students see on this course's boards."""
    member = require_member(session, user, get_course(session, course))
    chosen = member_service.set_display_name(session, member, body.display_name)
    return DisplayNameOut(course=course, display_name=chosen)
