"""Is an upload a model file or a predictions file? Decided by its bytes, never its name.

Model files: a zip whose entries include pickled TorchScript/torch.save records
(`data.pkl`, `constants.pkl`) or a `torch.export` archive (`archive_format`); a safetensors
file (8-byte little-endian header length, then a JSON object); a legacy torch.save pickle.
Everything else (CSV text, `.npy`, `.npz` — a zip of `.npy` entries) is a predictions file,
and the scoring parsers decide whether it is a valid one.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from grader_api.models import SubmissionKind

_ZIP_MAGIC = b"PK\x03\x04"
_MODEL_ZIP_ENTRIES = ("data.pkl", "constants.pkl", "archive_format")


def detect_upload_kind(path: Path) -> SubmissionKind:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return SubmissionKind.PREDICTIONS  # the parser reports a corrupt archive
        if any(n.rsplit("/", 1)[-1] in _MODEL_ZIP_ENTRIES for n in names):
            return SubmissionKind.MODEL
        return SubmissionKind.PREDICTIONS
    if _is_safetensors(head, path):
        return SubmissionKind.MODEL
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return SubmissionKind.MODEL  # a pickle stream: legacy torch.save (loaded weights_only)
    return SubmissionKind.PREDICTIONS


def _is_safetensors(head: bytes, path: Path) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= 100_000_000 and head[8:9] == b"{" and header_len + 8 <= path.stat().st_size
