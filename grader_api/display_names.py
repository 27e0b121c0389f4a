"""Leaderboard display names: generated pseudonyms and the rules for names students choose.
Pure: the standard library only.

Other students only ever see a display name, so a name must not be able to carry a real name's
stand-in such as an email address, markup, or invisible characters that make two names look
alike or reverse the text around them; nor mix scripts, as a Cyrillic 'о' in a Latin name would
make it look like a classmate's.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable

MIN_LENGTH = 3
MAX_LENGTH = 40
PSEUDONYM_ATTEMPTS = 20       # tries per number width before the number gets one digit longer
PSEUDONYM_MAX_DIGITS = 6

# Plain, friendly words only: no body parts, no words with a second slang meaning, nothing an
# adjective-animal pair could turn into an insult.
ADJECTIVES: tuple[str, ...] = (
    "agile", "amber", "azure", "bold", "brave", "breezy", "bright", "brisk", "calm", "candid",
    "cheerful", "clever", "cobalt", "coral", "cosmic", "crimson", "curious", "daring", "eager",
    "earnest", "electric", "emerald", "fearless", "festive", "gentle", "glad", "golden", "graceful",
    "hardy", "hazel", "helpful", "honest", "indigo", "jade", "jolly", "keen", "kind", "lively",
    "lucky", "lunar", "maple", "mellow", "merry", "mighty", "misty", "modest", "nimble", "noble",
    "olive", "patient", "plucky", "polar", "polite", "proud", "quick", "quiet", "radiant", "rapid",
    "ruby", "rustic", "sandy", "serene", "silver", "sleek", "snowy", "solar", "spry", "steady",
    "sunny", "swift", "teal", "tidy", "tranquil", "upbeat", "velvet", "violet", "vivid", "warm",
    "wise", "witty", "zesty",
)
ANIMALS: tuple[str, ...] = (
    "albatross", "alpaca", "antelope", "armadillo", "badger", "bison", "bobcat", "capybara",
    "caribou", "chameleon", "cheetah", "chinchilla", "condor", "coyote", "crane", "dolphin",
    "eagle", "egret", "falcon", "ferret", "finch", "flamingo", "fox", "gazelle", "gecko",
    "gibbon", "giraffe", "hedgehog", "heron", "ibex", "ibis", "iguana", "jaguar", "kestrel",
    "kingfisher", "koala", "lemur", "leopard", "lynx", "macaw", "manatee", "marmot", "meerkat",
    "mongoose", "moose", "narwhal", "newt", "ocelot", "orca", "osprey", "otter", "owl", "panda",
    "pelican", "penguin", "puffin", "quail", "quokka", "raccoon", "robin", "salamander",
    "seahorse", "sparrow", "starling", "stork", "swan", "tapir", "tiger", "toucan", "turtle",
    "walrus", "wombat", "wren", "yak", "zebra",
)

# Characters that mean something in HTML, in quoted strings or in shells: refused, not escaped
# away, so a name reads the same on every page, in the CLI and in a CSV.
_FORBIDDEN = frozenset("<>&\"'`\\")
# Control, format (U+202E and other bidi controls, zero-width joiners, soft hyphen), separators,
# surrogates and private use (unassigned code points pass: newer emoji are unassigned here).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})
_EMAIL_SHAPE = re.compile(r"[^\s@]+@[^\s@]+")
# Scripts that may share a name with Latin: they are written together (Japanese, Chinese, Korean
# text with Latin words), and none has letters that pass for Latin ones (Unicode TR39, "highly
# restrictive"). Any other mix (Latin with Cyrillic or Greek above all) can spell a classmate's
# name with look-alike letters.
_SCRIPT_SETS_ALLOWED: tuple[frozenset[str], ...] = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# First words of Unicode character names that do not name the script.
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "KATAKANA-HIRAGANA": "KATAKANA"}
_NO_SCRIPT = frozenset({"MODIFIER", "SMALL", "COMBINING"})


class InvalidDisplayName(ValueError):
    """A display name the rules refuse; `reason` says which rule, readable as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PseudonymsExhausted(RuntimeError):
    """Every candidate tried was taken (the `taken` callback says yes to everything)."""


def pseudonym(rng: random.Random, digits: int = 2) -> str:
    """An adjective-animal-number name such as 'teal-otter-42' (a `digits`-digit number)."""
    number = rng.randint(10 ** (digits - 1), 10 ** digits - 1)
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{number}"


def unique_pseudonym(taken: Callable[[str], bool], rng: random.Random, *,
                     attempts: int = PSEUDONYM_ATTEMPTS) -> str:
    """A pseudonym for which `taken` is false. Tries `attempts` two-digit names, then as many with
    three digits, and so on up to six: at most a bounded number of calls, never a loop forever.
    `taken` should compare by `display_name_key`."""
    for digits in range(2, PSEUDONYM_MAX_DIGITS + 1):
        for _ in range(attempts):
            candidate = pseudonym(rng, digits)
            if not taken(candidate):
                return candidate
    raise PseudonymsExhausted(f"no free pseudonym after {attempts} tries for each of "
                              f"2 to {PSEUDONYM_MAX_DIGITS} digits")


def check_display_name(name: str) -> str:
    """The display name normalised (NFC, stripped, inner whitespace runs made one space), or
    `InvalidDisplayName` naming the rule it breaks."""
    value = unicodedata.normalize("NFC", name).strip()
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            raise InvalidDisplayName(f"the name holds the control or invisible character U+{ord(char):04X} "
                                     f"at position {position}; use visible characters only")
    value = " ".join(value.split())
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        plural = "" if len(value) == 1 else "s"
        raise InvalidDisplayName(f"the name is {len(value)} character{plural} long; it must be "
                                 f"{MIN_LENGTH} to {MAX_LENGTH}")
    bad = sorted(_FORBIDDEN.intersection(value))
    if bad:
        raise InvalidDisplayName(f"the name contains {' '.join(bad)}; these characters are not "
                                 "allowed: < > & \" ' ` \\")
    if not any(char.isalpha() for char in value):
        raise InvalidDisplayName("the name must contain at least one letter")
    if _EMAIL_SHAPE.search(value):
        raise InvalidDisplayName("the name looks like an email address; other students see it, so "
                                 "choose something else")
    key_length = len(display_name_key(value))
    if key_length > MAX_LENGTH:   # the unique key is stored in MAX_LENGTH characters too
        raise InvalidDisplayName(f"the name is {key_length} characters long once compared ignoring case "
                                 f"('ß' counts as 'ss', 'ﬃ' as 'ffi'); it must be at most {MAX_LENGTH}")
    _check_one_script(value)
    return value


def letter_script(char: str) -> str | None:
    """The script of a letter as the first word of its Unicode name ('LATIN', 'CYRILLIC', 'GREEK',
    'HAN', ...), after compatibility folding (fullwidth and mathematical letters are Latin or
    Greek); None for what is not a letter or names no script."""
    if not char.isalpha():
        return None
    folded = unicodedata.normalize("NFKC", char)[:1] or char
    word = unicodedata.name(folded, "").split(" ", 1)[0]
    word = _SCRIPT_ALIASES.get(word, word)
    return word if word and word not in _NO_SCRIPT else None


def _check_one_script(value: str) -> None:
    """Refuse letters of scripts that are not written together, such as Latin with Cyrillic:
    'quiet-\u043etter-11' with a Cyrillic 'о' looks like a classmate's 'quiet-otter-11'."""
    seen: dict[str, tuple[int, str]] = {}
    for position, char in enumerate(value, start=1):
        script = letter_script(char)
        if script is None or script in seen:
            continue
        seen[script] = (position, char)
        if len(seen) > 1 and not any(seen.keys() <= allowed for allowed in _SCRIPT_SETS_ALLOWED):
            first, (first_at, first_char) = next(iter(seen.items()))
            raise InvalidDisplayName(
                f"the name mixes {first.title()} and {script.title()} letters ('{first_char}' at position "
                f"{first_at}, '{char}' at position {position}); write it in one script, so it cannot pass "
                "for another name with look-alike letters (Latin may be mixed only with Chinese, Japanese "
                "or Korean)")


def display_name_key(name: str) -> str:
    """The form two display names are compared in for uniqueness: case-insensitive (casefold),
    with compatibility forms folded too, so 'Eve', 'EVE' and fullwidth 'Ｅｖｅ' collide."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())
