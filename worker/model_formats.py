"""Recognise model files by their bytes, without unpickling anything.

The worker uses this to refuse obvious non-models early and to tell the sandbox how to load
the file; the upload path calls `is_model_file(head)` on the first bytes of an upload.
Nothing here executes or deserialises the file's content: zip central directories and the
safetensors JSON header are plain data.
"""

from __future__ import annotations

import enum
import json
import struct
import zipfile
from pathlib import Path

from worker.sandbox.errors import ModelRejected

ZIP_MAGIC = b"PK\x03\x04"
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024   # the format's own bound
_PICKLE_PROTO = b"\x80"                        # pickle protocol >= 2 opcode

EXPECTED = (
    "a TorchScript archive (torch.jit.save), an exported program (torch.export.save), "
    "or a state_dict (torch.save(model.state_dict(), ...) or safetensors)"
)


class ModelFormat(str, enum.Enum):
    TORCHSCRIPT = "torchscript"
    EXPORTED = "exported_program"
    STATE_DICT = "state_dict"            # torch.save zip; loaded with weights_only=True
    SAFETENSORS = "safetensors"

    @property
    def is_state_dict(self) -> bool:
        return self in (ModelFormat.STATE_DICT, ModelFormat.SAFETENSORS)


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= _SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def _first_zip_name(head: bytes) -> str | None:
    # Local file header: name length at offset 26, name at offset 30.
    if len(head) < 30 or not head.startswith(ZIP_MAGIC):
        return None
    (name_len,) = struct.unpack("<H", head[26:28])
    return head[30:30 + name_len].decode("utf-8", "replace")


def is_model_file(head: bytes) -> bool:
    """True when the first bytes (>= 64 recommended) look like a model file we may accept.

    A torch zip archive's entries all sit under one folder ("archive/data.pkl"); a numpy
    .npz has flat "*.npy" entries and is a predictions file, not a model.
    """
    if _looks_like_safetensors(head):
        return True
    name = _first_zip_name(head)
    return name is not None and "/" in name and not name.endswith(".npy")


def _describe_unknown(head: bytes) -> str:
    if head.startswith(_PICKLE_PROTO) or head[:1] in (b"(", b"}", b"]"):
        return ("a raw pickle (pickle.dump or the legacy torch.save format), which is never loaded; "
                "save with torch.save(model.state_dict(), path) from PyTorch >= 1.6 or use safetensors")
    if head.startswith(ZIP_MAGIC):
        return "a zip archive that is not a PyTorch archive"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy file (predictions go in a predictions upload, not a model upload)"
    if not head:
        return "an empty file"
    return f"unrecognised content starting with {head[:8]!r}"


def _check_safetensors(path: Path, size: int) -> None:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise ModelRejected("safetensors header is longer than the file: the file is truncated")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise ModelRejected("safetensors header is not valid JSON: the file is damaged") from None
    if not isinstance(header, dict):
        raise ModelRejected("safetensors header is not a JSON object: the file is damaged")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
            raise ModelRejected(f"safetensors entry {key!r} lacks dtype/shape/data_offsets")
        start, end = info["data_offsets"]
        if not (0 <= start <= end <= size - 8 - n):
            raise ModelRejected(f"safetensors entry {key!r} points outside the file: the file is truncated")


def _zip_format(path: Path) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        raise ModelRejected(f"not a model file: expected {EXPECTED}, found a damaged zip archive") from None
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or not all("/" in n for n in names):
        raise ModelRejected(f"not a model file: expected {EXPECTED}, found a zip archive that is not a PyTorch archive")
    (root,) = roots
    entries = {n.split("/", 1)[1] for n in names}
    if "archive_format" in entries or any(e.startswith("models/") for e in entries):
        return ModelFormat.EXPORTED
    if "constants.pkl" in entries or any(e.startswith("code/") for e in entries):
        return ModelFormat.TORCHSCRIPT
    if "data.pkl" in entries:
        return ModelFormat.STATE_DICT
    raise ModelRejected(f"not a model file: expected {EXPECTED}, found a zip archive without data.pkl or code/")


def sniff_model_format(path: Path) -> ModelFormat:
    """The format of the file at `path`, or ModelRejected naming what was expected and found."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(64)
    if _looks_like_safetensors(head):
        _check_safetensors(path, size)
        return ModelFormat.SAFETENSORS
    if head.startswith(ZIP_MAGIC):
        return _zip_format(path)
    raise ModelRejected(f"not a model file: expected {EXPECTED}, found {_describe_unknown(head)}")
