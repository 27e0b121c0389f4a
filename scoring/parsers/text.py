"""Bytes -> CSV text: BOM, UTF-8 and binary checks, with the byte offset of a problem."""

from __future__ import annotations

import re

from scoring.parsers.codes import ErrorCode
from scoring.parsers.common import fail

BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_KNOWN_BINARY = {
    b"\x1f\x8b": "gzip data",
    b"\x80\x02": "a Python pickle", b"\x80\x03": "a Python pickle",
    b"\x80\x04": "a Python pickle", b"\x80\x05": "a Python pickle",
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
    b"\x93NUMP": "a truncated .npy file",
}
_HINT = "expected CSV text, a .npy or a .npz file"


def _looks_binary(head: bytes) -> bool:
    """Mostly control or high bytes in the first KiB: garbage rather than mis-encoded text."""
    if not head:
        return False
    odd = sum(1 for b in head if (b < 32 and b not in (9, 10, 13)) or b == 127)
    return odd / len(head) > 0.05


def decode_csv_text(data: bytes, filename: str | None = None) -> str:
    offset = 0
    if data.startswith(BOM):
        data, offset = data[len(BOM):], len(BOM)
    # isspace() tests the same ASCII whitespace that strip() removes, without copying the file.
    if not data or data.isspace():
        raise fail(ErrorCode.EMPTY_FILE, "the file is empty; " + _HINT, filename=filename)
    for magic, what in _KNOWN_BINARY.items():
        if data.startswith(magic):
            raise fail(ErrorCode.BINARY_CONTENT, f"the file is {what}, not predictions; {_HINT}",
                       filename=filename)
    if _looks_binary(data[:1024]):
        raise fail(ErrorCode.BINARY_CONTENT, f"the file looks like binary data; {_HINT}",
                   filename=filename)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(ErrorCode.NOT_UTF8,
                   f"byte offset {exc.start + offset} (byte 0x{data[exc.start]:02x}) is not valid "
                   "UTF-8; save the file as UTF-8 text", line=line, filename=filename) from None
    # bytes.translate is a C loop; the regex runs only to locate a control character.
    m = _CONTROL.search(text) if len(data.translate(None, _CONTROL_BYTES)) != len(data) else None
    if m is not None:
        line = text.count("\n", 0, m.start()) + 1
        raise fail(ErrorCode.BINARY_CONTENT,
                   f"control character U+{ord(m.group()):04X} in the text; {_HINT}",
                   line=line, filename=filename)
    return text
