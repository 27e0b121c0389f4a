"""grader_api.roster: real roster bytes in, exact rows, refusals and file errors out."""

from __future__ import annotations

import csv
import io
import random

import pytest

from grader_api.roster import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    ParsedRoster,
    Refused,
    RosterFileError,
    RosterRow,
    Skipped,
    parse_roster,
)

BOM = b"\xef\xbb\xbf"
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (3101)",
                 "Project, part 2 (3102)", "Current Score", "Final Score"]
POINTS_POSSIBLE = ["    Points Possible", "", "", "", "", "10.00", "20.00", "(read only)", "(read only)"]
TEST_STUDENT = ["Student, Test", "99999", "", "d41d8cd98f00b204e9800998ecf8427e", "Section 1", "", "",
                "", ""]


def csv_bytes(rows: list[list[str]], *, newline: str = "\r\n", bom: bool = False,
              delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline, delimiter=delimiter).writerows(rows)
    return (BOM if bom else b"") + out.getvalue().encode("utf-8")


def canvas_student(i: int) -> list[str]:
    return [f"Last{i:03d}, First{i}", str(50000 + i), f"S{i:06d}", f"stu{i:03d}@uni.edu",
            "Section 1" if i % 2 else "Section 2", "7.50", "N/A", "75.00", "75.00"]


def canvas_export(students: int = 400) -> bytes:
    """What Canvas's "Export Entire Gradebook" writes: BOM, CRLF, the Points Possible line under
    the header, the Test Student last."""
    rows = [CANVAS_HEADER, POINTS_POSSIBLE, *(canvas_student(i) for i in range(students)), TEST_STUDENT]
    return csv_bytes(rows, bom=True)


def plain(*lines: str, newline: str = "\n") -> bytes:
    return newline.join(lines).encode("utf-8") + newline.encode()


def file_error(data: bytes, **limits: int) -> RosterFileError:
    with pytest.raises(RosterFileError) as caught:
        parse_roster(data, max_bytes=limits.get("max_bytes", DEFAULT_MAX_BYTES),
                     max_rows=limits.get("max_rows", DEFAULT_MAX_ROWS))
    return caught.value


def refused(data: bytes) -> tuple[Refused, ...]:
    return parse_roster(data).refused


# --- Canvas ----------------------------------------------------------------------------------


def test_canvas_export_of_400_students_parses_every_student_and_skips_canvas_lines():
    data = canvas_export(400)
    assert 30_000 < len(data) < 60_000   # the size the limits were chosen for

    result = parse_roster(data, filename="2026-01-20T1200_Grades-ML101.csv")

    assert result.format == "canvas"
    assert result.refused == ()
    assert result.skipped == (Skipped(2, "Canvas's 'Points Possible' line"),
                              Skipped(403, "Canvas's Test Student ('Student, Test')"))
    assert len(result.rows) == 400
    assert result.rows[0] == RosterRow(line=3, login="stu000@uni.edu", full_name="Last000, First0",
                                       email="stu000@uni.edu", role="student", section="Section 2",
                                       lms_id="50000", sis_user_id="S000000",
                                       sis_login_id="stu000@uni.edu")
    assert result.rows[-1].line == 402
    assert result.rows[-1].login == "stu399@uni.edu"
    assert [row.line for row in result.rows] == list(range(3, 403))
    assert len({row.login for row in result.rows}) == 400


def test_the_same_400_students_parse_identically_twice():
    # The import's idempotence starts here: the same bytes give equal rows.
    assert parse_roster(canvas_export(400)) == parse_roster(canvas_export(400))


def test_canvas_login_comes_from_sis_login_id_lower_cased_and_the_ids_are_kept_as_given():
    data = csv_bytes([CANVAS_HEADER[:5], ["Smith, Eve", "101", "U-0042", "ESmith", "Sec B"]])
    (row,) = parse_roster(data).rows
    assert row == RosterRow(line=2, login="esmith", full_name="Smith, Eve", email=None, role="student",
                            section="Sec B", lms_id="101", sis_user_id="U-0042", sis_login_id="ESmith")


def test_canvas_login_falls_back_to_sis_user_id_then_to_the_canvas_id():
    data = csv_bytes([CANVAS_HEADER[:5],
                      ["Smith, Eve", "101", "U0042", "", "A"],
                      ["Jones, Bob", "102", "", "", "A"],
                      ["Nobody, No", "", "", "", "A"]])
    result = parse_roster(data)
    assert [(row.line, row.login, row.sis_user_id, row.sis_login_id) for row in result.rows] == [
        (2, "u0042", "U0042", None), (3, "102", None, None)]
    assert result.refused == (Refused(4, "no identity: SIS Login ID, SIS User ID and ID are all empty"),)


def test_canvas_export_without_sis_user_id_column_is_accepted():
    # Canvas leaves the column out when the exporting user may not see SIS data.
    data = csv_bytes([["Student", "ID", "SIS Login ID", "Section", "HW (1)"],
                      ["Smith, Eve", "101", "esmith", "A", "3"]])
    (row,) = parse_roster(data).rows
    assert (row.login, row.sis_user_id, row.lms_id) == ("esmith", None, "101")


def test_canvas_last_name_first_name_columns_give_last_comma_first():
    data = csv_bytes([["LastName", "FirstName", "ID", "SIS User ID", "SIS Login ID", "Section"],
                      ["    Points Possible", "", "", "", "", ""],
                      ["Smith", "Eve", "101", "S1", "esmith", "A"]])
    result = parse_roster(data)
    assert result.skipped == (Skipped(2, "Canvas's 'Points Possible' line"),)
    assert result.rows[0].full_name == "Smith, Eve"


def test_canvas_manual_posting_line_is_skipped():
    data = csv_bytes([CANVAS_HEADER, ["", "", "", "", "", "Manual Posting", "", "", ""], POINTS_POSSIBLE,
                      canvas_student(1)])
    result = parse_roster(data)
    assert result.skipped == (Skipped(2, "Canvas's 'Manual Posting' line"),
                              Skipped(3, "Canvas's 'Points Possible' line"))
    assert [row.line for row in result.rows] == [4]


def test_canvas_semicolon_separated_export():
    data = csv_bytes([CANVAS_HEADER, POINTS_POSSIBLE, canvas_student(7)], delimiter=";")
    (row,) = parse_roster(data).rows
    assert (row.full_name, row.login, row.line) == ("Last007, First7", "stu007@uni.edu", 3)


def test_canvas_names_wrapped_as_excel_text_are_unwrapped_and_formula_looking_names_are_data():
    # Canvas writes a name starting with '=' as ="name"; such text is data here (the CSVs the
    # product writes pass cells through spreadsheet_safe).
    data = csv_bytes([CANVAS_HEADER[:5], ['="=1+2"', "101", "", "a1", "A"], ["-Eve", "102", "", "a2", "A"],
                      ["@Bob", "103", "", "a3", "+1"]])
    assert [(row.full_name, row.section) for row in parse_roster(data).rows] == [
        ("=1+2", "A"), ("-Eve", "A"), ("@Bob", "+1")]


def test_canvas_quoted_newline_in_an_ignored_column_keeps_later_line_numbers_right():
    data = csv_bytes([CANVAS_HEADER[:6], ["Smith, Eve", "101", "", "esmith", "A", "note\nover\nlines"],
                      ["Jones, Bob", "102", "", "bjones", "A", ""]], newline="\n")
    assert [(row.line, row.login) for row in parse_roster(data).rows] == [(2, "esmith"), (5, "bjones")]


def test_canvas_duplicates_by_login_or_by_canvas_id_are_refused_naming_the_first_line():
    data = csv_bytes([CANVAS_HEADER[:5],
                      ["Smith, Eve", "101", "", "esmith", "A"],
                      ["Smith, Eve", "101", "", "esmith", "A"],
                      ["Smith, E.", "101", "", "esmith2", "A"],
                      ["Smyth, Eve", "105", "", "ESMITH", "B"]])
    result = parse_roster(data)
    assert [row.line for row in result.rows] == [2]
    assert result.refused == (
        Refused(3, "duplicate of line 2 (the same login 'esmith')"),
        Refused(4, "duplicate of line 2 (the same Canvas ID '101')"),
        Refused(5, "duplicate of line 2 (the same login 'esmith')"),
    )


def test_canvas_row_refusals():
    data = csv_bytes([CANVAS_HEADER[:5],
                      ["Smith, Eve", "x101", "", "esmith", "A"],
                      ["Jones, Bob", "102", "", "bob!", "A"],
                      ["Doe, <b>Jo</b>", "103", "", "jdoe", "A"],
                      ["", "104", "", "anon", "A"],
                      ["Ng, Al", "105", "", "alng", "S" * 101],
                      ["Ng, Al2", "106", "", "a" * 101, "A"]])
    assert refused(data) == (
        Refused(2, "ID 'x101' is not a Canvas user id (digits only)"),
        Refused(3, "SIS Login ID 'bob!' cannot be a login: 1–100 characters: letters, digits, space, '_', "
                   "'.', '@' or '-', starting with a letter or digit"),
        Refused(4, "Student 'Doe, <b>Jo</b>' contains '<' or '>': names that look like markup are "
                   "refused, not cleaned"),
        Refused(5, "Student is empty"),
        Refused(6, "Section is 101 characters long; the limit is 100"),
        Refused(7, "SIS Login ID is 101 characters long; the limit is 100"),
    )


def test_a_real_student_named_points_possible_with_an_id_is_not_skipped():
    data = csv_bytes([CANVAS_HEADER[:5], ["Points Possible", "101", "", "pp", "A"]])
    result = parse_roster(data)
    assert (result.skipped, [row.login for row in result.rows]) == ((), ["pp"])


def test_canvas_header_missing_columns_names_expected_and_found():
    error = file_error(csv_bytes([["Student", "ID", "SIS User ID", "Email"], ["Smith, Eve", "1", "", "e@x.io"]]))
    assert error.line == 1
    assert error.message == ("line 1: Canvas export without the column(s) SIS Login ID, Section; expected "
                             "Student, ID, SIS User ID (optional), SIS Login ID, Section; found 'Student', "
                             "'ID', 'SIS User ID', 'Email'")


def test_canvas_export_with_only_canvas_lines_is_a_file_error():
    error = file_error(csv_bytes([CANVAS_HEADER, POINTS_POSSIBLE, TEST_STUDENT], bom=True))
    assert error.message == "line 1: no people in the file, only its header and Canvas's own lines"


# --- plain name,email[,role][,section] -------------------------------------------------------


def test_plain_roster_with_bom_crlf_and_quoted_commas():
    data = BOM + plain("name,email,role,section",
                       '"Smith, Eve",Eve.Smith@Uni.edu,TA,"Lab 1, Tuesday"',
                       'Bob "Bobby" Jones,bob@uni.edu,,',
                       '"O\'Neil, ""Al""",al@uni.edu,instructor',
                       newline="\r\n")
    result = parse_roster(data, filename="roster.csv")
    assert result == ParsedRoster(format="plain", refused=(), skipped=(), rows=(
        RosterRow(line=2, login="eve.smith@uni.edu", full_name="Smith, Eve", email="Eve.Smith@Uni.edu",
                  role="ta", section="Lab 1, Tuesday", lms_id=None, sis_user_id=None, sis_login_id=None),
        RosterRow(line=3, login="bob@uni.edu", full_name='Bob "Bobby" Jones', email="bob@uni.edu",
                  role="student", section=None, lms_id=None, sis_user_id=None, sis_login_id=None),
        RosterRow(line=4, login="al@uni.edu", full_name='O\'Neil, "Al"', email="al@uni.edu",
                  role="instructor", section=None, lms_id=None, sis_user_id=None, sis_login_id=None),
    ))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_plain_roster_line_ends(newline):
    data = plain("email,name", "a@uni.edu,Ann", "b@uni.edu,Ben", newline=newline)
    assert [(row.line, row.login, row.full_name) for row in parse_roster(data).rows] == [
        (2, "a@uni.edu", "Ann"), (3, "b@uni.edu", "Ben")]


def test_blank_lines_are_ignored_and_line_numbers_stay_physical():
    data = plain("", "name,email", "", "Ann,a@uni.edu", " , ", "Ben,b@uni.edu", "")
    assert [row.line for row in parse_roster(data).rows] == [4, 6]


def test_names_are_nfc_normalised_and_cells_stripped():
    data = plain("name,email", "  Jose\u0301 Nun\u0303ez  ,  jose@uni.edu  ")
    (row,) = parse_roster(data).rows
    assert (row.full_name, row.email, row.login) == ("Jos\u00e9 Nu\u00f1ez", "jose@uni.edu", "jose@uni.edu")


def test_duplicate_emails_are_refused_ignoring_case():
    data = plain("name,email", "Eve,eve@uni.edu", "Bob,bob@uni.edu", "Eve again,EVE@Uni.Edu")
    result = parse_roster(data)
    assert [row.line for row in result.rows] == [2, 3]
    assert result.refused == (Refused(4, "duplicate of line 2 (the same login 'eve@uni.edu')"),)


def test_unknown_role_names_the_allowed_ones():
    data = plain("name,email,role", "Eve,eve@uni.edu,professor", "Bob,bob@uni.edu,Student")
    result = parse_roster(data)
    assert result.refused == (Refused(2, "role 'professor' is not one of student, ta, instructor"),)
    assert [(row.line, row.role) for row in result.rows] == [(3, "student")]


def test_every_row_refusal_with_its_line():
    data = plain(
        "name,email,role,section",
        "Ann,ann@uni.edu",                              # 2 ok (missing trailing cells are empty)
        "Smith, Eve,eve@uni.edu",                       # 3 unquoted comma
        "Bell\x07,bell@uni.edu",                        # 4 control character
        "Evil\u202eName,evil@uni.edu",                  # 5 bidi override
        "Zero\u200dWidth,zw@uni.edu",                   # 6 zero-width joiner
        "<script>alert(1)</script>,x@uni.edu",          # 7 markup
        "N" * 101 + ",long@uni.edu",                    # 8 name too long
        "Nat," + "e" * 247 + "@uni.edu",                # 9 email too long (255)
        "Sec,sec@uni.edu,student," + "S" * 101,         # 10 section too long
        "Nat,nat.uni.edu",                              # 11 no @
        "Nat,nat@@uni.edu",                             # 12 two @
        "Nat,nat smith@uni.edu",                        # 13 space
        "Nat,nat@localhost",                            # 14 no domain dot
        "Nat,nat+ml@uni.edu",                           # 15 '+' cannot be in a login
        ",nobody@uni.edu",                              # 16 empty name
        "Nobody,",                                      # 17 empty email
        "Sec2,sec2@uni.edu,ta,<b>",                     # 18 markup in section
        "Ok,ok@uni.edu,ta,Lab 2",                       # 19 ok
        "=HYPERLINK(1),=cmd@uni.edu",                   # 20 formula-looking email cannot be a login
    )
    result = parse_roster(data)
    assert [(row.line, row.login) for row in result.rows] == [(2, "ann@uni.edu"), (19, "ok@uni.edu")]
    login_rule = ("1–100 characters: letters, digits, space, '_', '.', '@' or '-', starting with a letter "
                  "or digit")
    assert result.refused == (
        Refused(3, "email 'Eve' must contain exactly one '@' (a name that contains a comma must be in "
                   "double quotes)"),
        Refused(4, "name 'Bell\\x07' holds the control or invisible character U+0007 at position 5"),
        Refused(5, "name 'Evil\\u202eName' holds the control or invisible character U+202E at position 5"),
        Refused(6, "name 'Zero\\u200dWidth' holds the control or invisible character U+200D at position 5"),
        Refused(7, "name '<script>alert(1)</script>' contains '<' or '>': names that look like markup are "
                   "refused, not cleaned"),
        Refused(8, "name is 101 characters long; the limit is 100"),
        Refused(9, "email is 255 characters long; the limit is 254"),
        Refused(10, "Section is 101 characters long; the limit is 100"),
        Refused(11, "email 'nat.uni.edu' must contain exactly one '@'"),
        Refused(12, "email 'nat@@uni.edu' must contain exactly one '@'"),
        Refused(13, "email 'nat smith@uni.edu' contains a space"),
        Refused(14, "email 'nat@localhost' is not an email address (expected name@domain.tld)"),
        Refused(15, f"email 'nat+ml@uni.edu' cannot be a login: {login_rule}"),
        Refused(16, "name is empty"),
        Refused(17, "email is empty"),
        Refused(18, "Section '<b>' contains '<' or '>'"),
        Refused(20, f"email '=cmd@uni.edu' cannot be a login: {login_rule}"),
    )


def test_limits_are_inclusive():
    # A plain roster's email is its login too, so the login's 100 characters bind before 254.
    email = "e" * 92 + "@uni.edu"
    data = plain("name,email,role,section", "N" * 100 + f",{email},ta," + "S" * 100, "Long,f" + email)
    result = parse_roster(data)
    (row,) = result.rows
    assert (len(row.full_name), row.login, len(row.section or "")) == (100, email, 100)
    assert result.refused == (Refused(3, f"email 'f{'e' * 36}...' cannot be a login: 1–100 characters: letters, "
                                         "digits, space, '_', '.', '@' or '-', starting with a letter or digit"),)


def test_extra_non_empty_cells_are_refused_and_empty_trailing_cells_are_not():
    data = plain("name,email", "Smith, Eve,eve@uni.edu", "Bob,bob@uni.edu,,")
    result = parse_roster(data)
    assert result.refused == (Refused(2, "3 cells but the header has 2 columns: a name that contains a comma "
                                         "must be in double quotes"),)
    assert [row.line for row in result.rows] == [3]


def test_a_file_where_every_row_is_refused_still_returns_the_refusals():
    result = parse_roster(plain("name,email", "Eve,not-an-email"))
    assert (result.rows, result.refused) == ((), (Refused(2, "email 'not-an-email' must contain exactly "
                                                             "one '@'"),))


def test_long_values_are_truncated_and_escaped_in_reasons():
    (refusal,) = refused(plain("name,email,role", "Eve,eve@uni.edu," + "x" * 60))
    assert refusal == Refused(2, f"role '{'x' * 37}...' is not one of student, ta, instructor")


# --- whole-file errors ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", BOM, b"\n\r\n  \n", BOM + b"\r\n", b",,,\n , \n", b'""\n'])
def test_empty_file(data):
    error = file_error(data)
    assert (error.message, error.line) == ("the file is empty: expected a header row and one row per person",
                                           None)


def test_header_only():
    assert file_error(plain("name,email")).message == "line 1: no people in the file, only its header"


def test_ten_megabyte_file_is_refused_before_parsing():
    # Not UTF-8 and not CSV: the size is checked first, so that is what the message says.
    error = file_error(b"\xff" * (10 * 1024 * 1024))
    assert (error.message, error.line) == ("the file is 10 MB; the limit is 2 MB", None)
    assert DEFAULT_MAX_BYTES == 2 * 1024 * 1024


def test_size_limit_is_inclusive_and_configurable():
    data = plain("name,email", "Eve,eve@uni.edu")
    assert len(parse_roster(data, max_bytes=len(data)).rows) == 1
    assert file_error(data, max_bytes=len(data) - 1).message == f"the file is {len(data)} bytes; the limit is " \
                                                                f"{len(data) - 1} bytes"


def test_too_many_rows():
    lines = ["name,email", *(f"P{i},p{i}@uni.edu" for i in range(5001))]
    assert len(parse_roster(plain(*lines[:5001])).rows) == 5000
    error = file_error(plain(*lines))
    assert error.message == "line 5002: more than 5000 rows: split the roster into smaller files"
    assert file_error(plain(*lines[:4]), max_rows=2).line == 4


def test_not_utf8_names_the_byte_offset_and_line():
    data = b"name,email\nAnn,ann@uni.edu\nJos\xe9,jose@uni.edu\n"
    error = file_error(data)
    assert error.message == ("line 3: not UTF-8: byte 0xE9 at byte offset 30 cannot be decoded; save the file "
                             "as CSV UTF-8")
    # The offset counts the BOM too: it is an offset into the file as uploaded.
    assert "byte offset 33" in file_error(BOM + data).message


def test_utf16_and_workbooks_get_their_own_message():
    utf16 = "name,email\r\nEve,eve@uni.edu\r\n".encode("utf-16")
    assert file_error(utf16).message == "the file is UTF-16 text: save it as CSV UTF-8"
    xlsx = b"PK\x03\x04" + b"\x00" * 100
    assert file_error(xlsx).message == ("the file is a ZIP archive (an Excel .xlsx or OpenDocument workbook?), "
                                        "not CSV: save or export the roster as CSV (UTF-8)")
    with pytest.raises(RosterFileError) as caught:
        parse_roster(b"\xd0\xcf\x11\xe0" + b"\x00" * 100, filename="grades.xls")
    assert caught.value.message == ("'grades.xls' is an Excel .xls workbook, not CSV: save or export the roster "
                                    "as CSV (UTF-8)")


def test_missing_required_plain_column():
    error = file_error(plain("name,role", "Eve,ta"))
    assert error.message == ("line 1: missing the column(s) email: expected name,email[,role][,section]; "
                             "found 'name', 'role'")


def test_unknown_plain_column():
    error = file_error(plain("name,email,rol", "Eve,eve@uni.edu,ta"))
    assert error.message == ("line 1: unknown column(s) 'rol': a plain roster has the columns "
                             "name,email[,role][,section]")


def test_unrecognised_header_and_a_missing_header():
    assert file_error(plain("who,what", "a,b")).message == (
        "line 1: unrecognised header; expected a Canvas gradebook export (Student, ID, SIS User ID, SIS Login "
        "ID, Section) or name,email[,role][,section]; found 'who', 'what'")
    assert file_error(plain("Eve,eve@uni.edu", "Bob,bob@uni.edu")).message.startswith(
        "line 1: the first line looks like a person, not a header; expected")


def test_header_found_list_is_shortened():
    header = ["Student", *(f"HW{i}" for i in range(20))]
    message = file_error(csv_bytes([header, ["a"] * 21])).message
    assert message.endswith("found 'Student', 'HW0', 'HW1', 'HW2', 'HW3', 'HW4', 'HW5', 'HW6' and 13 more")


def test_a_column_we_read_may_not_appear_twice():
    assert file_error(plain("name,email,Email", "a,b@c.de,d@e.fg")).message == (
        "line 1: the column 'Email' appears twice")


def test_unclosed_quote_is_a_file_error_at_the_line_it_opens():
    data = plain("name,email", "Ann,ann@uni.edu", '"Smith, Eve,eve@uni.edu', "Bob,bob@uni.edu")
    assert file_error(data).message == "line 3: a quote opened here is never closed"


def test_quote_swallowing_lines_is_a_file_error_not_a_refused_row():
    # The stray quote closes on a later line: one "name" would swallow Bob, who must not be lost.
    data = plain("name,email", '"Smith, Eve,eve@uni.edu', 'Bob,bob@uni.edu",x@uni.edu')
    assert file_error(data).message == ("line 2: the name cell holds a line break (an unclosed quote?); fix the "
                                        "quoting")


def test_text_after_a_closing_quote_is_a_file_error():
    error = file_error(plain("name,email", "Ann,ann@uni.edu", '"Eve" Smith,eve@uni.edu'))
    assert error.line == 3
    assert error.message.startswith("line 3: badly quoted cell (")


def test_error_carries_detail_and_line_separately():
    error = file_error(plain("name,email", "Ann,ann@uni.edu", '"Eve'))
    assert (error.detail, error.line, str(error)) == ("a quote opened here is never closed", 3,
                                                      "line 3: a quote opened here is never closed")


def test_a_huge_cell_is_a_file_error():
    data = plain("name,email", "Eve," + "e" * 200_000 + "@uni.edu")
    assert file_error(data).message == f"line 2: a cell is longer than {csv.field_size_limit()} characters"


def test_mangled_files_give_a_result_or_a_file_error_never_anything_else():
    rng = random.Random(11)
    seeds = [canvas_export(5), plain("name,email,role,section", '"Smith, Eve",eve@uni.edu,ta,A', "Bob,b@x.io")]
    alphabet = [b",", b'"', b"\r", b"\n", b";", b"\x00", b"\xff", b"\xc3", b"<", b"@", b"=", b" ", b"a"]
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data) + 1)
            if rng.random() < 0.3 and data:
                del data[position:position + rng.randint(1, 8)]
            else:
                data[position:position] = rng.choice(alphabet)
        try:
            result = parse_roster(bytes(data))
        except RosterFileError as error:
            assert error.message
            continue
        lines = [outcome.line for outcome in (*result.rows, *result.refused, *result.skipped)]
        assert len(lines) == len(set(lines))   # each line has exactly one outcome
        assert all(row.login == row.login.lower() for row in result.rows)
