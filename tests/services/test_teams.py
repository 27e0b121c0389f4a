"""grader_api.services.teams and the team rules wired into the other services: one quota, one
final choice, one board row, shared visibility; forming, joining, leaving and staff changes,
with hostile names and codes. On a migrated SQLite file (the HTTP tests cover PostgreSQL)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grader_api.db import Database, migrate
from grader_api.models import (
    Course,
    FinalRule,
    Role,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Task,
    Team,
    TeamMember,
    User,
    utcnow,
)
from grader_api.services import leaderboard as board_service
from grader_api.services import submissions as submission_service
from grader_api.services import tasks as task_service
from grader_api.services import teams as team_service
from grader_api.services.courses import create_course, enroll, get_course, member_of
from grader_api.services.errors import (
    Conflict,
    DailyLimitReached,
    InvalidInput,
    NotAllowed,
    NotFound,
    TooManySelected,
)

DISPLAY = {"alice": "quiet-otter-11", "bob": "brave-lynx-22", "carol": "calm-heron-33", "dave": "keen-ibis-44",
           "eve": "teal-wren-55", "prof": "prof-display", "tina": "ta-display"}


@dataclass
class World:
    db: Database
    users: dict[str, int]
    task_id: int
    solo_task_id: int
    other_task_id: int

    def session(self):
        return self.db.transaction()

    def task(self, s, which: str = "pets") -> Task:
        task_id = {"pets": self.task_id, "solo": self.solo_task_id, "other": self.other_task_id}[which]
        return s.get(Task, task_id)

    def member(self, s, name: str, which: str = "pets"):
        user = s.get(User, self.users[name])
        return member_of(s, user, self.task(s, which).course_id)

    def user(self, s, name: str) -> User:
        return s.get(User, self.users[name])


def _task(course: Course, name: str, team_size: int) -> Task:
    return Task(course_id=course.id, name=name, title=name, kind="classification", metric="accuracy",
                higher_is_better=True, spec={"classes": ["a", "b"]}, spec_yaml="", team_size=team_size,
                daily_limit=3, final_rule=FinalRule.BEST_PUBLIC, final_count=1)


@pytest.fixture
def world(tmp_path) -> World:
    url = f"sqlite:///{tmp_path / 'teams.db'}"
    migrate(url)
    db = Database(url)
    users = {}
    with db.transaction() as s:
        default = get_course(s, "default")
        other = create_course(s, "other-course", "Other course")
        for name, role, course in (("alice", Role.STUDENT, default), ("bob", Role.STUDENT, default),
                                   ("carol", Role.STUDENT, default), ("dave", Role.STUDENT, default),
                                   ("prof", Role.INSTRUCTOR, default), ("tina", Role.TA, default),
                                   ("eve", Role.STUDENT, other)):
            user = User(name=name, role=role, full_name=f"{name.title()} Realname")
            s.add(user)
            s.flush()
            enroll(s, course, user, role, display_name=DISPLAY[name])
            users[name] = user.id
        pets, solo, elsewhere = _task(default, "pets", 2), _task(default, "solo", 1), _task(other, "pets", 2)
        s.add_all([pets, solo, elsewhere])
        s.flush()
        ids = pets.id, solo.id, elsewhere.id
    yield World(db, users, *ids)
    db.dispose()


def _submit(world: World, name: str, *, public: float | None = 0.5, private: float | None = 0.5,
            status: SubmissionStatus = SubmissionStatus.SCORED, at: datetime | None = None,
            which: str = "pets") -> int:
    with world.session() as s:
        scored = status == SubmissionStatus.SCORED
        sub = Submission(task_id=world.task(s, which).id, user_id=world.users[name], kind=SubmissionKind.PREDICTIONS,
                         status=status, file_sha256="0" * 64, file_size=10, created_at=at or utcnow(),
                         public_primary=public if scored else None, private_primary=private if scored else None,
                         scored_at=utcnow() if scored else None)
        s.add(sub)
        s.flush()
        return sub.id


def _create(world: World, creator: str, name: str = "otters") -> tuple[int, str]:
    with world.session() as s:
        team = team_service.create_team(s, world.task(s), world.member(s, creator), name)
        return team.id, team.join_code


def _join(world: World, code: str, who: str):
    with world.session() as s:
        team, _task, _member = team_service.join_team(s, code, world.user(s, who))
        return team.id


def _pair(world: World) -> tuple[int, str]:
    """alice and bob in team 'otters'."""
    team_id, code = _create(world, "alice")
    _join(world, code, "bob")
    return team_id, code


def _members(world: World, team_id: int) -> set[str]:
    with world.session() as s:
        return set(s.scalars(sa.select(User.name).join(TeamMember, TeamMember.user_id == User.id)
                             .where(TeamMember.team_id == team_id)))


# --- forming teams -----------------------------------------------------------------------------

def test_a_student_creates_a_team_joins_it_and_gets_an_unguessable_code(world):
    team_id, code = _create(world, "alice")
    _, other_code = _create(world, "carol", "herons")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", code) and code != other_code
    assert _members(world, team_id) == {"alice"}
    with world.session() as s:
        view = team_service.my_team(s, world.task(s), world.member(s, "alice")).team
        assert view is not None and view.name == "otters" and view.join_code == code
        assert [(m.display_name, m.login, m.real_name, m.is_me) for m in view.members] == \
            [("quiet-otter-11", None, None, True)]


def test_no_teams_in_a_task_done_alone(world):
    with world.session() as s, pytest.raises(Conflict) as info:
        team_service.create_team(s, world.task(s, "solo"), world.member(s, "alice", "solo"), "otters")
    assert info.value.code == "individual_task" and "team_size 1" in info.value.message


@pytest.mark.parametrize(("name", "fragment"), [
    ("<b>otters</b>", "not allowed"),
    ("ot\x1bters", "U+001B"),
    ("ot\u202eters", "U+202E"),
    ("x" * 300, "300 characters"),
    ("me@uni.edu", "email"),
    ("", "0 characters"),
    ("\ufb03" * 39, "ignoring case"),   # 39 ligatures fold to 117 letters
    ("ß" + "x" * 39, "41 characters long once compared ignoring case"),
    ("\u043etters", "mixes Cyrillic and Latin letters"),
])
def test_team_names_follow_the_display_name_rules(world, name, fragment):
    with world.session() as s, pytest.raises(InvalidInput) as info:
        team_service.create_team(s, world.task(s), world.member(s, "alice"), name)
    assert info.value.message.startswith("team name: ") and fragment in info.value.message
    with world.session() as s:
        assert s.scalar(sa.select(sa.func.count(Team.id))) == 0


@pytest.mark.parametrize("taken", ["OTTERS", "Otters", "\uff2f\uff54\uff54\uff45\uff52\uff53", "  otters "])
def test_team_names_are_unique_per_task_ignoring_case(world, taken):
    _create(world, "alice", "otters")
    with world.session() as s, pytest.raises(Conflict) as info:
        team_service.create_team(s, world.task(s), world.member(s, "carol"), taken)
    assert info.value.code == "name_taken"


def test_a_team_cannot_take_a_course_members_display_name(world):
    with world.session() as s, pytest.raises(Conflict, match="display name"):
        team_service.create_team(s, world.task(s), world.member(s, "alice"), "Brave-Lynx-22")


def test_the_same_name_in_another_task_is_fine(world):
    _create(world, "alice", "otters")
    with world.session() as s:
        team_service.create_team(s, world.task(s, "other"), world.member(s, "eve", "other"), "otters")


def test_one_team_per_student_per_task(world):
    _, code = _create(world, "alice")
    _, herons = _create(world, "carol", "herons")
    with world.session() as s, pytest.raises(Conflict, match="already in team 'otters'"):
        team_service.create_team(s, world.task(s), world.member(s, "alice"), "badgers")
    with pytest.raises(Conflict, match="already in team 'otters'"):
        _join(world, herons, "alice")
    assert _join(world, code, "alice") is not None   # joining one's own team again changes nothing


def test_a_join_past_team_size_is_refused(world):
    team_id, code = _pair(world)
    with pytest.raises(Conflict) as info:
        _join(world, code, "carol")
    assert info.value.code == "team_full" and "2 of 2" in info.value.message
    assert _members(world, team_id) == {"alice", "bob"}


def _mark_final(world: World, *sub_ids: int) -> None:
    with world.session() as s:
        for sub_id in sub_ids:
            s.get(Submission, sub_id).selected = True


def test_a_join_past_the_teams_daily_limit_is_refused_counting_today_only(world):
    team_id, code = _create(world, "alice")
    yesterday = utcnow() - timedelta(days=1)
    for _ in range(2):
        _submit(world, "alice")
        _submit(world, "bob", at=yesterday)
    _submit(world, "bob", status=SubmissionStatus.FAILED)   # a failure that held no grader: not counted
    _join(world, code, "bob")                                # 2 of 3 today
    with world.session() as s:
        team_service.edit_team(s, s.get(Team, team_id), world.task(s), remove=["bob"])
    _submit(world, "bob")
    _submit(world, "bob")

    with pytest.raises(Conflict) as info:
        _join(world, code, "bob")

    assert info.value.code == "team_daily_limit"
    assert info.value.message == ("team 'otters' would have 4 of 3 submissions for 'pets' today (UTC; a team shares "
                                  "the daily limit): join tomorrow")
    assert _members(world, team_id) == {"alice"}
    with world.session() as s:   # no limit: any join fits
        world.task(s).daily_limit = None
    _join(world, code, "bob")
    assert _members(world, team_id) == {"alice", "bob"}


def test_staff_adds_and_moves_are_held_to_the_teams_daily_limit(world):
    for name, count in (("alice", 2), ("bob", 2), ("carol", 1)):
        for _ in range(count):
            _submit(world, name)
    with world.session() as s, pytest.raises(Conflict) as info:
        team_service.create_team(s, world.task(s), world.member(s, "prof"), "otters", ["alice", "bob"])
    assert info.value.code == "team_daily_limit" and "would have 4 of 3" in info.value.message
    assert "make this change tomorrow (staff cannot override it)" in info.value.message
    with world.session() as s:
        team = team_service.create_team(s, world.task(s), world.member(s, "prof"), "otters", ["alice", "carol"])
        team_id = team.id
    with world.session() as s, pytest.raises(Conflict, match="team 'Otters' would have 4 of 3"):
        team_service.edit_team(s, s.get(Team, team_id), world.task(s), name="Otters", add=["bob"], remove=["carol"])
    assert _members(world, team_id) == {"alice", "carol"}
    with world.session() as s:   # counted as the team would be: alice 2, dave 0 (carol leaves)
        team_service.edit_team(s, s.get(Team, team_id), world.task(s), add=["dave"], remove=["carol"])
    assert _members(world, team_id) == {"alice", "dave"}


def test_a_join_or_staff_move_cannot_bring_more_final_marks_than_final_count(world):
    team_id, code = _create(world, "alice")
    _mark_final(world, _submit(world, "alice"), _submit(world, "bob"))
    with pytest.raises(TooManySelected) as info:
        _join(world, code, "bob")
    assert info.value.message == ("team 'otters' would have 2 final submissions of 1 for 'pets' (a team makes one "
                                  "choice): unselect 1 of your final submissions first")
    with world.session() as s, pytest.raises(TooManySelected, match="its students must unselect 1 of them first"):
        team_service.edit_team(s, s.get(Team, team_id), world.task(s), add=["bob"])
    assert _members(world, team_id) == {"alice"}
    _join(world, code, "carol")                          # no marks: fits
    assert _members(world, team_id) == {"alice", "carol"}


# --- display names and team names ----------------------------------------------------------------

def test_a_display_name_cannot_be_a_team_name_of_any_task_of_the_course(world):
    from grader_api.services.members import set_display_name

    _create(world, "alice", "otters")
    for who, name in (("carol", "OTTERS"), ("alice", "\uff4ftters")):
        with world.session() as s, pytest.raises(Conflict) as info:
            set_display_name(s, world.member(s, who), name)
        assert info.value.code == "display_name_taken" and "alice" not in info.value.message
    with world.session() as s:   # a team of another course does not count
        team_service.create_team(s, world.task(s, "other"), world.member(s, "eve", "other"), "herons")
    with world.session() as s:
        assert set_display_name(s, world.member(s, "carol"), "Herons") == "Herons"


@pytest.mark.parametrize("guess", ["", "x", "a" * 22, "' OR 1=1 --", "A" * 500, "\x00" * 22])
def test_a_wrong_or_malformed_code_is_not_found(world, guess):
    _create(world, "alice")
    with pytest.raises(NotFound) as info:
        _join(world, guess, "bob")
    assert info.value.message == "team with that join code not found"


def test_a_prefix_of_a_real_code_is_not_found(world):
    _, code = _create(world, "alice")
    for wrong in (code[:-1], code + "A", code.upper() if code.upper() != code else code.lower()):
        with pytest.raises(NotFound):
            _join(world, wrong, "bob")


def test_a_student_of_another_course_cannot_join_and_learns_nothing(world):
    _, code = _create(world, "alice")
    with pytest.raises(NotFound) as info:
        _join(world, code, "eve")
    assert info.value.message == "team with that join code not found"   # as for a code of no team
    assert "otters" not in info.value.message


def test_staff_are_not_team_members(world):
    _, code = _create(world, "alice")
    with pytest.raises(NotAllowed):
        _join(world, code, "tina")


def test_leaving_before_a_scored_submission_and_the_last_member_dissolves_the_team(world):
    team_id, code = _pair(world)
    _submit(world, "bob", status=SubmissionStatus.QUEUED)
    _submit(world, "alice", status=SubmissionStatus.FAILED)
    with world.session() as s:
        out = team_service.leave_team(s, world.task(s), world.member(s, "bob"))
        assert (out.team, out.dissolved) == ("otters", False)
    with world.session() as s:
        out = team_service.leave_team(s, world.task(s), world.member(s, "alice"))
        assert out.dissolved
    with world.session() as s:
        assert s.get(Team, team_id) is None
        with pytest.raises(NotFound):
            team_service.leave_team(s, world.task(s), world.member(s, "alice"))
    _create(world, "carol", "otters")   # the name is free again


def test_no_one_leaves_after_the_teams_first_scored_submission_but_staff_move_them(world):
    team_id, _ = _pair(world)
    moved_sub = _submit(world, "bob", public=0.9)
    with world.session() as s, pytest.raises(Conflict) as info:
        team_service.leave_team(s, world.task(s), world.member(s, "alice"))
    assert info.value.code == "team_locked" and "staff" in info.value.message
    assert _members(world, team_id) == {"alice", "bob"}

    with world.session() as s:   # staff create a team for carol and move bob into it
        herons = team_service.create_team(s, world.task(s), world.member(s, "prof"), "herons", ["carol"])
        team_service.edit_team(s, herons, world.task(s), add=["bob"])
        herons_id = herons.id
    assert _members(world, team_id) == {"alice"} and _members(world, herons_id) == {"carol", "bob"}
    with world.session() as s:   # bob's submission went with him
        board = board_service.standings(s, world.task(s), "public")
        assert [(r.display_name, r.submission_id) for r in board] == [("herons", moved_sub)]


def test_students_cannot_change_teams_once_the_task_has_closed(world):
    _, code = _create(world, "alice")
    with world.session() as s:
        world.task(s).deadline = utcnow() - timedelta(hours=1)
    for attempt in (lambda: _join(world, code, "bob"), lambda: _create(world, "carol", "herons")):
        with pytest.raises(NotAllowed) as info:
            attempt()
        assert info.value.code == "teams_closed"
    with world.session() as s, pytest.raises(NotAllowed):
        team_service.leave_team(s, world.task(s), world.member(s, "alice"))
    with world.session() as s:   # staff still can
        team_service.create_team(s, world.task(s), world.member(s, "tina"), "herons", ["carol"])


# --- staff ---------------------------------------------------------------------------------------

def test_staff_rename_add_remove_and_dissolve(world):
    with world.session() as s:
        team = team_service.create_team(s, world.task(s), world.member(s, "tina"), "empty at first")
        team_id = team.id
    assert _members(world, team_id) == set()
    with world.session() as s:
        team, task, member = team_service.team_for_staff(s, team_id, world.user(s, "prof"))
        team_service.edit_team(s, team, task, name="Otters", add=["alice", "bob"])
        view = team_service.team_view(s, team, task, member)
        assert view.name == "Otters" and view.join_code
        assert [(m.login, m.real_name, m.display_name) for m in view.members] == [
            ("alice", "Alice Realname", "quiet-otter-11"), ("bob", "Bob Realname", "brave-lynx-22")]
    with world.session() as s, pytest.raises(Conflict) as info:
        team, task, _ = team_service.team_for_staff(s, team_id, world.user(s, "prof"))
        team_service.edit_team(s, team, task, add=["carol"])
    assert info.value.code == "team_full"
    with world.session() as s:   # removing and adding in one change fits
        team, task, _ = team_service.team_for_staff(s, team_id, world.user(s, "prof"))
        team_service.edit_team(s, team, task, add=["carol"], remove=["alice"])
    assert _members(world, team_id) == {"bob", "carol"}
    for bad, fragment in ((dict(remove=["alice"]), "not a member"), (dict(add=["eve"]), "not an active member"),
                          (dict(add=["tina"]), "course staff"), (dict(add=["bob"], remove=["bob"]), "both"),
                          (dict(name="<script>"), "not allowed")):
        with world.session() as s, pytest.raises(InvalidInput, match=fragment):
            team, task, _ = team_service.team_for_staff(s, team_id, world.user(s, "prof"))
            team_service.edit_team(s, team, task, **bad)
    assert _members(world, team_id) == {"bob", "carol"}
    with world.session() as s:
        team, _task, _ = team_service.team_for_staff(s, team_id, world.user(s, "tina"))
        team_service.dissolve_team(s, team)
    with world.session() as s:
        assert s.get(Team, team_id) is None and s.scalar(sa.select(sa.func.count(TeamMember.id))) == 0


def test_only_staff_of_the_course_change_teams(world):
    team_id, _ = _pair(world)
    with world.session() as s, pytest.raises(NotAllowed):
        team_service.team_for_staff(s, team_id, world.user(s, "alice"))
    with world.session() as s, pytest.raises(NotFound):
        team_service.team_for_staff(s, team_id, world.user(s, "eve"))
    with world.session() as s, pytest.raises(NotAllowed, match="staff"):
        team_service.create_team(s, world.task(s), world.member(s, "carol"), "herons", ["dave"])


# --- shared rules ------------------------------------------------------------------------------

def test_the_team_shares_the_daily_limit_and_the_message_names_the_team(world):
    _pair(world)
    for _ in range(3):
        _submit(world, "alice", status=SubmissionStatus.QUEUED)
    now = utcnow()
    with world.session() as s:
        task = world.task(s)
        assert task_service.submissions_left_today(s, task, world.member(s, "bob"), now) == 0
        with pytest.raises(DailyLimitReached) as info:
            task_service.check_daily_limit(s, task, world.user(s, "bob"), now)
        assert "3 of 3 submissions for 'pets' today for team 'otters'" in info.value.message
        task_service.check_daily_limit(s, task, world.user(s, "carol"), now)   # carol submits alone


def test_the_team_makes_one_final_choice_and_any_member_may_change_it(world):
    _pair(world)
    a, b = _submit(world, "alice"), _submit(world, "bob")
    with world.session() as s:
        world.task(s).final_rule = FinalRule.SELECTED
    with world.session() as s:
        submission_service.set_selected(s, s.get(Submission, a), world.user(s, "bob"), True)   # bob marks alice's
    with world.session() as s, pytest.raises(TooManySelected, match="team 'otters'"):
        submission_service.set_selected(s, s.get(Submission, b), world.user(s, "bob"), True)
    with world.session() as s:
        submission_service.set_selected(s, s.get(Submission, a), world.user(s, "alice"), False)
        submission_service.set_selected(s, s.get(Submission, b), world.user(s, "alice"), True)
    with world.session() as s, pytest.raises(NotFound):   # not a teammate's
        submission_service.set_selected(s, s.get(Submission, b), world.user(s, "carol"), True)
    with world.session() as s:
        assert set(s.scalars(sa.select(Submission.id).where(Submission.selected.is_(True)))) == {b}


def test_every_member_sees_the_teams_submissions_by_display_name(world):
    _pair(world)
    a, b, c = _submit(world, "alice", public=0.4), _submit(world, "bob", public=0.6), _submit(world, "carol")
    with world.session() as s:
        sub, viewer = submission_service.get_visible(s, a, world.user(s, "bob"))
        assert submission_service.submission_view(sub, viewer).user == "quiet-otter-11"   # never alice's login
        own, viewer = submission_service.get_visible(s, b, world.user(s, "bob"))
        assert submission_service.submission_view(own, viewer).user == "bob"
        with pytest.raises(NotFound):
            submission_service.get_visible(s, c, world.user(s, "bob"))
        assert [r.id for r in submission_service.history(s, world.task(s), world.user(s, "bob"))] == [a, b]
        assert [r.id for r in submission_service.history(s, world.task(s), world.user(s, "carol"))] == [c]
        d = submission_service.diff(s, world.user(s, "alice"), a, b)
        assert d.a == a and d.b == b


def test_the_board_shows_one_row_per_team_under_its_name(world):
    _pair(world)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    _submit(world, "alice", public=0.5, at=t0)
    best = _submit(world, "bob", public=0.8, at=t0 + timedelta(minutes=1))
    carol = _submit(world, "carol", public=0.7, at=t0 + timedelta(minutes=2))
    with world.session() as s:
        task = world.task(s)
        rows = board_service.leaderboard(s, task, "public", world.member(s, "alice")).rows
        assert [(r.rank, r.user, r.display_name, r.score, r.entries, r.is_me, r.submission_id, r.real_name)
                for r in rows] == [(1, "otters", "otters", 0.8, 2, True, best, None),
                                   (2, "calm-heron-33", "calm-heron-33", 0.7, 1, False, None, None)]
        rows = board_service.leaderboard(s, task, "public", world.member(s, "carol")).rows
        assert [(r.user, r.is_me, r.submission_id) for r in rows] == [("otters", False, None),
                                                                      ("calm-heron-33", True, carol)]
        staff = board_service.leaderboard(s, task, "public", world.member(s, "prof")).rows
        assert staff[0].user == "otters" and staff[0].real_name == "Alice Realname, Bob Realname"
        assert staff[1].user == "carol"


def test_grades_have_one_row_per_student_with_the_teams_score(world):
    _pair(world)
    _submit(world, "bob", public=0.8, private=0.75)
    _submit(world, "carol", public=0.6, private=0.55)
    with world.session() as s:
        rows = {r.student: r for r in board_service.grade_rows(s, world.task(s))}
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    assert (rows["alice"].best_private, rows["alice"].submissions) == (0.75, 1)
    assert (rows["bob"].best_private, rows["bob"].submissions) == (0.75, 1)
    assert (rows["carol"].best_private, rows["dave"].best_private) == (0.55, None)


def test_teams_of_another_task_do_not_touch_a_solo_task(world):
    _pair(world)
    for _ in range(3):
        _submit(world, "alice", status=SubmissionStatus.QUEUED, which="solo")
    with world.session() as s:
        task = world.task(s, "solo")
        task_service.check_daily_limit(s, task, world.user(s, "bob"), utcnow())
        with pytest.raises(DailyLimitReached) as info:
            task_service.check_daily_limit(s, task, world.user(s, "alice"), utcnow())
        assert "team" not in info.value.message
