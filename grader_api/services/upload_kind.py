"""Is an upload a model file or a predictions file? Decided by its bytes, never its name.

Model files: a zip whose entries include pickled TorchScript/torch.save records
(`data.pkl`, `constants.pkl`) or a `torch.export` archive (`archive_format`); a safetensors
file (8-byte little-endian header length, then a JSON object); a legacy torch.save pickle.
Everything else (CSV text, `.npy`, `.npz` — a zip of `.npy` entries) is a predictions file,
and the scoring parsers decide whether it is a valid one.

A zip's directory is read entry by entry after its end record has been checked against the
same bounds the worker applies, so an archive listing millions of entries is refused from its
last few kilobytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from grader_api.models import SubmissionKind
from grader_api.services.errors import InvalidUpload, RejectedModel
from scoring.parsers.codes import ErrorCode
from scoring.parsers.zipdir import (
    ZipDirectoryError,
    ZipDirectoryTooLarge,
    iter_zip_entries,
)
from scoring.types import TaskSpec

_ZIP_MAGIC = b"PK\x03\x04"
_MODEL_ZIP_ENTRIES = ("data.pkl", "constants.pkl", "archive_format")


def detect_upload_kind(path: Path) -> SubmissionKind:
    """MODEL or PREDICTIONS; InvalidUpload (archive_too_large) for a zip whose directory is too
    large to inspect."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head.startswith(_ZIP_MAGIC):
            return _zip_kind(f)
    if _is_safetensors(head, path):
        return SubmissionKind.MODEL
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return SubmissionKind.MODEL  # a pickle stream: legacy torch.save (loaded weights_only)
    return SubmissionKind.PREDICTIONS


def check_model_upload(path: Path, task: TaskSpec) -> None:
    """Refuse now (RejectedModel) a model file the worker would refuse before running it."""
    # grader_api imports worker lazily: only the worker's entry points load it at import time.
    from worker.model_formats import check_model_file
    from worker.sandbox.errors import ModelRejected

    try:
        check_model_file(path, task)
    except ModelRejected as exc:
        raise RejectedModel(f"model rejected: {exc}") from None


def _zip_kind(f: BinaryIO) -> SubmissionKind:
    # The worker's own bounds, so both sides agree; lazily, like every worker import in grader_api.
    from worker.model_formats import MAX_ZIP_DIRECTORY_BYTES, MAX_ZIP_ENTRIES

    try:
        entries = iter_zip_entries(f, max_entries=MAX_ZIP_ENTRIES, max_directory_bytes=MAX_ZIP_DIRECTORY_BYTES)
        is_model = any(e.name.rsplit("/", 1)[-1] in _MODEL_ZIP_ENTRIES for e in entries)
    except ZipDirectoryTooLarge as exc:
        raise InvalidUpload(f"{exc}: a model archive or an .npz of predictions lists far fewer",
                            ErrorCode.ARCHIVE_TOO_LARGE.value) from None
    except (ZipDirectoryError, OSError):
        return SubmissionKind.PREDICTIONS  # the parser reports a corrupt archive
    return SubmissionKind.MODEL if is_model else SubmissionKind.PREDICTIONS


def _is_safetensors(head: bytes, path: Path) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= 100_000_000 and head[8:9] == b"{" and header_len + 8 <= path.stat().st_size
