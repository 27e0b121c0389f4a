"""Display names chosen over HTTP that the rules must answer themselves: keys longer than the
database column, and names that spell a classmate's with look-alike letters of another script."""

from __future__ import annotations

import pytest

from tests.service.helpers import DISPLAY_NAMES, auth


@pytest.mark.postgres
def test_a_forty_character_name_with_an_eszett_is_answered_by_the_rules(tmp_path):
    """Found by review (low): check_display_name allows 40 characters, but the uniqueness key is the
    casefolded NFKC form (display_name_key) and display_key is VARCHAR(40): 'ß' folds to 'ss',
    'ﬃ' to 'ffi', so a legal 40-character name ('ß' + 39 letters) overflows the key column. On
    PostgreSQL the student gets 422 'a value in the request is out of range' (no rule named; the
    web form gets that JSON instead of the account page); on SQLite the same name is stored.
    Team names check the key's length (teams.NAME_KEY_MAX); display names do not
    (members.set_display_name). Right: accept it (a wider key column) or refuse it with
    'display name: ...' naming the rule, the same on both databases."""
    from tests.service.pg_course import course_on_postgres

    with course_on_postgres(tmp_path) as course:
        r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": "ß" + "a" * 39},
                              headers=auth(course.alice))
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == ("display name: the name is 41 characters long once compared ignoring case "
                                      "('ß' counts as 'ss', 'ﬃ' as 'ffi'); it must be at most 40")
        r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": "ß" + "a" * 38},
                              headers=auth(course.alice))
        assert r.status_code == 200, r.text


def test_the_same_eszett_name_is_refused_on_sqlite_too(course):
    r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": "ß" + "a" * 39},
                          headers=auth(course.alice))
    assert r.status_code == 422 and r.json()["detail"].startswith("display name: the name is 41 characters"), r.text
    me = course.client.get("/api/v1/me", headers=auth(course.alice))
    assert DISPLAY_NAMES["alice"] in me.text and "ßaaa" not in me.text, me.text


def test_a_classmates_display_name_with_one_cyrillic_letter_is_refused(course):
    """Found by review (low): Uniqueness ignores case and compatibility forms (NFKC casefold) but not
    confusables: bob takes alice's 'quiet-otter-11' with a Cyrillic 'о' (U+043E), and the board
    shows two identical-looking 'quiet-otter-11' rows; bob can pass for alice to classmates (or
    a team name can do the same). Right: compare a skeleton (Unicode TR39 confusables, or at
    least refuse mixed-script names) and answer 409 display_name_taken."""
    spoof = DISPLAY_NAMES["alice"].replace("o", "\u043e", 1)
    r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": spoof},
                          headers=auth(course.bob))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_display_name"
    assert r.json()["detail"].startswith("display name: the name mixes Latin and Cyrillic letters")
    for name in ("Москва", "Ελλάδα", "山田たろう", "ラーメン fan"):   # one script, or Latin with CJK: fine
        r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": name},
                              headers=auth(course.bob))
        assert r.status_code == 200, (name, r.text)
