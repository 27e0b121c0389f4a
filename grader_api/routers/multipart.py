"""Streaming multipart receiver for uploads, with the size cap enforced while reading.

Why not `UploadFile`: Starlette parses the whole body (spooling files to disk) before the
endpoint runs, so a cap checked afterwards still lets a client fill the disk. Here the raw
`request.stream()` is fed to python-multipart's streaming parser; the file part goes straight
to a temp file in storage's tmp dir while its sha256 is computed, and the request is answered
413 the moment the cap is passed. The whole body is capped too (the file's cap plus a little
for boundaries and text fields), and so is the number of parts, nameless ones included: the
parser would otherwise read an unbounded body around a small file. A `Content-Length` above
the body cap is refused before reading, and a body that ends before its closing boundary
(truncated on the way) is refused rather than recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fastapi import Request
from python_multipart.multipart import (
    MultipartParser,
    MultipartState,
    parse_options_header,
)

from grader_api.errors import ApiError
from grader_api.storage import LocalStorage

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

_MAX_TEXT_FIELD = 16 * 1024     # `note` and friends
_MAX_TEXT_FIELDS = 8
_MAX_PARTS = 1 + _MAX_TEXT_FIELDS  # the file and the text fields; a nameless part counts too
_MULTIPART_SLACK = 64 * 1024     # boundaries, part headers and text fields around the file


@dataclass
class ReceivedUpload:
    path: Path
    sha256: str
    size: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(limit: int) -> ApiError:
    mb = limit / 1_000_000
    return ApiError(413, f"file too large: this task accepts uploads of at most {mb:g} MB", "too_large")


def _body_too_large(limit: int) -> ApiError:
    mb = limit / 1_000_000
    return ApiError(413, f"request too large: this task accepts uploads of at most {mb:g} MB, and the form "
                         f"around the file may add at most {_MULTIPART_SLACK // 1024} KB", "too_large")


class _Collector:
    """python-multipart callbacks: route the file part to disk and text parts to memory."""

    def __init__(self, storage: LocalStorage, file_field: str, limit: int):
        self.storage, self.file_field, self.limit = storage, file_field, limit
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.parts = 0
        self.hasher = hashlib.sha256()
        self.error: ApiError | None = None
        self._fh: BinaryIO | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._text = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field_cb, "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS and self.error is None:
            self.error = ApiError(400, f"too many parts in the form: at most {_MAX_PARTS} (the file and up to "
                                       f"{_MAX_TEXT_FIELDS} text fields), found more", "bad_request")
        self._headers, self._header_field, self._header_value = {}, b"", b""
        self._name, self._is_file, self._text = None, False, bytearray()

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _disp, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        if name == self.file_field:
            if self.path is not None:
                self.error = ApiError(400, f"send exactly one '{self.file_field}' part", "bad_request")
                return
            self._is_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
            self.path = self.storage.temp_file()
            self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in _part_end/close

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.limit:
                self.error = _too_large(self.limit)
                return
            self.hasher.update(chunk)
            if self._fh is not None:  # opened in _headers_finished with _is_file
                self._fh.write(chunk)
        else:
            self._text += chunk
            if len(self._text) > _MAX_TEXT_FIELD:
                self.error = ApiError(413, f"form field '{self._name}' is longer than {_MAX_TEXT_FIELD} bytes",
                                      "too_large")

    def _part_end(self) -> None:
        if self._is_file and self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._name and not self._is_file:
            if len(self.fields) >= _MAX_TEXT_FIELDS:
                self.error = ApiError(400, f"at most {_MAX_TEXT_FIELDS} form fields", "bad_request")
                return
            self.fields[self._name] = self._text.decode("utf-8", "replace")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(request: Request, storage: LocalStorage, limit_bytes: int,
                         file_field: str = "file") -> ReceivedUpload:
    """Read a multipart body with one file part into a temp file (caller deletes or stores it)."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(415, f"send the file as multipart/form-data, field '{file_field}'", "unsupported_media_type")
    body_limit = limit_bytes + _MULTIPART_SLACK
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise _too_large(limit_bytes)

    collector = _Collector(storage, file_field, limit_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
            if collector.error is not None:
                raise collector.error
            received += len(chunk)
            if received > body_limit:
                raise _body_too_large(limit_bytes)
        parser.finalize()
        # finalize() accepts a body cut anywhere (a proxy or client that gave up): without the
        # closing boundary the file part may be truncated. An empty body is "no file" below.
        if received and parser.state != MultipartState.END:
            raise ApiError(400, "malformed multipart body: it ended before the closing boundary",
                           "bad_request")
    except ApiError:
        collector.discard()
        raise
    except Exception:
        collector.discard()
        raise ApiError(400, "malformed multipart body", "bad_request") from None
    collector.close()
    if collector.error is not None:
        collector.discard()
        raise collector.error
    if collector.path is None:
        raise ApiError(400, f"no file: send the upload in the multipart field '{file_field}'", "missing_file")
    return ReceivedUpload(collector.path, collector.hasher.hexdigest(), collector.size,
                          collector.filename, collector.fields)
