"""Teams: create, join by code, show, leave (students); list, change, dissolve (course staff).

Join codes are 128 random bits, looked up by their unique column (never compared piece by
piece). Wrong codes are still counted, per user and per address: past either budget a join is
answered 429 before any lookup, whatever the code (`JoinCodeGuard`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from grader_api.auth import CurrentUser, client_address
from grader_api.errors import ApiError
from grader_api.routers.deps import CourseQuery, SessionDep
from grader_api.schemas import ErrorOut, MyTeamOut, TeamCreate, TeamJoin, TeamLeaveOut, TeamOut, TeamPatch
from grader_api.services import teams as team_service
from grader_api.services.courses import require_staff, resolve_task
from grader_api.services.errors import NotFound

log = logging.getLogger(__name__)
router = APIRouter(tags=["teams"])

# Failed join codes allowed in the window before joins are refused: per user, and per address
# (a lab or campus network shares one address, hence the larger budget).
JOIN_FAILURES_PER_USER = "10/hour"
JOIN_FAILURES_PER_ADDRESS = "60/hour"

TeamId = Annotated[int, Path(ge=1, le=2**31 - 1, description="team id")]
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 429)}


class JoinCodeGuard:
    """Counts failed join codes per user and per address (Redis when configured, so every API
    process shares the budget; process memory otherwise). Fails open when the store is down,
    like the other rate limits: a code is not guessable, the limit only keeps scripts away."""

    def __init__(self, redis_url: str | None, prefix: str = ""):
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        options = {"key_prefix": f"{prefix}heldout-team-join"} if redis_url else {}
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url or "memory://", **options))
        self._budgets = {"user": parse(JOIN_FAILURES_PER_USER), "address": parse(JOIN_FAILURES_PER_ADDRESS)}

    def check(self, user_id: int, address: str) -> None:
        """429 while the user or the address has no failed attempts left (counts nothing)."""
        for scope, key in (("user", str(user_id)), ("address", address)):
            item = self._budgets[scope]
            try:
                if self._limiter.test(item, "team-join-failure", scope, key):
                    continue
                reset = self._limiter.get_window_stats(item, "team-join-failure", scope, key).reset_time
            except Exception:
                log.warning("rate-limit store unavailable; not throttling join codes", exc_info=True)
                continue
            retry = max(1, math.ceil(reset - time.time()))
            who = "your account" if scope == "user" else "your address"
            raise ApiError(429, f"too many wrong join codes from {who} (at most {item}); retry in {retry} s",
                           "rate_limited", headers={"Retry-After": str(retry)})

    def count_failure(self, user_id: int, address: str) -> None:
        for scope, key in (("user", str(user_id)), ("address", address)):
            try:
                self._limiter.hit(self._budgets[scope], "team-join-failure", scope, key)
            except Exception:
                log.warning("rate-limit store unavailable; wrong join code not counted", exc_info=True)


_GUARD_LOCK = threading.Lock()


def join_guard(request: Request) -> JoinCodeGuard:
    """The app's one guard, made at its first use (nothing is built at import)."""
    state = request.app.state
    with _GUARD_LOCK:
        guard = getattr(state, "team_join_guard", None)
        if guard is None:
            settings = state.settings
            guard = state.team_join_guard = JoinCodeGuard(settings.redis_url, settings.queue_prefix)
    return guard


def join_with_code(request: Request, session, user, code: str) -> tuple[Any, Any, Any]:
    """Join by code, counting a code of no team (or of another course's team) as a failure of
    the user and the address. Shared by the JSON API and the web page."""
    guard, address = join_guard(request), client_address(request)
    guard.check(user.id, address)
    try:
        return team_service.join_team(session, code, user)
    except NotFound:
        guard.count_failure(user.id, address)
        raise


@router.post("/tasks/{task}/teams", response_model=TeamOut, status_code=201, responses=_ERRORS)
def create_team(task: str, body: TeamCreate, user: CurrentUser, session: SessionDep,
                course: CourseQuery = None) -> TeamOut:
    """Create a team for a team task (`team_size` > 1). A student joins the team they create and
    gets its join code to share; course staff may name its members (login names) instead."""
    t, member = resolve_task(session, user, task, course)
    team = team_service.create_team(session, t, member, body.name, body.members)
    return team_service.team_view(session, team, t, member)


@router.post("/teams/join", response_model=TeamOut, responses=_ERRORS)
def join_team(request: Request, body: TeamJoin, user: CurrentUser, session: SessionDep) -> TeamOut:
    """Join the team whose join code a member shared. A wrong code is 404; too many wrong codes
    (per account and per address) are 429."""
    team, t, member = join_with_code(request, session, user, body.code)
    return team_service.team_view(session, team, t, member)


@router.get("/tasks/{task}/team", response_model=MyTeamOut, responses=_ERRORS)
def my_team(task: str, user: CurrentUser, session: SessionDep, course: CourseQuery = None) -> MyTeamOut:
    """Your team for the task (members by display name, the join code), or `team: null`."""
    t, member = resolve_task(session, user, task, course)
    return team_service.my_team(session, t, member)


@router.post("/tasks/{task}/team/leave", response_model=TeamLeaveOut, responses=_ERRORS)
def leave_team(task: str, user: CurrentUser, session: SessionDep, course: CourseQuery = None) -> TeamLeaveOut:
    """Leave your team; refused (409 `team_locked`) once a member's submission has been scored."""
    t, member = resolve_task(session, user, task, course)
    return team_service.leave_team(session, t, member)


@router.get("/tasks/{task}/teams", response_model=list[TeamOut], responses=_ERRORS)
def list_teams(task: str, user: CurrentUser, session: SessionDep, course: CourseQuery = None) -> list[TeamOut]:
    """Every team of the task with members and join codes (course staff)."""
    t, member = resolve_task(session, user, task, course)
    return team_service.list_teams(session, t, require_staff(member))


@router.patch("/teams/{team_id}", response_model=TeamOut, responses=_ERRORS)
def edit_team(team_id: TeamId, body: TeamPatch, user: CurrentUser, session: SessionDep) -> TeamOut:
    """Rename a team, add students (moving them from another team of the task, submissions and
    all) or remove members (course staff)."""
    team, t, member = team_service.team_for_staff(session, team_id, user)
    team_service.edit_team(session, team, t, name=body.name, add=body.add, remove=body.remove)
    return team_service.team_view(session, team, t, member)


@router.delete("/teams/{team_id}", status_code=204, response_class=Response, responses=_ERRORS)
def dissolve_team(team_id: TeamId, user: CurrentUser, session: SessionDep) -> Response:
    """Dissolve a team (course staff): its members submit alone again, with their own submissions."""
    team, _t, _member = team_service.team_for_staff(session, team_id, user)
    team_service.dissolve_team(session, team)
    return Response(status_code=204)
