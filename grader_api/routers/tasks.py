"""Tasks: listing, detail, instructor create/update, leaderboards, rescore, grade export."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from grader_api.auth import CurrentUser
from grader_api.errors import ApiError
from grader_api.routers.csv_response import CSV_ROUTE_ERRORS, CsvResponse
from grader_api.routers.deps import DB_ID_MAX, CourseQuery, RelayDep, SessionDep, SettingsDep
from grader_api.schemas import (
    InstructorSubmissionRow,
    Leaderboard,
    RescoreOut,
    TaskCreate,
    TaskDetail,
    TaskPatch,
    TaskSummary,
)
from grader_api.services import leaderboard as board_service
from grader_api.services import submissions as submission_service
from grader_api.services import tasks as task_service
from grader_api.services.courses import course_for_new_task, require_instructor, require_staff, resolve_task

router = APIRouter(tags=["tasks"])

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_TASK_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": TaskCreate.model_json_schema()},
    "application/yaml": {"schema": {"type": "string", "description": "the task file"}},
}}}


@router.get("/tasks", response_model=list[TaskSummary])
def list_tasks(user: CurrentUser, session: SessionDep) -> list[TaskSummary]:
    return task_service.list_tasks(session, user)


@router.get("/tasks/{task}", response_model=TaskDetail)
def get_task(task: str, user: CurrentUser, session: SessionDep, course: CourseQuery = None) -> TaskDetail:
    t, member = resolve_task(session, user, task, course)
    return task_service.task_detail(session, t, member)


async def _task_body(request: Request) -> tuple[str, task_service.CourseOptions]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype in _YAML_TYPES:
        try:
            return raw.decode("utf-8-sig"), task_service.CourseOptions()
        except UnicodeDecodeError:
            raise ApiError(400, "task YAML must be UTF-8 text", "bad_request") from None
    if ctype == "application/json":
        try:
            body = TaskCreate.model_validate(json.loads(raw or b"null"))
        except Exception as exc:  # pydantic or JSON error: report it in the envelope
            raise ApiError(422, f"body: expected {{\"yaml\": \"<task file>\", ...}} ({exc.__class__.__name__})",
                           "invalid_request") from None
        opts = task_service.CourseOptions(**{k: v for k, v in body.model_dump(exclude_unset=True).items()
                                             if k != "yaml"})
        return body.yaml, opts
    raise ApiError(415, "send the task file as application/yaml, or JSON {\"yaml\": ...}", "unsupported_media_type")


@router.post("/tasks", response_model=TaskDetail, status_code=201, openapi_extra=_TASK_BODY_DOC)
async def create_task(request: Request, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                      course: CourseQuery = None) -> TaskDetail:
    """Create a task in a course you teach (`course`: its slug; default: your only one)."""
    from starlette.concurrency import run_in_threadpool

    text, opts = await _task_body(request)

    def work():
        found, member = course_for_new_task(session, user, course)
        task = task_service.create_task(session, settings, text, opts, course=found)
        return task_service.task_detail(session, task, member)

    return await run_in_threadpool(work)


@router.patch("/tasks/{task}", response_model=TaskDetail)
def patch_task(task: str, body: TaskPatch, user: CurrentUser, session: SessionDep,
               settings: SettingsDep, course: CourseQuery = None) -> TaskDetail:
    t, member = resolve_task(session, user, task, course)
    require_instructor(member)
    given = body.model_dump(exclude_unset=True)
    yaml_text = given.pop("yaml", None)
    task_service.update_task(session, settings, t, yaml_text, task_service.CourseOptions(**given))
    return task_service.task_detail(session, t, member)


@router.get("/tasks/{task}/leaderboard", response_model=Leaderboard)
def leaderboard(task: str, user: CurrentUser, session: SessionDep,
                board: str = Query("public", pattern="^(public|private)$"), course: CourseQuery = None) -> Leaderboard:
    t, member = resolve_task(session, user, task, course)
    return board_service.leaderboard(session, t, board, member)


@router.get("/tasks/{task}/submissions", response_model=list[InstructorSubmissionRow])
def task_submissions(task: str, caller: CurrentUser, session: SessionDep, user: str | None = None,
                     status: str | None = None, late: bool | None = None,
                     limit: int = Query(500, ge=1, le=5000),
                     offset: int = Query(0, ge=0, le=DB_ID_MAX), course: CourseQuery = None,
                     ) -> list[InstructorSubmissionRow]:
    """Every submission of the task (course staff)."""
    t, member = resolve_task(session, caller, task, course)
    require_staff(member)
    return submission_service.list_for_task(session, t, user_name=user, status=status, late=late,
                                            limit=limit, offset=offset)


@router.post("/tasks/{task}/rescore", response_model=RescoreOut, status_code=202)
def rescore(task: str, user: CurrentUser, session: SessionDep, relay: RelayDep,
            course: CourseQuery = None) -> RescoreOut:
    t, member = resolve_task(session, user, task, course)
    require_staff(member)
    return RescoreOut(task=t.name, requeued=submission_service.rescore_task(session, relay, t))



@router.get("/tasks/{task}/grades.csv", response_class=CsvResponse, responses=CSV_ROUTE_ERRORS)
def grades(task: str, user: CurrentUser, session: SessionDep, course: CourseQuery = None) -> PlainTextResponse:
    t, member = resolve_task(session, user, task, course)
    require_staff(member)
    return PlainTextResponse(board_service.grades_csv(session, t), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{t.name}-grades.csv"'})
