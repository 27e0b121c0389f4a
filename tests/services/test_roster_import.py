"""Roster import on a real (SQLite) database: who is added, updated, re-activated and dropped,
what a file may never do to staff, and that bad files change nothing."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from grader_api.models import Course, Enrollment, EnrollmentStatus, Role, Submission, User
from grader_api.roster import Refused, Skipped
from grader_api.services.courses import create_course, enroll, member_of
from grader_api.services.errors import InvalidInput, NotAllowed, NotFound
from grader_api.services.roster_import import import_roster, parse_roster_file
from tests.services.factory import Factory

BOM = b"\xef\xbb\xbf"
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (3101)", "Current Score"]
POINTS_POSSIBLE = ["    Points Possible", "", "", "", "", "10.00", "(read only)"]
TEST_STUDENT = ["Student, Test", "99999", "", "d41d8cd98f00b204e9800998ecf8427e", "Section 1", "", ""]


def csv_bytes(rows: list[list[str]], *, bom: bool = True, newline: str = "\r\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return (BOM if bom else b"") + out.getvalue().encode("utf-8")


def canvas_student(i: int, section: str | None = None) -> list[str]:
    return [f"Last{i:03d}, First{i}", str(50000 + i), f"S{i:06d}", f"stu{i:03d}@uni.edu",
            section or ("Section 1" if i % 2 else "Section 2"), "7.50", "75.00"]


def canvas(students: range | list[int], *, extra: list[list[str]] | None = None) -> bytes:
    return csv_bytes([CANVAS_HEADER, POINTS_POSSIBLE, *(canvas_student(i) for i in students), *(extra or []),
                      TEST_STUDENT])


def plain(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


@pytest.fixture
def ml(session) -> Course:
    return create_course(session, "ml101", "Machine Learning")


@pytest.fixture
def prof(session, ml):
    user = User(name="prof", role=Role.INSTRUCTOR)
    session.add(user)
    session.flush()
    enroll(session, ml, user, Role.INSTRUCTOR)
    return member_of(session, user, ml.id)


def run(session, course, data: bytes, actor):
    return import_roster(session, course, parse_roster_file(data), actor=actor)


def enrollment_of(session, course, login) -> Enrollment:
    return session.scalar(sa.select(Enrollment).join(User, User.id == Enrollment.user_id)
                          .where(Enrollment.course_id == course.id, User.name == login))


def snapshot(session, course) -> list[tuple]:
    """Everything an import may change, to compare before and after."""
    return sorted(session.execute(
        sa.select(User.name, User.full_name, User.email, Enrollment.role, Enrollment.status, Enrollment.section,
                  Enrollment.lms_id, Enrollment.sis_user_id, Enrollment.sis_login_id, Enrollment.display_name,
                  Enrollment.updated_at)
        .join(Enrollment, Enrollment.user_id == User.id).where(Enrollment.course_id == course.id)).all())


def test_canvas_export_creates_and_enrolls_every_student_with_ids_and_a_pseudonym(session, ml, prof):
    result = run(session, ml, canvas(range(400)), prof)

    assert (result.format, result.added, result.unchanged, result.updated, result.dropped) == ("canvas", 400, 0, 0, 0)
    assert result.refused == () and result.drops_withheld is None
    assert result.skipped == (Skipped(2, "Canvas's 'Points Possible' line"),
                              Skipped(403, "Canvas's Test Student ('Student, Test')"))
    user = session.scalar(sa.select(User).where(User.name == "stu007@uni.edu"))
    assert (user.full_name, user.email, user.role) == ("Last007, First7", "stu007@uni.edu", Role.STUDENT)
    e = enrollment_of(session, ml, "stu007@uni.edu")
    assert (e.role, e.status, e.section, e.lms_id, e.sis_user_id, e.sis_login_id) == (
        Role.STUDENT, EnrollmentStatus.ACTIVE, "Section 1", "50007", "S000007", "stu007@uni.edu")
    shown = session.scalars(sa.select(Enrollment.display_key).where(Enrollment.course_id == ml.id)).all()
    assert len(shown) == len(set(shown)) == 401   # unique pseudonyms, none of them a real name or login
    assert not any("stu" in name or "last" in name for name in shown if name != "prof")
    assert session.scalar(sa.select(sa.func.count()).select_from(sa.text("api_tokens"))) == 0  # invites give tokens


def test_the_same_file_twice_changes_nothing(session, ml, prof):
    data = canvas(range(50))
    run(session, ml, data, prof)
    before = snapshot(session, ml)

    again = run(session, ml, data, prof)

    assert (again.added, again.unchanged, again.updated, again.dropped) == (0, 50, 0, 0)
    assert snapshot(session, ml) == before


def test_missing_students_are_dropped_kept_with_their_submissions_and_come_back(session, ml, prof):
    run(session, ml, canvas(range(10)), prof)
    make = Factory(session)
    task = make.task(course=ml)
    gone = session.scalar(sa.select(User).where(User.name == "stu003@uni.edu"))
    make.submission(task, gone, public=0.5)

    later = run(session, ml, canvas([i for i in range(10) if i not in (3, 4)]), prof)

    assert (later.added, later.unchanged, later.updated, later.dropped) == (0, 8, 0, 2)
    assert later.dropped_logins == ("stu003@uni.edu", "stu004@uni.edu")
    assert enrollment_of(session, ml, "stu003@uni.edu").status == EnrollmentStatus.DROPPED
    assert member_of(session, gone, ml.id) is None       # out of the course's pages and boards
    assert session.scalar(sa.select(sa.func.count(Submission.id)).where(Submission.user_id == gone.id)) == 1
    assert member_of(session, session.scalar(sa.select(User).where(User.name == "prof")), ml.id).is_instructor

    back = run(session, ml, canvas(range(10)), prof)

    assert (back.added, back.unchanged, back.updated, back.dropped) == (0, 8, 2, 0)
    assert enrollment_of(session, ml, "stu003@uni.edu").status == EnrollmentStatus.ACTIVE
    assert run(session, ml, canvas([i for i in range(10) if i not in (3, 4)]), prof).dropped == 2
    assert run(session, ml, canvas([i for i in range(10) if i not in (3, 4)]), prof).dropped == 0  # dropped once


def test_changed_section_name_and_ids_count_as_updated(session, ml, prof):
    run(session, ml, canvas(range(3)), prof)
    moved = canvas_student(1, section="Section 9")
    renamed = canvas_student(2)
    renamed[0] = "Last002, Firstname Changed"
    data = csv_bytes([CANVAS_HEADER, canvas_student(0), moved, renamed])

    result = run(session, ml, data, prof)

    assert (result.added, result.unchanged, result.updated, result.dropped) == (0, 1, 2, 0)
    assert enrollment_of(session, ml, "stu001@uni.edu").section == "Section 9"
    renamed_to = session.scalar(sa.select(User.full_name).where(User.name == "stu002@uni.edu"))
    assert renamed_to == "Last002, Firstname Changed"


def test_empty_cells_keep_what_an_earlier_import_stored(session, ml, prof):
    run(session, ml, canvas(range(2)), prof)

    result = run(session, ml, plain("name,email", "\"Last000, First0\",stu000@uni.edu",
                                    "\"Last001, First1\",stu001@uni.edu"), prof)

    assert (result.unchanged, result.updated) == (2, 0)
    e = enrollment_of(session, ml, "stu000@uni.edu")
    assert (e.section, e.lms_id, e.sis_user_id) == ("Section 2", "50000", "S000000")


def test_a_roster_never_demotes_or_drops_staff(session, ml, prof):
    ta = User(name="tara@uni.edu", role=Role.TA)
    session.add(ta)
    session.flush()
    enroll(session, ml, ta, Role.TA)
    result = run(session, ml, plain("name,email,role", "Tara,tara@uni.edu,student", "Ann,ann@uni.edu,student"), prof)
    assert result.added == 1 and [r.line for r in result.refused] == [2]

    canvas_rows = csv_bytes([CANVAS_HEADER, ["Prof, The", "1", "", "prof", "A", "", ""],
                             ["Ta, Tara", "2", "", "tara@uni.edu", "A", "", ""], canvas_student(5)])
    result = run(session, ml, canvas_rows, prof)

    assert result.refused == (
        Refused(2, "'prof' is an instructor of this course and this row makes them student: a roster file never "
                   "changes the role of course staff (change it on the roster page)"),
        Refused(3, "'tara@uni.edu' is a TA of this course and this row makes them student: a roster file never "
                   "changes the role of course staff (change it on the roster page)"))
    assert result.added == 1 and result.dropped == 1 and result.dropped_logins == ("ann@uni.edu",)
    assert enrollment_of(session, ml, "prof").role == Role.INSTRUCTOR
    assert enrollment_of(session, ml, "tara@uni.edu").role == Role.TA
    assert enrollment_of(session, ml, "tara@uni.edu").status == EnrollmentStatus.ACTIVE   # staff are never dropped


def test_plain_roster_roles_promote_a_student_and_keep_a_ta_row_a_ta(session, ml, prof):
    run(session, ml, plain("name,email", "Ann,ann@uni.edu", "Bo,bo@uni.edu"), prof)

    result = run(session, ml, plain("name,email,role", "Ann,ann@uni.edu,ta", "Bo,bo@uni.edu,student",
                                    "Cy,cy@uni.edu,ta"), prof)

    assert (result.added, result.updated, result.unchanged) == (1, 1, 1)
    assert enrollment_of(session, ml, "ann@uni.edu").role == Role.TA
    assert enrollment_of(session, ml, "cy@uni.edu").role == Role.TA
    again = run(session, ml, plain("name,email,role", "Ann,ann@uni.edu,ta", "Bo,bo@uni.edu,student",
                                   "Cy,cy@uni.edu,ta"), prof)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)


def test_a_file_with_no_importable_row_is_refused_whole_and_drops_nobody(session, ml, prof):
    run(session, ml, plain("name,email", "Ann,ann@uni.edu", "Bo,bo@uni.edu"), prof)
    before = snapshot(session, ml)

    with pytest.raises(InvalidInput) as caught:
        run(session, ml, plain("name,email", "<b>Eve</b>,eve@uni.edu", "Mal,not-an-email"), prof)
    assert caught.value.code == "no_importable_rows" and caught.value.line == 2
    assert "nothing was changed and nobody was dropped" in caught.value.message
    assert "line 2: name '<b>Eve</b>' contains '<' or '>'" in caught.value.message
    assert "line 3: email 'not-an-email'" in caught.value.message

    with pytest.raises(InvalidInput, match="no row could be imported"):   # only staff rows
        run(session, ml, csv_bytes([CANVAS_HEADER, ["Prof, The", "1", "", "prof", "A", "", ""]]), prof)
    assert snapshot(session, ml) == before


def test_refused_rows_hold_back_the_drops(session, ml, prof):
    run(session, ml, canvas(range(5)), prof)
    broken = canvas_student(2)
    broken[0] = "Last002, First\u202e2"   # a bidi override: refused, though it is a current student

    result = run(session, ml, canvas([0, 1], extra=[broken]), prof)

    assert result.dropped == 0 and result.dropped_logins == ()
    assert [r.line for r in result.refused] == [5]
    assert result.drops_withheld.startswith("3 active student(s) are not in the file, but nobody was dropped")
    assert enrollment_of(session, ml, "stu002@uni.edu").status == EnrollmentStatus.ACTIVE


def test_people_of_other_courses_are_enrolled_without_writing_their_names(session, ml, prof):
    other = create_course(session, "cv201", "Vision")
    shared = User(name="Ann@Uni.edu", role=Role.STUDENT, full_name="Ann Original", email=None)
    session.add(shared)
    session.flush()
    enroll(session, other, shared, Role.STUDENT)

    result = run(session, ml, plain("name,email", "Ann From ML,ann@uni.edu"), prof)

    assert result.added == 1
    assert session.scalar(sa.select(sa.func.count(User.id)).where(sa.func.lower(User.name) == "ann@uni.edu")) == 1
    assert (shared.full_name, shared.email) == ("Ann Original", None)   # user-level: neither written nor filled
    assert member_of(session, shared, ml.id).role == Role.STUDENT
    assert member_of(session, shared, other.id).role == Role.STUDENT


def test_only_an_instructor_of_the_course_imports(session, ml, prof):
    ta = User(name="tara", role=Role.TA)
    session.add(ta)
    session.flush()
    enroll(session, ml, ta, Role.TA)
    other = create_course(session, "cv201", "Vision")
    enroll(session, other, session.scalar(sa.select(User).where(User.name == "prof")), Role.INSTRUCTOR)
    data = plain("name,email", "Ann,ann@uni.edu")

    with pytest.raises(NotAllowed):
        run(session, ml, data, member_of(session, ta, ml.id))
    with pytest.raises(NotFound):
        run(session, other, data, prof)   # prof's membership of ml101 is not one of cv201
    assert run(session, ml, data, None).added == 1   # the site administrator (no membership)


@pytest.mark.parametrize(("data", "line", "words"), [
    (b"", None, "the file is empty"),
    (b"\xef\xbb\xbf", None, "the file is empty"),
    (b"name,email\r\n", 1, "no people in the file"),
    (b"name,email,shoe size\nAnn,ann@uni.edu,9\n", 1, "unknown column(s) 'shoe size'"),
    (b"name,email\nAnn,\"ann@uni.edu\nBo,bo@uni.edu\n", 2, "a quote opened here is never closed"),
    (b"\xff\xfen\x00a\x00", None, "UTF-16"),
    (b"name,email\nAnn,ann@uni.edu\n\xff\n", 3, "not UTF-8"),
    (b"x" * (10 * 1024 * 1024), None, "the file is 10 MB; the limit is 2 MB"),
])
def test_whole_file_problems_are_refused_with_their_line_and_change_nothing(session, ml, prof, data, line, words):
    before = snapshot(session, ml)
    with pytest.raises(InvalidInput) as caught:
        run(session, ml, data, prof)
    assert caught.value.code == "invalid_roster" and caught.value.line == line
    assert words in caught.value.message and caught.value.message.startswith("roster: ")
    assert snapshot(session, ml) == before


def test_hostile_rows_bom_crlf_quoted_commas_duplicates_unknown_roles(session, ml, prof):
    data = BOM + (b"name,email,role,section\r\n"
                  b"\"Smith, Ann\",ann@uni.edu,student,\"A, morning\"\r\n"
                  b"\"Smith, Ann\",ann@uni.edu,student,\"A, morning\"\r\n"
                  b"Bo,bo@uni.edu,professor,\r\n"
                  b"\"=HYPERLINK(\"\"http://x\"\")\",cy@uni.edu,,\r\n")

    result = run(session, ml, data, prof)

    assert result.added == 2
    assert [(r.line, r.reason.split(" (")[0]) for r in result.refused] == [
        (3, "duplicate of line 2"), (4, "role 'professor' is not one of student, ta, instructor")]
    assert session.scalar(sa.select(User.full_name).where(User.name == "ann@uni.edu")) == "Smith, Ann"
    assert enrollment_of(session, ml, "ann@uni.edu").section == "A, morning"
    # A formula is plain data in the database; invites.csv and the grade export neutralise it.
    assert session.scalar(sa.select(User.full_name).where(User.name == "cy@uni.edu")) == '=HYPERLINK("http://x")'


def test_a_file_of_staff_only_drops_nobody(session, ml, prof):
    run(session, ml, canvas(range(3)), prof)

    result = run(session, ml, plain("name,email,role", "Tia Two,tia@uni.edu,ta"), prof)

    assert (result.added, result.dropped) == (1, 0)
    assert result.drops_withheld.startswith("3 active student(s) are not in the file, but nobody was dropped "
                                            "because the file lists no student")
    assert all(enrollment_of(session, ml, f"stu{i:03d}@uni.edu").status == EnrollmentStatus.ACTIVE for i in range(3))


def test_a_canvas_row_is_matched_by_its_stored_canvas_id_before_its_login(session, ml, prof):
    run(session, ml, canvas(range(3)), prof)
    before = snapshot(session, ml)
    no_sis = [[*canvas_student(i)[:2], "", "", *canvas_student(i)[4:]] for i in range(3)]

    result = run(session, ml, csv_bytes([CANVAS_HEADER, *no_sis]), prof)

    assert (result.added, result.updated, result.unchanged, result.dropped) == (0, 0, 3, 0)
    assert snapshot(session, ml) == before
    assert session.scalar(sa.select(sa.func.count(User.id)).where(User.name.like("5000%"))) == 0


def test_one_person_matched_by_canvas_id_and_by_login_on_two_lines_is_refused(session, ml, prof):
    run(session, ml, canvas(range(2)), prof)
    # line 2: stu000's Canvas ID without SIS data; line 3: stu000's login with a new Canvas ID.
    rows = [["Last000, First0", "50000", "", "", "A", "", ""],
            ["Last000, First0", "60000", "S000000", "stu000@uni.edu", "A", "", ""], canvas_student(1)]

    result = run(session, ml, csv_bytes([CANVAS_HEADER, *rows]), prof)

    assert [(r.line, r.reason.split(" (")[0]) for r in result.refused] == [(3, "the same person as line 2")]
    assert enrollment_of(session, ml, "stu000@uni.edu").lms_id == "50000"


def test_names_are_user_level_and_never_written_by_another_courses_import(session, ml, prof):
    other = create_course(session, "cv201", "Vision")
    alice = User(name="alice", role=Role.STUDENT)          # created without a name in another course
    session.add(alice)
    session.flush()
    enroll(session, other, alice, Role.STUDENT)

    run(session, ml, csv_bytes([CANVAS_HEADER, ["Evil, Mallory", "1", "S1", "alice", "A", "", ""]]), prof)

    assert (alice.full_name, alice.email) == (None, None)
    # Enrolled in ml101 only: the file writes them.
    run(session, ml, plain("name,email", "Ann Lee,ann@uni.edu"), prof)
    run(session, ml, plain("name,email", "Ann B. Lee,ann@uni.edu"), prof)
    assert session.scalar(sa.select(User.full_name).where(User.name == "ann@uni.edu")) == "Ann B. Lee"
