"""Text from the server (student notes, user names, file names, error echoes, task titles) made
safe to print on a terminal.

Such text is data. Printed as it is, an escape sequence can clear the screen, rewrite earlier
lines or open a hyperlink (OSC 8), a bidi override can reorder what follows it, and Rich would
read `[...]` as markup (a stray `[/]` raises MarkupError, `[link=...]` makes a link). Every
command passes server text through `for_terminal` (plain output) or `for_rich` (Rich markup).
"""

from __future__ import annotations

# Line and tab breaks become spaces: one field stays on its line, so it cannot fake the lines
# that follow it (a "points:" line, a "reason:" line).
_BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"
# Bidi embedding, override and isolate controls and the directional marks.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# C0, DEL and C1 controls (ESC starts every terminal escape sequence; C1 CSI/OSC do the same in
# one character); shown as U+FFFD so a reader sees that something was removed.
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_TABLE = {**{c: "\ufffd" for c in _CONTROLS}, **{ord(c): "\ufffd" for c in _BIDI}, **{ord(c): " " for c in _BREAKS}}


def for_terminal(value: object) -> str:
    """`value` as one line of plain text: no control characters, escape sequences or bidi controls."""
    return str(value).translate(_TABLE)


def for_rich(value: object) -> str:
    """`for_terminal(value)` escaped for Rich markup, so `[...]` in it prints as written."""
    # Imported here: rich.markup costs ~20 ms to import and `grade --help` must stay fast.
    from rich.markup import escape

    return escape(for_terminal(value))
