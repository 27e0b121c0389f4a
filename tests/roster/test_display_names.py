"""grader_api.display_names: generated pseudonyms and the checks on chosen display names."""

from __future__ import annotations

import random
import re

import pytest

from grader_api.display_names import (
    ADJECTIVES,
    ANIMALS,
    PSEUDONYM_ATTEMPTS,
    InvalidDisplayName,
    PseudonymsExhausted,
    check_display_name,
    display_name_key,
    letter_script,
    pseudonym,
    unique_pseudonym,
)

WORD = re.compile(r"[a-z]+")


def test_word_lists_are_large_lowercase_ascii_and_distinct():
    for words in (ADJECTIVES, ANIMALS):
        assert len(words) >= 60
        assert len(set(words)) == len(words)
        assert all(WORD.fullmatch(word) for word in words), [w for w in words if not WORD.fullmatch(w)]
    assert not set(ADJECTIVES) & set(ANIMALS)


def test_pseudonym_shape_and_determinism():
    names = [pseudonym(random.Random(7)) for _ in range(3)]
    assert names[0] == names[1] == names[2]   # the same seed, the same name
    rng = random.Random(1)
    for _ in range(2000):
        adjective, animal, number = pseudonym(rng).split("-")
        assert adjective in ADJECTIVES and animal in ANIMALS
        assert len(number) == 2 and 10 <= int(number) <= 99
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{4}", pseudonym(random.Random(3), digits=4))


def test_every_pseudonym_is_a_valid_display_name():
    longest = f"{max(ADJECTIVES, key=len)}-{max(ANIMALS, key=len)}-999999"
    assert check_display_name(longest) == longest
    rng = random.Random(2)
    for _ in range(500):
        name = pseudonym(rng)
        assert check_display_name(name) == name


def test_unique_pseudonym_returns_a_free_name():
    taken = {pseudonym(random.Random(5))}
    name = unique_pseudonym(lambda candidate: candidate in taken, random.Random(5))
    assert name not in taken
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{2}", name)


def test_unique_pseudonym_widens_the_number_when_two_digit_names_keep_colliding():
    calls: list[str] = []

    def taken(candidate: str) -> bool:
        calls.append(candidate)
        return len(candidate.rsplit("-", 1)[1]) == 2   # every two-digit name is taken

    name = unique_pseudonym(taken, random.Random(9))
    assert len(name.rsplit("-", 1)[1]) == 3
    assert len(calls) == PSEUDONYM_ATTEMPTS + 1


def test_unique_pseudonym_gives_up_after_a_bounded_number_of_tries():
    calls: list[str] = []

    def everything_taken(candidate: str) -> bool:
        calls.append(candidate)
        return True

    with pytest.raises(PseudonymsExhausted):
        unique_pseudonym(everything_taken, random.Random(0), attempts=4)
    assert len(calls) == 4 * 5   # 4 tries for each of 2, 3, 4, 5 and 6 digits
    assert len(calls[-1].rsplit("-", 1)[1]) == 6


@pytest.mark.parametrize(("given", "normalised"), [
    ("Eve", "Eve"),
    ("  Deep   Learner \t", "Deep Learner"),
    ("team\u00a0rocket", "team rocket"),            # no-break space is whitespace too
    ("Jose\u0301", "Jos\u00e9"),                    # NFC
    ("teal-otter-42", "teal-otter-42"),
    ("Ünïcødé 名前", "Ünïcødé 名前"),
    ("R2-D2", "R2-D2"),
    ("x" * 40, "x" * 40),
    ("🙂 fan", "🙂 fan"),
    ("ß" + "a" * 38, "ß" + "a" * 38),                # its key 'ss' + 38 letters: 40
    ("Москва", "Москва"),                            # one script other than Latin
    ("Ελλάδα 2", "Ελλάδα 2"),
    ("山田たろう", "山田たろう"),                    # Han with Hiragana (Japanese)
    ("ラーメン fan", "ラーメン fan"),                  # Latin with Katakana
    ("한국 team", "한국 team"),                        # Latin with Hangul
    ("ｆｕｌｌ width", "ｆｕｌｌ width"),              # fullwidth letters are Latin
])
def test_accepted_names(given, normalised):
    assert check_display_name(given) == normalised


@pytest.mark.parametrize(("given", "reason"), [
    ("ab", "the name is 2 characters long; it must be 3 to 40"),
    ("  a    ", "the name is 1 character long; it must be 3 to 40"),
    ("", "the name is 0 characters long; it must be 3 to 40"),
    ("x" * 41, "the name is 41 characters long; it must be 3 to 40"),
    ("x" * 300, "the name is 300 characters long; it must be 3 to 40"),
    ("<b>bold</b>", "the name contains < >; these characters are not allowed: < > & \" ' ` \\"),
    ("Tom & Jerry", "the name contains &; these characters are not allowed: < > & \" ' ` \\"),
    ('say "hi"', "the name contains \"; these characters are not allowed: < > & \" ' ` \\"),
    ("O'Neil", "the name contains '; these characters are not allowed: < > & \" ' ` \\"),
    ("back\\slash", "the name contains \\; these characters are not allowed: < > & \" ' ` \\"),
    ("`rm`", "the name contains `; these characters are not allowed: < > & \" ' ` \\"),
    ("abc\u202edef", "the name holds the control or invisible character U+202E at position 4; use visible "
                     "characters only"),
    ("ab\u200dcd", "the name holds the control or invisible character U+200D at position 3; use visible "
                   "characters only"),
    ("ab\u200bcd", "the name holds the control or invisible character U+200B at position 3; use visible "
                   "characters only"),
    ("line\nbreak", "the name holds the control or invisible character U+000A at position 5; use visible "
                    "characters only"),
    ("tab\there", "the name holds the control or invisible character U+0009 at position 4; use visible "
                  "characters only"),
    ("nul\x00l", "the name holds the control or invisible character U+0000 at position 4; use visible "
                 "characters only"),
    ("12345", "the name must contain at least one letter"),
    ("--- !!! ---", "the name must contain at least one letter"),
    ("3.14", "the name must contain at least one letter"),
    ("eve@uni.edu", "the name looks like an email address; other students see it, so choose something else"),
    ("Eve.Smith@Uni", "the name looks like an email address; other students see it, so choose something else"),
    ("ß" + "a" * 39, "the name is 41 characters long once compared ignoring case ('ß' counts as 'ss', 'ﬃ' as "
                     "'ffi'); it must be at most 40"),
    ("\ufb03" * 14, "the name is 42 characters long once compared ignoring case ('ß' counts as 'ss', 'ﬃ' as "
                     "'ffi'); it must be at most 40"),
    ("quiet-\u043etter-11", "the name mixes Latin and Cyrillic letters ('q' at position 1, 'о' at position 7); "
                            "write it in one script, so it cannot pass for another name with look-alike letters "
                            "(Latin may be mixed only with Chinese, Japanese or Korean)"),
    ("\u0391lice", "the name mixes Greek and Latin letters ('Α' at position 1, 'l' at position 2); write it in "
                   "one script, so it cannot pass for another name with look-alike letters (Latin may be mixed "
                   "only with Chinese, Japanese or Korean)"),
    ("Москва-Ελλάδα", "the name mixes Cyrillic and Greek letters ('М' at position 1, 'Ε' at position 8); write "
                      "it in one script, so it cannot pass for another name with look-alike letters (Latin may "
                      "be mixed only with Chinese, Japanese or Korean)"),
])
def test_refused_names(given, reason):
    with pytest.raises(InvalidDisplayName) as caught:
        check_display_name(given)
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


def test_key_ignores_case_compatibility_forms_and_spacing():
    assert display_name_key("Deep Learner") == display_name_key("DEEP LEARNER") == "deep learner"
    assert display_name_key("Stra\u00dfe") == display_name_key("STRASSE")
    assert display_name_key("\uff25\uff56\uff45") == display_name_key("eve")       # fullwidth Ｅｖｅ
    assert display_name_key("Jose\u0301") == display_name_key("JOS\u00c9")
    assert display_name_key("teal-otter-42") != display_name_key("teal-otter-43")


def test_letter_script_names_the_script_after_compatibility_folding():
    assert [letter_script(c) for c in "aЖαあア中한ー々ｆ𝐁"] == [
        "LATIN", "CYRILLIC", "GREEK", "HIRAGANA", "KATAKANA", "HAN", "HANGUL", "KATAKANA", "HAN", "LATIN", "LATIN"]
    assert [letter_script(c) for c in "1-🙂 \u0301"] == [None] * 5
