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
    STUDENT = "student"
    INSTRUCTOR = "instructor"


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
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")


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

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
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
