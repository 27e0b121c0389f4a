"""The caller: identity, own history, diffs between own submissions."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query

from grader_api.auth import CurrentUser
from grader_api.routers.deps import DB_ID_MAX, CourseQuery, SessionDep
from grader_api.schemas import History, UserOut
from grader_api.services import submissions as submission_service
from grader_api.services.courses import resolve_task
from grader_api.services.users import user_view

router = APIRouter(tags=["me"])


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser, session: SessionDep) -> UserOut:
    return user_view(session, user)


@router.get("/me/submissions", response_model=History)
def my_submissions(user: CurrentUser, session: SessionDep, task: str = Query(description="task name"),
                   course: CourseQuery = None) -> History:
    t, _member = resolve_task(session, user, task, course)
    return History(task=t.name, metric=t.metric, higher_is_better=t.higher_is_better,
                   submissions=submission_service.history(session, t, user))


@router.get("/me/submissions/diff")
def my_diff(user: CurrentUser, session: SessionDep,
            a: int = Query(ge=1, le=DB_ID_MAX, description="earlier submission id"),
            b: int = Query(ge=1, le=DB_ID_MAX, description="later submission id"),
            part: str = Query("public", description="public, or private/overall after the task closes")) -> dict:
    """Per-class differences b − a between two of the caller's submissions."""
    return asdict(submission_service.diff(session, user, a, b, part))
