"""A course roster file (bytes) parsed into typed rows. Pure: the standard library only.

Two formats, told apart by the header row:

- a Canvas gradebook export ("Export Entire Gradebook"): `Student` ("Last, First"; or `LastName`
  and `FirstName`), `ID` (Canvas's numeric user id), `SIS User ID` (absent when the exporter may
  not see SIS data), `SIS Login ID`, `Section`; assignment and total columns are ignored. Canvas
  adds a "Manual Posting" line and a "Points Possible" line under the header and lists the
  course's Test Student last: those are skipped and reported, never refused.
- a plain CSV with the header `name,email[,role][,section]` (any order, no other columns).

Whole-file problems (size, encoding, header, quoting) raise `RosterFileError` and nothing is
parsed; a row's own problem becomes a `Refused` with its 1-based line and the other rows still
parse. Refusing is deliberate: a name with markup or an invisible character is not cleaned up
but sent back to the instructor to fix at the source.

Cells that start with `=`, `+`, `-` or `@` are plain data here. Any CSV the product writes back
(the grade export, invites.csv) must pass every cell through
`grader_api.services.spreadsheet.spreadsheet_safe`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

RosterFormat = Literal["canvas", "plain"]
RosterRole = Literal["student", "ta", "instructor"]
ROLES: tuple[RosterRole, ...] = ("student", "ta", "instructor")

DEFAULT_MAX_BYTES = 2 * 1024 * 1024   # a 400-student Canvas export is about 40 KB
DEFAULT_MAX_ROWS = 5_000
MAX_NAME = 100
MAX_EMAIL = 254                       # RFC 5321's limit on a forward path
MAX_SECTION = 100
MAX_ID = 100                          # SIS User ID, SIS Login ID, Canvas ID as stored
MAX_SHOWN = 40                        # characters of an offending cell quoted back in a reason

# The same rule as user names (grader_api/services/users.py), lower-cased: a login becomes one.
_LOGIN = re.compile(r"[a-z0-9][a-z0-9_.@ -]{0,99}")
_LOGIN_RULE = ("1–100 characters: letters, digits, space, '_', '.', '@' or '-', "
               "starting with a letter or digit")
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Control, format (bidi overrides, zero-width joiners), line/paragraph separators, surrogates and
# private-use characters: invisible or misleading on a page, so a name holding one is refused.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})
_MARKUP = frozenset("<>")

_CANVAS_TEST_STUDENT = frozenset({"Student, Test", "Test Student"})
_PLAIN_COLUMNS = ("name", "email", "role", "section")
_PLAIN_REQUIRED = ("name", "email")


class RosterFileError(ValueError):
    """The file as a whole cannot be read as a roster; `detail` says why, `line` where (1-based)."""

    def __init__(self, detail: str, line: int | None = None) -> None:
        self.detail = detail
        self.line = line
        self.message = f"line {line}: {detail}" if line is not None else detail
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class RosterRow:
    """One person to enrol. `login` is the identity (lower-cased); the LMS ids are kept as given
    so that the grade export can write them back."""

    line: int
    login: str
    full_name: str
    email: str | None
    role: RosterRole
    section: str | None
    lms_id: str | None          # Canvas `ID`
    sis_user_id: str | None
    sis_login_id: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A row that was not taken, and why (the reason names the column and value)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that is not a person (Canvas's "Points Possible" line, its Test Student)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedRoster:
    format: RosterFormat
    rows: tuple[RosterRow, ...]
    refused: tuple[Refused, ...]
    skipped: tuple[Skipped, ...]


class _RowProblem(Exception):
    """Raised inside one row's parsing; becomes a `Refused`."""


def parse_roster(data: bytes, *, filename: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_rows: int = DEFAULT_MAX_ROWS) -> ParsedRoster:
    """Parse a roster file. Raises `RosterFileError` for a file that cannot be read at all,
    including one with no person in it (so that an import never takes an empty file as
    "everybody dropped")."""
    if len(data) > max_bytes:
        raise RosterFileError(f"the file is {_size(len(data))}; the limit is {_size(max_bytes)}")
    _refuse_workbooks(data, filename)
    text = _decode(data)
    records = _records(text)
    first = next(records, None)
    if first is None:   # no bytes, or only blank lines and empty cells
        raise RosterFileError("the file is empty: expected a header row and one row per person")
    header_line, header = first
    layout = _layout(header, header_line)
    rows: list[RosterRow] = []
    refused: list[Refused] = []
    skipped: list[Skipped] = []
    first_line_of: dict[tuple[str, str], int] = {}
    count = 0
    for line, cells in records:
        count += 1
        if count > max_rows:
            raise RosterFileError(f"more than {max_rows} rows: split the roster into smaller files",
                                  line=line)
        try:
            parsed = layout.parse(line, cells)
            if isinstance(parsed, RosterRow):
                _check_not_duplicate(parsed, first_line_of)
        except _RowProblem as problem:
            refused.append(Refused(line, str(problem)))
            continue
        if isinstance(parsed, RosterRow):
            rows.append(parsed)
        else:
            skipped.append(parsed)
    if not rows and not refused:
        raise RosterFileError("no people in the file, only its header" +
                              (" and Canvas's own lines" if skipped else ""), line=header_line)
    return ParsedRoster(layout.format, tuple(rows), tuple(refused), tuple(skipped))


# --- the file as a whole -----------------------------------------------------------------------

def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} bytes"


def _refuse_workbooks(data: bytes, filename: str | None) -> None:
    kind = None
    if data.startswith(b"PK\x03\x04"):
        kind = "a ZIP archive (an Excel .xlsx or OpenDocument workbook?)"
    elif data.startswith(b"\xd0\xcf\x11\xe0"):
        kind = "an Excel .xls workbook"
    if kind:
        named = f"{_shown(filename)} is" if filename else "the file is"
        raise RosterFileError(f"{named} {kind}, not CSV: save or export the roster as CSV (UTF-8)")


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RosterFileError("the file is UTF-16 text: save it as CSV UTF-8")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise RosterFileError(f"not UTF-8: byte 0x{data[offset]:02X} at byte offset {offset} cannot be "
                              "decoded; save the file as CSV UTF-8", line=line) from None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of each non-blank record; CRLF, LF or CR line ends; quoted cells."""
    first = next((line for line in re.split(r"\r\n|\r|\n", text) if line.strip()), "")
    # Canvas can export with ';' between cells (a user setting for locales with decimal commas).
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):
                detail = "a quote opened here is never closed"
            elif "field limit" in str(exc):
                detail = f"a cell is longer than {csv.field_size_limit()} characters"
            else:
                detail = (f"badly quoted cell ({exc}): a cell with a comma or a quote must be quoted "
                          'whole, with inner quotes doubled ("")')
            raise RosterFileError(detail, line=start) from None
        end = reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _header_names(cells: Sequence[str]) -> list[str]:
    return [cell.strip() for cell in cells]


def _found(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(_shown(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _layout(cells: Sequence[str], line: int) -> _Canvas | _Plain:
    names = _header_names(cells)
    lowered = {name.lower() for name in names}
    if lowered & {"student", "lastname", "sis login id", "sis user id"}:
        return _Canvas.from_header(names, line)
    if lowered & {"name", "email"}:
        return _Plain.from_header(names, line)
    looks_like_data = any("@" in name for name in names)
    raise RosterFileError(
        ("the first line looks like a person, not a header; " if looks_like_data else
         "unrecognised header; ") +
        "expected a Canvas gradebook export (Student, ID, SIS User ID, SIS Login ID, Section) or "
        f"name,email[,role][,section]; found {_found(names)}", line=line)


_READ_COLUMNS = frozenset({"student", "lastname", "firstname", "id", "sis user id", "sis login id",
                           "section", *_PLAIN_COLUMNS})


def _column_index(names: Sequence[str], line: int) -> dict[str, int]:
    """Lower-cased column name -> position; a column we read must not appear twice."""
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        key = name.lower()
        if key in index and key in _READ_COLUMNS:
            raise RosterFileError(f"the column {_shown(name)} appears twice", line=line)
        index.setdefault(key, position)
    return index


def _cell(cells: Sequence[str], position: int | None) -> str:
    if position is None or position >= len(cells):
        return ""
    return cells[position].strip()


def _refuse_extra_cells(cells: Sequence[str], width: int) -> None:
    extra = [cell for cell in cells[width:] if cell.strip()]
    if extra:
        raise _RowProblem(f"{len(cells)} cells but the header has {width} columns: "
                          "a name that contains a comma must be in double quotes")


def _refuse_line_breaks(line: int, values: dict[str, str]) -> None:
    # A line break in a cell we read is almost always an unclosed quote that swallowed the
    # lines after it: refusing one row would silently lose the people on those lines.
    for column, value in values.items():
        if "\n" in value or "\r" in value:
            raise RosterFileError(f"the {column} cell holds a line break (an unclosed quote?); "
                                  "fix the quoting", line=line)


@dataclass(frozen=True, slots=True)
class _Canvas:
    format: RosterFormat
    width: int
    student: int | None
    last_name: int | None
    first_name: int | None
    lms_id: int
    sis_user_id: int | None
    sis_login_id: int
    section: int

    @classmethod
    def from_header(cls, names: list[str], line: int) -> _Canvas:
        index = _column_index(names, line)
        has_student = "student" in index or "lastname" in index
        missing = [name for name, present in (("Student", has_student), ("ID", "id" in index),
                                              ("SIS Login ID", "sis login id" in index),
                                              ("Section", "section" in index)) if not present]
        if missing:
            raise RosterFileError(
                f"Canvas export without the column(s) {', '.join(missing)}; expected Student, ID, "
                f"SIS User ID (optional), SIS Login ID, Section; found {_found(names)}", line=line)
        return cls("canvas", len(names), index.get("student"), index.get("lastname"),
                   index.get("firstname"), index["id"], index.get("sis user id"),
                   index["sis login id"], index["section"])

    def _name(self, cells: Sequence[str]) -> str:
        if self.student is not None:
            name = _cell(cells, self.student)
        else:
            parts = (_cell(cells, self.last_name), _cell(cells, self.first_name))
            name = ", ".join(part for part in parts if part)
        # Canvas writes a name that starts with '=' as ="name" so that Excel shows it as text.
        if name.startswith('="') and name.endswith('"') and len(name) >= 3:
            name = name[2:-1]
        return name

    def parse(self, line: int, cells: Sequence[str]) -> RosterRow | Skipped:
        name = self._name(cells)
        lms_id = _cell(cells, self.lms_id)
        sis_user = _cell(cells, self.sis_user_id)
        sis_login = _cell(cells, self.sis_login_id)
        section = _cell(cells, self.section)
        if not lms_id and not sis_user and not sis_login:
            if name == "Points Possible":
                return Skipped(line, "Canvas's 'Points Possible' line")
            if not name and any(cell.strip().startswith("Manual Posting") for cell in cells):
                return Skipped(line, "Canvas's 'Manual Posting' line")
        if name in _CANVAS_TEST_STUDENT:
            return Skipped(line, f"Canvas's Test Student ({_shown(name)})")
        _refuse_line_breaks(line, {"Student": name, "ID": lms_id, "SIS User ID": sis_user,
                                   "SIS Login ID": sis_login, "Section": section})
        _refuse_extra_cells(cells, self.width)

        full_name = _person_name("Student", name)
        if lms_id and not lms_id.isdecimal():
            raise _RowProblem(f"ID {_shown(lms_id)} is not a Canvas user id (digits only)")
        for column, value in (("ID", lms_id), ("SIS User ID", sis_user), ("SIS Login ID", sis_login)):
            _plain_text(column, value, MAX_ID)
        identity = next(((column, value) for column, value in
                         (("SIS Login ID", sis_login), ("SIS User ID", sis_user), ("ID", lms_id))
                         if value), None)
        if identity is None:
            raise _RowProblem("no identity: SIS Login ID, SIS User ID and ID are all empty")
        login = _login(*identity)
        email = sis_login if _EMAIL_SHAPE.fullmatch(sis_login) and len(sis_login) <= MAX_EMAIL else None
        return RosterRow(line=line, login=login, full_name=full_name, email=email, role="student",
                         section=_section(section), lms_id=lms_id or None,
                         sis_user_id=sis_user or None, sis_login_id=sis_login or None)


@dataclass(frozen=True, slots=True)
class _Plain:
    format: RosterFormat
    width: int
    name: int
    email: int
    role: int | None
    section: int | None

    @classmethod
    def from_header(cls, names: list[str], line: int) -> _Plain:
        index = _column_index(names, line)
        expected = "name,email[,role][,section]"
        unknown = [name for name in names if name.lower() not in _PLAIN_COLUMNS]
        if unknown:
            raise RosterFileError(f"unknown column(s) {_found(unknown)}: a plain roster has the columns "
                                  f"{expected}", line=line)
        missing = [name for name in _PLAIN_REQUIRED if name not in index]
        if missing:
            raise RosterFileError(f"missing the column(s) {', '.join(missing)}: expected {expected}; "
                                  f"found {_found(names)}", line=line)
        return cls("plain", len(names), index["name"], index["email"], index.get("role"),
                   index.get("section"))

    def parse(self, line: int, cells: Sequence[str]) -> RosterRow:
        name, email = _cell(cells, self.name), _cell(cells, self.email)
        role, section = _cell(cells, self.role), _cell(cells, self.section)
        _refuse_line_breaks(line, {"name": name, "email": email, "role": role, "section": section})
        _refuse_extra_cells(cells, self.width)
        full_name = _person_name("name", name)
        try:
            _email(email)
        except _RowProblem as problem:
            if any("@" in cell for position, cell in enumerate(cells) if position != self.email):
                raise _RowProblem(f"{problem} (a name that contains a comma must be in double quotes)") from None
            raise
        return RosterRow(line=line, login=_login("email", email), full_name=full_name, email=email,
                         role=_role(role), section=_section(section), lms_id=None, sis_user_id=None,
                         sis_login_id=None)


# --- one cell ------------------------------------------------------------------------------------

def _shown(value: str) -> str:
    """A value from the file, quoted, escaped (repr) and truncated for a reason."""
    if len(value) > MAX_SHOWN:
        value = value[: MAX_SHOWN - 3] + "..."
    return repr(value)


def _plain_text(column: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise _RowProblem(f"{column} is {len(value)} characters long; the limit is {limit}")
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            raise _RowProblem(f"{column} {_shown(value)} holds the control or invisible character "
                              f"U+{ord(char):04X} at position {position}")
    return value


def _person_name(column: str, value: str) -> str:
    if not value:
        raise _RowProblem(f"{column} is empty")
    value = _plain_text(column, unicodedata.normalize("NFC", value), MAX_NAME)
    if _MARKUP.intersection(value):
        raise _RowProblem(f"{column} {_shown(value)} contains '<' or '>': names that look like markup "
                          "are refused, not cleaned")
    return value


def _section(value: str) -> str | None:
    if not value:
        return None
    value = _plain_text("Section", unicodedata.normalize("NFC", value), MAX_SECTION)
    if _MARKUP.intersection(value):
        raise _RowProblem(f"Section {_shown(value)} contains '<' or '>'")
    return value


def _email(value: str) -> str:
    if not value:
        raise _RowProblem("email is empty")
    _plain_text("email", value, MAX_EMAIL)
    if value.count("@") != 1:
        raise _RowProblem(f"email {_shown(value)} must contain exactly one '@'")
    if any(char.isspace() for char in value):
        raise _RowProblem(f"email {_shown(value)} contains a space")
    if not _EMAIL_SHAPE.fullmatch(value):
        raise _RowProblem(f"email {_shown(value)} is not an email address (expected name@domain.tld)")
    return value


def _login(column: str, value: str) -> str:
    login = value.lower()
    if not _LOGIN.fullmatch(login):
        raise _RowProblem(f"{column} {_shown(value)} cannot be a login: {_LOGIN_RULE}")
    return login


def _role(value: str) -> RosterRole:
    key = value.lower() or "student"
    for role in ROLES:
        if role == key:
            return role
    raise _RowProblem(f"role {_shown(value)} is not one of {', '.join(ROLES)}")


def _check_not_duplicate(row: RosterRow, first_line_of: dict[tuple[str, str], int]) -> None:
    keys = [("login", row.login)] + ([("Canvas ID", row.lms_id)] if row.lms_id else [])
    for what, value in keys:
        earlier = first_line_of.get((what, value))
        if earlier is not None:
            raise _RowProblem(f"duplicate of line {earlier} (the same {what} {_shown(value)})")
    for key in keys:
        first_line_of[key] = row.line
