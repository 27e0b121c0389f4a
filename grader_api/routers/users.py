"""Instructor user management: create users, issue and revoke tokens."""

from __future__ import annotations

from fastapi import APIRouter

from grader_api.auth import Instructor
from grader_api.routers.deps import SessionDep
from grader_api.schemas import TokenOut, UserCreate, UserCreated
from grader_api.services import users as user_service

router = APIRouter(tags=["users"])


@router.post("/users", response_model=UserCreated, status_code=201)
def create_user(body: UserCreate, _: Instructor, session: SessionDep) -> UserCreated:
    user, token = user_service.create_user(session, body.name, body.role)
    return UserCreated(**user_service.user_view(user).model_dump(), token=token)


@router.post("/users/{name}/tokens", response_model=TokenOut, status_code=201)
def issue_token(name: str, _: Instructor, session: SessionDep, revoke_old: bool = False) -> TokenOut:
    """A new token for a user (e.g. one who lost theirs); `revoke_old=true` ends the old ones."""
    return TokenOut(name=name, token=user_service.new_token(session, name, revoke_old=revoke_old))


@router.post("/users/{name}/revoke")
def revoke(name: str, _: Instructor, session: SessionDep) -> dict:
    return {"name": name, "revoked": user_service.revoke(session, name)}
