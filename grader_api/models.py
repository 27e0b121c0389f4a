"""ORM models and the status/role/rule vocabularies (each defined once, here)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class SubmissionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SCORED = "scored"
    FAILED = "failed"


class Role(enum.StrEnum):
    """A role in one course (an enrollment's). `users.role` keeps the role a user had before
    courses existed; authorization reads the enrollment."""

    STUDENT = "student"
    TA = "ta"
    INSTRUCTOR = "instructor"


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"
    DROPPED = "dropped"   # missing from a later roster import: kept, hidden from boards, never deleted


class FinalRule(enum.StrEnum):
    """Which of a student's submissions count for the private board and the grade."""

    BEST_PUBLIC = "best_public"   # the best public-board score (default)
    LATEST = "latest"             # the most recent scored submission
    SELECTED = "selected"         # those the student marked (best public when none marked)


class SubmissionKind(enum.StrEnum):
    PREDICTIONS = "predictions"
    MODEL = "model"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(e: type[enum.Enum], name: str) -> sa.Enum:
    # Stored as plain strings (no native enum type): adding a value needs no DDL on Postgres.
    return sa.Enum(e, name=name, native_enum=False, length=16,
                   values_callable=lambda cls: [m.value for m in cls], validate_strings=True)


# Ids of rows students create without bound (submissions and their outbox messages): 64-bit.
# SQLite keeps INTEGER, whose PRIMARY KEY is already a 64-bit rowid (BIGINT would lose that).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class User(Base):
    """A person on this server. `name` is the login identity (an LMS login or an email for
    imported students); `full_name` is what staff see; students see enrollment display names."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    full_name: Mapped[str | None] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(40), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")   # IANA name, e.g. America/Chicago
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Enrollment(Base):
    """A user's membership of one course: role, leaderboard display name, LMS identifiers."""

    __tablename__ = "enrollments"
    __table_args__ = (
        sa.UniqueConstraint("course_id", "user_id", name="uq_enrollments_course_user"),
        sa.UniqueConstraint("course_id", "display_key", name="uq_enrollments_course_display"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(sa.ForeignKey("courses.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    status: Mapped[EnrollmentStatus] = mapped_column(_enum(EnrollmentStatus, "enrollment_status"),
                                                     default=EnrollmentStatus.ACTIVE)
    display_name: Mapped[str] = mapped_column(sa.String(40))
    display_key: Mapped[str] = mapped_column(sa.String(40))      # casefolded: unique ignoring case
    section: Mapped[str | None] = mapped_column(sa.String(100))
    lms_id: Mapped[str | None] = mapped_column(sa.String(64))    # Canvas "ID"
    sis_user_id: Mapped[str | None] = mapped_column(sa.String(100))
    sis_login_id: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    course: Mapped[Course] = relationship()
    user: Mapped[User] = relationship()


class Invite(Base):
    """A one-time sign-in link for an enrollment; the code is kept only as its sha256."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollments.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token, stored as its sha256: the token itself is shown once and never kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class BrowserSession(Base):
    """A logged-in browser: its cookie carries a random session id, kept here as its sha256.

    Log-out deletes the row, so a copy of the cookie stops working; revoking the token the
    browser logged in with ends the session too (the lookup joins the live token).
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (sa.UniqueConstraint("course_id", "name", name="uq_tasks_course_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(32))
    metric: Mapped[str] = mapped_column(sa.String(32))
    higher_is_better: Mapped[bool] = mapped_column(default=True)
    spec: Mapped[dict] = mapped_column(sa.JSON)          # scoring.tasks.task_to_dict(spec)
    spec_yaml: Mapped[str] = mapped_column(sa.Text)      # the file the instructor gave, for reference
    spec_version: Mapped[int] = mapped_column(default=1)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late_days: Mapped[int] = mapped_column(default=0)
    daily_limit: Mapped[int | None] = mapped_column()   # per student per UTC day; None: unlimited
    final_rule: Mapped[FinalRule] = mapped_column(_enum(FinalRule, "final_rule"), default=FinalRule.BEST_PUBLIC)
    final_count: Mapped[int] = mapped_column(default=2)  # how many a student may select (rule "selected")
    team_size: Mapped[int] = mapped_column(default=1)    # 1: everyone submits alone
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def closes_at(self) -> datetime | None:
        """No submission is accepted after this; private scores are revealed from then on."""
        if self.deadline is None:
            return None
        return self.deadline + timedelta(days=self.late_days)

    def private_revealed(self, now: datetime | None = None) -> bool:
        closes = self.closes_at
        return closes is not None and (now or utcnow()) >= closes


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        sa.Index("ix_submissions_task_user_created", "task_id", "user_id", "created_at"),
        sa.Index("ix_submissions_status_updated", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[SubmissionKind] = mapped_column(_enum(SubmissionKind, "submission_kind"))
    status: Mapped[SubmissionStatus] = mapped_column(_enum(SubmissionStatus, "submission_status"))
    file_sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    file_size: Mapped[int] = mapped_column(sa.BigInteger)
    filename: Mapped[str | None] = mapped_column(sa.String(255))  # display only, never a path
    note: Mapped[str | None] = mapped_column(sa.Text)
    late: Mapped[bool] = mapped_column(default=False)
    late_days_used: Mapped[int] = mapped_column(default=0)
    selected: Mapped[bool] = mapped_column(default=False)
    # When the student last marked it final: the grade export ignores marks made after the close.
    selected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempts: Mapped[int] = mapped_column(default=0)
    claim_id: Mapped[str | None] = mapped_column(sa.String(36))  # fences writes of a superseded run
    error: Mapped[str | None] = mapped_column(sa.Text)           # shown to the student when failed
    error_code: Mapped[str | None] = mapped_column(sa.String(64))

    report: Mapped[dict | None] = mapped_column(sa.JSON)
    public_primary: Mapped[float | None] = mapped_column(sa.Float)
    private_primary: Mapped[float | None] = mapped_column(sa.Float)
    overall_primary: Mapped[float | None] = mapped_column(sa.Float)
    points: Mapped[float | None] = mapped_column(sa.Float)
    model_stats: Mapped[dict | None] = mapped_column(sa.JSON)
    scored_spec_version: Mapped[int | None] = mapped_column()

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    task: Mapped[Task] = relationship()
    user: Mapped[User] = relationship()


class Team(Base):
    """Students who submit together for one task: one daily quota, one final choice, one board row."""

    __tablename__ = "teams"
    __table_args__ = (sa.UniqueConstraint("task_id", "name_key", name="uq_teams_task_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    name_key: Mapped[str] = mapped_column(sa.String(40))
    join_code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"
    # One team per student per task (task_id is repeated here so the database enforces it).
    __table_args__ = (sa.UniqueConstraint("task_id", "user_id", name="uq_team_members_task_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Outbox(Base):
    """A grading message to send after the commit that created it (transactional outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_unsent", "sent_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    submission_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("submissions.id", ondelete="CASCADE"),
                                               index=True)
    queue: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    send_attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
