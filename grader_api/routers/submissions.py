"""Submissions: upload, status/report, final selection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from grader_api.auth import CurrentUser, bearer_token
from grader_api.models import utcnow
from grader_api.routers.deps import (
    CourseQuery,
    DatabaseDep,
    LimiterDep,
    RelayDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    SubmissionId,
)
from grader_api.routers.multipart import receive_upload
from grader_api.schemas import ErrorOut, SelectIn, SubmissionAccepted, SubmissionOut
from grader_api.services import submissions as submission_service
from grader_api.services.courses import resolve_task

router = APIRouter(tags=["submissions"])

_UPLOAD_DOC = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "predictions (CSV, .npy, .npz) or a model file"},
                       "note": {"type": "string", "description": "what changed since the last attempt"}},
    }}}},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 413, 415, 422, 429)}


@router.post("/tasks/{task}/submissions", status_code=202, response_model=SubmissionAccepted,
             openapi_extra=_UPLOAD_DOC, responses=_ERRORS)
async def upload(task: str, request: Request, user: CurrentUser, db: DatabaseDep, settings: SettingsDep,
                 storage: StorageDep, relay: RelayDep, limiter: LimiterDep, course: CourseQuery = None) -> dict:
    """Upload a file; it is validated now (clear 4xx on a bad file) and graded in the background.

    No request session: the body streams and validation runs with no connection held; the reads
    before and the one write after are short transactions of their own (grader_api/db.py)."""
    now = utcnow()

    def precheck():
        with db.transaction() as session:  # reads only; the loaded task row stays usable, detached
            t, _member = resolve_task(session, user, task, course)
            submission_service.precheck(session, t, user, now)
        limiter.check("upload", user.id)
        return t

    t = await run_in_threadpool(precheck)
    limit = int(float(t.spec.get("max_upload_mb", 64)) * 1_000_000)
    received = await receive_upload(request, storage, limit)
    # The upload has arrived: its lateness is judged now, whatever the wait for validation.
    # (Not when the request began: a body trickled in slowly must not carry an earlier time.)
    arrived_at = utcnow()
    try:
        note = received.fields.get("note")
        submission_service.check_note(note)
        # Validation is CPU work: a bounded number at once and one per user, the others wait
        # here (not in a thread, not holding a database connection) so a deadline rush queues
        # instead of failing, and one student's files never queue in front of a classmate's.
        async with request.app.state.upload_slots.turn(user.id):
            inspected = await run_in_threadpool(
                submission_service.inspect_upload, data_root=settings.effective_data_root, task=t,
                temp_path=received.path, filename=received.filename, note=note,
                cpu_budget_s=settings.upload_validation_cpu_s)

        def record():
            # The upload's one unit of work, committed in this thread: the per-user row lock taken
            # inside is held for milliseconds, and the commit sends the grading message.
            with db.transaction() as session:
                return submission_service.record_upload(
                    session, relay=relay, storage=storage, task=t, user=user, inspected=inspected,
                    temp_path=received.path, sha256=received.sha256, size=received.size,
                    arrived_at=arrived_at, token=bearer_token(request))

        sub = await run_in_threadpool(record)
    finally:
        received.path.unlink(missing_ok=True)  # already moved into storage on success
    return {"id": sub.id, "status": sub.status.value, "task": t.name, "kind": sub.kind.value,
            "late": sub.late, "late_days_used": sub.late_days_used, "size": sub.file_size,
            "sha256": sub.file_sha256, "url": f"/api/v1/submissions/{sub.id}"}


@router.get("/submissions/{submission_id}", response_model=SubmissionOut)
def get_submission(submission_id: SubmissionId, user: CurrentUser, session: SessionDep) -> SubmissionOut:
    sub, viewer = submission_service.get_visible(session, submission_id, user)
    return submission_service.submission_view(sub, viewer)


@router.post("/submissions/{submission_id}/select", response_model=SubmissionOut)
def select(submission_id: SubmissionId, user: CurrentUser, session: SessionDep,
           body: SelectIn | None = None) -> SubmissionOut:
    """Mark (or with `{"selected": false}` unmark) one of your submissions as final."""
    sub, viewer = submission_service.get_visible(session, submission_id, user)
    submission_service.set_selected(session, sub, user, True if body is None else body.selected)
    return submission_service.submission_view(sub, viewer)
