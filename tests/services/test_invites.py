"""Sign-in invites on a real (SQLite) database: who gets one, what is stored, single use, expiry,
replacement by a newer invites.csv, and one answer for every code that does not sign in."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from grader_api.models import ApiToken, Enrollment, EnrollmentStatus, Invite, Role, User, utcnow
from grader_api.services.courses import create_course, enroll
from grader_api.services.errors import InvalidInput, NotFound
from grader_api.services.invites import (
    InviteLink,
    InviteNotValid,
    invites_csv,
    issue_invites,
    redeem,
)
from grader_api.tokens import authenticate, issue_token

BASE = "https://grader.example.edu"


@pytest.fixture
def ml(session):
    course = create_course(session, "ml101", "Machine Learning")
    for name, role, full in (("prof", Role.INSTRUCTOR, "Pat Prof"), ("tara", Role.TA, "Tara T"),
                             ("ann@uni.edu", Role.STUDENT, "Ann A"), ("bo@uni.edu", Role.STUDENT, "Bo B"),
                             ("cy@uni.edu", Role.STUDENT, "=cmd|' /C calc'!A0")):
        user = User(name=name, role=role, full_name=full, email=name if "@" in name else None)
        session.add(user)
        session.flush()
        enroll(session, course, user, role)
    return course


def user(session, name) -> User:
    return session.scalar(sa.select(User).where(User.name == name))


def code_of(link: InviteLink) -> str:
    return link.link.rsplit("/", 1)[1]


def test_each_active_student_who_has_not_joined_gets_one_link(session, ml):
    issue_token(session, user(session, "bo@uni.edu"))                    # joined already
    dropped = session.scalar(sa.select(Enrollment).where(Enrollment.user_id == user(session, "cy@uni.edu").id))
    dropped.status = EnrollmentStatus.DROPPED

    links = issue_invites(session, ml, base_url=BASE + "/", issuer=None).links

    assert [(x.student_login, x.full_name, x.email) for x in links] == [("ann@uni.edu", "Ann A", "ann@uni.edu")]
    assert links[0].link.startswith(BASE + "/join/") and len(code_of(links[0])) == 32   # 192 bits


def test_only_the_sha256_of_a_code_is_stored_and_it_is_valid_for_14_days(session, ml):
    before = utcnow()
    links = issue_invites(session, ml, base_url=BASE, issuer=None).links
    rows = session.scalars(sa.select(Invite)).all()
    stored = {r.code_hash for r in rows}

    assert stored == {hashlib.sha256(code_of(x).encode()).hexdigest() for x in links}
    assert not any(code_of(x) in h for x in links for h in stored)
    for r in rows:
        assert timedelta(days=14) <= r.expires_at - before < timedelta(days=14, minutes=1) and r.used_at is None


def test_a_code_signs_in_once_with_a_new_token(session, ml):
    link = {x.student_login: x for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}["ann@uni.edu"]

    who, token = redeem(session, code_of(link))
    session.flush()

    assert who.name == "ann@uni.edu" and authenticate(session, token).name == "ann@uni.edu"
    assert session.scalar(sa.select(ApiToken.token_hash).where(ApiToken.user_id == who.id)) == \
        hashlib.sha256(token.encode()).hexdigest()
    with pytest.raises(InviteNotValid):
        redeem(session, code_of(link))
    # Joined: the next invites.csv leaves her out.
    assert "ann@uni.edu" not in {x.student_login for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}


def _refusal(session, code, now=None) -> str:
    with pytest.raises(NotFound) as caught:
        redeem(session, code, now)
    assert isinstance(caught.value, InviteNotValid) and caught.value.code == "not_found"
    return caught.value.message


def test_unknown_used_expired_and_dropped_codes_get_one_answer(session, ml):
    links = {x.student_login: code_of(x) for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}
    redeem(session, links["ann@uni.edu"])
    session.get(Enrollment, session.scalar(sa.select(Enrollment.id).where(
        Enrollment.user_id == user(session, "cy@uni.edu").id))).status = EnrollmentStatus.DROPPED
    session.flush()

    answers = {
        _refusal(session, links["ann@uni.edu"]),                                        # used
        _refusal(session, links["bo@uni.edu"], utcnow() + timedelta(days=14, seconds=1)),  # expired
        _refusal(session, links["cy@uni.edu"]),                                         # dropped since
        _refusal(session, "A" * 32),                                                    # guessed
        _refusal(session, "short"), _refusal(session, "x" * 5000), _refusal(session, "../../etc/passwd"),
    }
    assert answers == {"this sign-in link is not valid: it may have been used already or have expired; "
                       "ask your instructor for a new one"}
    assert redeem(session, links["bo@uni.edu"], utcnow() + timedelta(days=13))[0].name == "bo@uni.edu"


def test_a_newer_invites_csv_replaces_the_earlier_unused_links(session, ml):
    first = {x.student_login: code_of(x) for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}
    second = {x.student_login: code_of(x) for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}

    assert first.keys() == second.keys() and not set(first.values()) & set(second.values())
    _refusal(session, first["ann@uni.edu"])
    assert redeem(session, second["ann@uni.edu"])[0].name == "ann@uni.edu"


def test_invites_csv_is_safe_to_open_in_a_spreadsheet(session, ml):
    text = invites_csv(issue_invites(session, ml, base_url=BASE, issuer=None).links)

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["student", "email", "link"]
    assert [r[:2] for r in rows[1:]] == [["Ann A", "ann@uni.edu"], ["Bo B", "bo@uni.edu"],
                                          ["'=cmd|' /C calc'!A0", "cy@uni.edu"]]
    assert all(r[2].startswith(BASE + "/join/") for r in rows[1:])


@pytest.mark.parametrize("base", ["javascript:alert(1)", "grader.example.edu", "https://", "https://a b", ""])
def test_a_base_url_must_be_an_http_address(session, ml, base):
    with pytest.raises(InvalidInput, match="base URL"):
        issue_invites(session, ml, base_url=base, issuer=None)


def _instructor(session, name, *courses) -> User:
    who = User(name=name, role=Role.INSTRUCTOR)
    session.add(who)
    session.flush()
    for course in courses:
        enroll(session, course, who, Role.INSTRUCTOR)
    return who


def test_an_instructor_gets_links_only_for_students_all_of_whose_courses_they_teach(session, ml):
    cv = create_course(session, "cv201", "Vision")
    enroll(session, cv, user(session, "ann@uni.edu"), Role.STUDENT)        # ann: ml101 and cv201
    prof = _instructor(session, "pat", ml)
    both = _instructor(session, "kim", ml, cv)

    issued = issue_invites(session, ml, base_url=BASE, issuer=prof)

    assert [x.student_login for x in issued.links] == ["bo@uni.edu", "cy@uni.edu"]
    assert issued.withheld == ("ann@uni.edu",)
    assert issued.note.startswith("1 student(s) are enrolled in other courses too and got no link here: ask the "
                                  "site administrator (grade admin roster import")
    # ann's earlier link (none here) is not replaced either; one who teaches both, and the site
    # administrator, get hers.
    assert "ann@uni.edu" in {x.student_login for x in issue_invites(session, ml, base_url=BASE, issuer=both).links}
    everyone = issue_invites(session, ml, base_url=BASE, issuer=None)
    assert len(everyone.links) == 3 and everyone.withheld == () and everyone.note is None


def test_issuing_or_rotating_a_token_voids_the_users_unused_links(session, ml):
    from grader_api.tokens import rotate_token

    links = {x.student_login: code_of(x) for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}
    issue_token(session, user(session, "ann@uni.edu"))
    rotate_token(session, user(session, "bo@uni.edu"))
    session.flush()

    _refusal(session, links["ann@uni.edu"])
    _refusal(session, links["bo@uni.edu"])
    assert redeem(session, links["cy@uni.edu"])[0].name == "cy@uni.edu"


def test_a_user_who_holds_a_live_token_is_told_to_log_in_with_it(session, ml):
    from grader_api.services.invites import AlreadyJoined
    from grader_api.tokens import hash_token

    links = {x.student_login: code_of(x) for x in issue_invites(session, ml, base_url=BASE, issuer=None).links}
    # A token issued while the link was being made (the link outlived issue_token's voiding).
    session.add(ApiToken(user_id=user(session, "ann@uni.edu").id, token_hash=hash_token("t" * 43)))
    session.flush()

    with pytest.raises(AlreadyJoined) as caught:
        redeem(session, links["ann@uni.edu"])
    assert caught.value.message.startswith("you already have a token: log in with it, or ask your instructor")
    assert session.scalar(sa.select(sa.func.count(ApiToken.id))) == 1          # no second token
    assert session.scalar(sa.select(Invite.used_at).where(Invite.code_hash == hashlib.sha256(
        links["ann@uni.edu"].encode()).hexdigest())) is None
