"""Courses and roles, without HTTP: which task a name means for a user, who is a member, and what
each role may do."""

from __future__ import annotations

import pytest

from grader_api.models import EnrollmentStatus, Role
from grader_api.services.courses import (
    course_for_new_task,
    create_course,
    enroll,
    member_of,
    memberships,
    require_instructor,
    require_staff,
    resolve_task,
)
from grader_api.services.errors import Conflict, InvalidInput, NotAllowed, NotFound


@pytest.fixture
def two_courses(session, make):
    """'default' and 'ml2' both have a task named pets; alice studies in both, bob only in default."""
    ml2 = create_course(session, "ml2", "Deep learning", "America/Chicago")
    pets_a, pets_b = make.task("pets"), make.task("pets", course=ml2)
    alice, bob = make.user("alice"), make.user("bob")
    enroll(session, ml2, alice, Role.STUDENT, display_name="alice-in-ml2")
    session.flush()
    return ml2, pets_a, pets_b, alice, bob


def test_a_task_name_in_two_of_ones_courses_needs_the_course(session, two_courses):
    ml2, pets_a, pets_b, alice, bob = two_courses
    with pytest.raises(Conflict) as err:
        resolve_task(session, alice, "pets")
    assert err.value.code == "ambiguous_task" and "default, ml2" in err.value.message
    task, member = resolve_task(session, alice, "pets", "ml2")
    assert (task.id, member.course_slug, member.display_name) == (pets_b.id, "ml2", "alice-in-ml2")
    task, member = resolve_task(session, bob, "pets")  # bob has only one course: no need to say
    assert (task.id, member.course_slug) == (pets_a.id, "default")


def test_another_courses_task_is_not_found_and_so_is_a_dropped_students(session, make, two_courses):
    ml2, _a, _b, alice, bob = two_courses
    with pytest.raises(NotFound):
        resolve_task(session, bob, "pets", "ml2")
    enrollment = enroll(session, ml2, bob, Role.STUDENT)
    enrollment.status = EnrollmentStatus.DROPPED
    session.flush()
    with pytest.raises(NotFound):
        resolve_task(session, bob, "pets", "ml2")
    assert [m.course_slug for m in memberships(session, bob)] == ["default"]
    assert member_of(session, bob, ml2.id) is None


def test_roles_allow_what_the_course_says(session, make):
    prof, ta, alice = make.user("prof", Role.INSTRUCTOR), make.user("tara", Role.TA), make.user("alice")
    task = make.task()
    m = {u.name: member_of(session, u, task.course_id) for u in (prof, ta, alice)}
    assert require_instructor(m["prof"]) and require_staff(m["prof"]) and require_staff(m["tara"])
    with pytest.raises(NotAllowed):
        require_instructor(m["tara"])
    with pytest.raises(NotAllowed):
        require_staff(m["alice"])


def test_a_new_task_goes_to_the_one_course_taught_or_must_name_it(session, make):
    prof = make.user("prof", Role.INSTRUCTOR)
    course, member = course_for_new_task(session, prof, None)
    assert course.slug == "default" and member.is_instructor
    enroll(session, create_course(session, "ml2", "Deep learning"), prof, Role.INSTRUCTOR)
    with pytest.raises(InvalidInput) as err:
        course_for_new_task(session, prof, None)
    assert "default, ml2" in err.value.message
    assert course_for_new_task(session, prof, "ml2")[0].slug == "ml2"
    with pytest.raises(NotFound):
        course_for_new_task(session, make.user("alice"), "ml2")  # not hers: as if it did not exist


@pytest.mark.parametrize("slug,title,tz,needle", [
    ("ML 101", "t", "UTC", "lowercase letters"), ("x", "t", "UTC", "2–40"), ("ok-slug", "", "UTC", "title"),
    ("ok-slug", "t", "Mars/Olympus", "IANA"), ("ok-slug", "t", "../../etc/passwd", "IANA"),
    ("ok-slug", "<b>x</b>\x07", "UTC", "printable"),
])
def test_course_fields_are_checked(session, slug, title, tz, needle):
    with pytest.raises(InvalidInput) as err:
        create_course(session, slug, title, tz)
    assert needle in err.value.message


def test_course_slugs_are_unique(session):
    create_course(session, "ml2", "Deep learning")
    with pytest.raises(Conflict):
        create_course(session, "ml2", "Again")


def test_enrolled_students_get_a_unique_pseudonym(session, make):
    """Even a random source that repeats itself never gives two students of a course one name."""
    import random

    from grader_api.models import User

    course, names = make.course(), []
    for i in range(20):
        user = User(name=f"p{i}", role=Role.STUDENT)
        session.add(user)
        session.flush()
        names.append(enroll(session, course, user, Role.STUDENT, rng=random.Random(7)).display_name)
    assert len({n.casefold() for n in names}) == 20
    assert all(n.count("-") == 2 for n in names)
