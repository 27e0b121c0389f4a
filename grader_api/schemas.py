"""Request and response bodies of the JSON API (they document the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str
    code: str
    line: int | None = None
    column: int | None = None


RoleName = Literal["student", "ta", "instructor"]


class CourseMembership(BaseModel):
    course: str = Field(description="the course's slug")
    title: str
    timezone: str = Field(description="IANA time zone of the course (deadlines are shown in it)")
    role: RoleName
    display_name: str = Field(description="the name other students see on leaderboards")


class UserOut(BaseModel):
    id: int
    name: str
    role: RoleName = Field(description="the highest role the user holds in any course")
    courses: list[CourseMembership] = []


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: RoleName = "student"
    course: str | None = Field(None, description="course slug; default: the caller's only course as instructor")


class UserCreated(UserOut):
    token: str = Field(description="shown once; store it now")


class TokenOut(BaseModel):
    name: str
    token: str


class TaskSummary(BaseModel):
    course: str = Field(description="slug of the course the task belongs to")
    role: RoleName = Field(description="the caller's role in that course")
    team_size: int = 1
    name: str
    title: str
    kind: str
    metric: str
    higher_is_better: bool
    deadline: datetime | None
    late_days: int
    closes_at: datetime | None
    open: bool
    daily_limit: int | None
    submissions_left_today: int | None
    accepts: list[str]
    final_rule: str
    final_count: int
    private_revealed: bool
    max_upload_mb: float | None = None


class TaskDetail(TaskSummary):
    classes: list[str]
    public_fraction: float | None = None
    points: dict[str, Any] | None = None
    ap: str | None = None
    scores: str | None = None
    image_size: list[int] | None = None
    spec_version: int
    spec: dict[str, Any] | None = None


class TaskCreate(BaseModel):
    yaml: str = Field(description="the task file's text; its split must already exist under the data root")
    deadline: datetime | None = None
    late_days: int | None = None
    daily_limit: int | None = None
    final_rule: Literal["best_public", "latest", "selected"] | None = None
    final_count: int | None = None


class TaskPatch(BaseModel):
    yaml: str | None = None
    deadline: datetime | None = None
    late_days: int | None = Field(None, ge=0, le=365)
    daily_limit: int | None = Field(None, ge=1, le=10_000)
    final_rule: Literal["best_public", "latest", "selected"] | None = None
    final_count: int | None = Field(None, ge=1, le=100)


class SubmissionAccepted(BaseModel):
    id: int
    status: str
    task: str
    kind: str
    late: bool
    late_days_used: int
    size: int
    sha256: str
    url: str


class SubmissionOut(BaseModel):
    id: int
    task: str
    course: str = Field("", description="slug of the task's course")
    user: str
    kind: str
    status: Literal["queued", "running", "scored", "failed"]
    error: str | None
    error_code: str | None
    note: str | None
    filename: str | None
    size: int
    late: bool
    late_days_used: int
    selected: bool
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    scored_at: datetime | None
    metric: str
    higher_is_better: bool
    public_score: float | None
    private_score: float | None
    overall_score: float | None
    points: float | None
    public: dict[str, Any] | None
    private: dict[str, Any] | None
    overall: dict[str, Any] | None
    private_revealed: bool
    model_stats: dict[str, Any] | None


class SelectIn(BaseModel):
    selected: bool = True


class HistoryRow(BaseModel):
    id: int
    created_at: datetime
    status: str
    note: str | None
    filename: str | None
    error: str | None
    late: bool
    selected: bool
    public_score: float | None
    change: float | None = Field(description="public score minus the previous scored submission's")
    private_score: float | None


class History(BaseModel):
    task: str
    metric: str
    higher_is_better: bool
    submissions: list[HistoryRow]


class LeaderboardRow(BaseModel):
    rank: int
    user: str = Field(description="the display name; course staff see the login name")
    display_name: str = Field("", description="the name the student chose for boards (or was given)")
    real_name: str | None = Field(None, description="course staff only: the name from the roster")
    score: float
    entries: int
    submitted_at: datetime
    submission_id: int | None
    is_me: bool


class Leaderboard(BaseModel):
    task: str
    board: Literal["public", "private"]
    metric: str
    higher_is_better: bool
    rows: list[LeaderboardRow]


class InstructorSubmissionRow(BaseModel):
    id: int
    user: str
    display_name: str = ""
    status: str
    kind: str
    note: str | None
    created_at: datetime
    finished_at: datetime | None
    attempts: int
    error: str | None
    late: bool
    late_days_used: int
    selected: bool
    public_score: float | None
    private_score: float | None
    overall_score: float | None
    points: float | None


class RescoreOut(BaseModel):
    task: str
    requeued: int


# --- teams -------------------------------------------------------------------------------

class TeamCreate(BaseModel):
    name: str = Field(min_length=1, max_length=400,
                      description="the team's name on the leaderboard: 3–40 characters, unique in the task "
                                  "ignoring case (the display-name rules)")
    members: list[str] | None = Field(None, max_length=100,
                                      description="course staff only: login names of the students to put in "
                                                  "the team (a student creating a team joins it themselves)")


class TeamJoin(BaseModel):
    code: str = Field(min_length=1, max_length=200, description="the join code a team member shared")


class TeamPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=400, description="a new name")
    add: list[str] = Field([], max_length=100, description="login names of students to add (a student in "
                                                           "another team of the task is moved from it)")
    remove: list[str] = Field([], max_length=100, description="login names of members to remove")


class TeamMemberOut(BaseModel):
    display_name: str = Field(description="the name other students see")
    login: str | None = Field(None, description="course staff only: the login name")
    real_name: str | None = Field(None, description="course staff only: the name from the roster")
    is_me: bool = False


class TeamOut(BaseModel):
    id: int
    task: str
    course: str = Field(description="slug of the task's course")
    name: str
    team_size: int = Field(description="the most members a team of this task may have")
    members: list[TeamMemberOut]
    join_code: str | None = Field(None, description="members and course staff only: share it with a "
                                                    "teammate, who joins with POST /teams/join")
    locked: bool = Field(description="a member's submission has been scored: members can no longer leave")


class MyTeamOut(BaseModel):
    task: str
    course: str
    team_size: int
    team: TeamOut | None = Field(description="your team, or null when you submit alone")


class TeamLeaveOut(BaseModel):
    task: str
    team: str = Field(description="the team you left")
    dissolved: bool = Field(description="you were its last member: the team is gone")
