"""Instructor user management: create users, issue and revoke tokens."""

from __future__ import annotations

from fastapi import APIRouter

from grader_api.auth import CurrentUser
from grader_api.routers.deps import SessionDep
from grader_api.schemas import TokenOut, UserCreate, UserCreated
from grader_api.services import users as user_service

router = APIRouter(tags=["users"])


@router.post("/users", response_model=UserCreated, status_code=201)
def create_user(body: UserCreate, caller: CurrentUser, session: SessionDep) -> UserCreated:
    """Create a user in a course you teach (`course`; default: your only one)."""
    user, token = user_service.create_user_as(session, caller, body.name, body.role, body.course)
    return UserCreated(**user_service.user_view(session, user).model_dump(), token=token)


@router.post("/users/{name}/tokens", response_model=TokenOut, status_code=201)
def issue_token(name: str, caller: CurrentUser, session: SessionDep, revoke_old: bool = False) -> TokenOut:
    """A new token for a user of your courses (e.g. one who lost theirs); `revoke_old=true` ends the old ones."""
    user = user_service.managed_user(session, caller, name)
    return TokenOut(name=name, token=user_service.new_token(session, user.name, revoke_old=revoke_old))


@router.post("/users/{name}/revoke")
def revoke(name: str, caller: CurrentUser, session: SessionDep) -> dict:
    """End every token of a user of your courses: any student of a course you teach, or anyone
    only in courses you teach."""
    user = user_service.revocable_user(session, caller, name)
    return {"name": name, "revoked": user_service.revoke(session, user.name)}
