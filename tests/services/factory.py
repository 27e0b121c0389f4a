"""Rows for the service tests, written straight to the database: users, tasks and submissions
with the scores and times a test names (no upload, no worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from grader_api.models import Course, FinalRule, Role, Submission, SubmissionKind, SubmissionStatus, Task, User
from grader_api.services.courses import DEFAULT_COURSE, enroll, get_course

# A fixed moment mid-day (UTC), so "today" and "yesterday" do not depend on when tests run.
NOON = datetime(2030, 5, 15, 12, 0, tzinfo=UTC)


class Factory:
    def __init__(self, session: Session):
        self.session = session
        self._sha = 0

    def user(self, name: str, role: Role = Role.STUDENT) -> User:
        """A user enrolled in the default course with `role`; students show as `<name>-shown`."""
        user = User(name=name, role=role)
        self.session.add(user)
        self.session.flush()
        enroll(self.session, self.course(), user, role, display_name=f"{name}-shown")
        return user

    def course(self) -> Course:
        return get_course(self.session, DEFAULT_COURSE)

    def instructor(self, name: str = "prof") -> User:
        return self.user(name, Role.INSTRUCTOR)

    def task(self, name: str = "pets", *, higher_is_better: bool = True, deadline: datetime | None = None,
             late_days: int = 0, daily_limit: int | None = None, final_rule: FinalRule = FinalRule.BEST_PUBLIC,
             final_count: int = 2, course: Course | None = None) -> Task:
        metric = "accuracy" if higher_is_better else "error_rate"
        task = Task(course_id=(course or self.course()).id, name=name, title=name.title(), kind="classification",
                    metric=metric,
                    higher_is_better=higher_is_better,
                    spec={"name": name, "kind": "classification", "classes": ["cat", "dog"],
                          "accepts": ["predictions"]},
                    spec_yaml=f"name: {name}\n", spec_version=1, deadline=deadline, late_days=late_days,
                    daily_limit=daily_limit, final_rule=final_rule, final_count=final_count)
        self.session.add(task)
        self.session.flush()
        return task

    def submission(self, task: Task, user: User, *, public: float | None = None, private: float | None = None,
                   at: datetime = NOON, status: SubmissionStatus = SubmissionStatus.SCORED,
                   error_code: str | None = None, selected: bool = False, selected_at: datetime | None = None,
                   points: float | None = None, late_days_used: int = 0) -> Submission:
        """A submission made at `at`; a scored one carries `public`/`private` as its part scores."""
        self._sha += 1
        scored = status == SubmissionStatus.SCORED
        sub = Submission(
            task_id=task.id, user_id=user.id, kind=SubmissionKind.PREDICTIONS, status=status,
            file_sha256=f"{self._sha:064x}", file_size=10, created_at=at, updated_at=at,
            public_primary=public, private_primary=private, overall_primary=None, points=points,
            late=late_days_used > 0, late_days_used=late_days_used, selected=selected, selected_at=selected_at,
            error="failed" if status == SubmissionStatus.FAILED else None, error_code=error_code,
            scored_at=at + timedelta(seconds=5) if scored else None,
            finished_at=at + timedelta(seconds=5) if scored or status == SubmissionStatus.FAILED else None,
        )
        self.session.add(sub)
        self.session.flush()
        return sub
