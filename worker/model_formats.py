"""Recognise model files by their bytes, without unpickling anything.

The worker uses this to refuse obvious non-models early and to tell the sandbox how to load
the file; the upload path runs the same check, so most refusals come with the 422. Nothing
here executes or deserialises the file's content: zip central directories, the safetensors
JSON header and an exported program's payload descriptions are plain data, each read within a
size bound before it is parsed, and the one pickle looked at is only scanned, never loaded.
"""

from __future__ import annotations

import enum
import io
import json
import pickletools
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from scoring.parsers.zipdir import (
    ZipDirectoryError,
    ZipDirectoryTooLarge,
    ZipEntry,
    iter_zip_entries,
    member_data_offset,
)
from scoring.types import TaskSpec
from worker.sandbox.errors import ModelRefused, ModelRejected

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"                        # pickle protocol >= 2 opcode

# A PyTorch archive holds one entry per tensor storage and per source file: hundreds, a few
# thousand for the largest models. The directory is read entry by entry, so these bounds cap
# the time spent, not memory.
MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_DIRECTORY_BYTES = 16 << 20

_SAFETENSORS_FORMAT_MAX_HEADER = 100_000_000   # the format's own bound: above it, not safetensors
# A safetensors header takes about 100 bytes per tensor: ResNet-18's 122 tensors need 13 KB, a
# large language model's shard a few hundred KB. json.loads of a hostile header nested at most
# _SAFETENSORS_MAX_DEPTH deep takes up to ~14 times its size, so 1 MiB stays under ~15 MB.
SAFETENSORS_MAX_HEADER = 1 << 20
_SAFETENSORS_MAX_DEPTH = 3                     # {"name": {"shape": [...], ...}, ...}

# An exported program (torch.export.save). Names are relative to the archive's root folder,
# and match torch.export.pt2_archive.constants; torch.export.load reads only model "model".
_PROGRAM = "models/model.json"
_WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
_CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_LEGACY_PICKLES = ("data/weights/model.pt", "data/constants/model.pt")
_READ_MEMBERS = (_PROGRAM, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG, _SAMPLE_INPUTS, *_LEGACY_PICKLES)
_TENSOR_CONSTANT_PREFIX = "tensor_"
_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")
_NATIVE_CODE_DIR = "data/aotinductor/"
_MAX_CONFIG_BYTES = 1 << 20                    # ~2,600 tensors at ~400 bytes of JSON each
_MAX_SAMPLE_PICKLE_BYTES = 1 << 20
_MAX_SAMPLE_ENTRIES = 10_000
# What torch.save writes for plain tensors; anything else in the example inputs is refused.
_TENSOR_GLOBALS = frozenset({
    "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter", "collections OrderedDict",
    *(f"torch {kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short",
                                          "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble")),
})
_IMPORTING_OPCODES = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4"})
_PLAIN_TENSORS_HINT = ("torch.export.save stores plain tensors as raw bytes and pickles only tensor "
                       "subclasses and objects: export a model whose parameters, buffers and constants "
                       "are plain torch.Tensor values")

# A string runs to its closing quote or, unterminated, to the end of the text: the pattern never
# backtracks over the rest of the header, so the scan stays linear (an unterminated-string
# alternative that failed would re-scan from every quote: quadratic, and under the GIL).
_JSON_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)

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
    return 2 <= n <= _SAFETENSORS_FORMAT_MAX_HEADER and head[8:9] == b"{"


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


# --- safetensors -------------------------------------------------------------------------

def _json_nests_deeper_than(text: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`: checked before json.loads,
    whose recursion a header nested thousands deep would exhaust. Reads one token at a time."""
    depth = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(text):
        first = text[token.start()]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


def _check_safetensors(path: Path, size: int) -> None:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise ModelRejected("safetensors header is longer than the file: the file is truncated")
        if n > SAFETENSORS_MAX_HEADER:
            raise ModelRejected(f"safetensors header is {n:,} bytes; at most {SAFETENSORS_MAX_HEADER:,} are "
                                "accepted (a state_dict's header takes about 100 bytes per tensor)")
        text = f.read(n)
    if _json_nests_deeper_than(text, _SAFETENSORS_MAX_DEPTH):
        raise ModelRejected(f"safetensors header is nested more than {_SAFETENSORS_MAX_DEPTH} levels deep; "
                            "expected an object of tensor entries: the file is damaged")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise ModelRejected("safetensors header is not valid JSON: the file is damaged") from None
    if not isinstance(header, dict):
        raise ModelRejected("safetensors header is not a JSON object: the file is damaged")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
            raise ModelRejected(f"safetensors entry {key!r} lacks dtype/shape/data_offsets")
        offsets = info["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ModelRejected(f"safetensors entry {key!r} has data_offsets that are not two integers")
        start, end = offsets
        if not (0 <= start <= end <= size - 8 - n):
            raise ModelRejected(f"safetensors entry {key!r} points outside the file: the file is truncated")


# --- zip archives ------------------------------------------------------------------------

@dataclass
class _ArchiveSummary:
    """What the format decision and the exported-program checks need, gathered in one pass
    over the directory without keeping a list of its entries."""

    root: str | None = None
    foreign: str | None = None                  # an entry outside the single root folder
    entries: set[str] = field(default_factory=set)      # the marker entries present
    has_code: bool = False
    programs: list[str] = field(default_factory=list)   # entries under models/, the first few
    program_count: int = 0
    members: dict[str, list[ZipEntry]] = field(default_factory=dict)   # by case-folded name
    pickled_object: str | None = None
    native_code: str | None = None


def _summarise(entries: Iterable[ZipEntry]) -> _ArchiveSummary:
    s = _ArchiveSummary()
    for entry in entries:
        root, slash, rel = entry.name.partition("/")
        if s.root is None:
            s.root = root
        if not slash or root != s.root:
            s.foreign = entry.name
            return s
        if rel in ("archive_format", "constants.pkl", "data.pkl"):
            s.entries.add(rel)
        s.has_code = s.has_code or rel.startswith("code/")
        if rel.startswith("models/"):
            s.program_count += 1
            if len(s.programs) < 3:
                s.programs.append(rel)
        folded = rel.casefold()
        if folded in _READ_MEMBERS:
            s.members.setdefault(folded, []).append(entry)
        folder, _, base = folded.rpartition("/")
        if s.pickled_object is None and folder == "data/constants" and base.startswith(_PICKLED_CONSTANT_PREFIXES):
            s.pickled_object = rel
        if s.native_code is None and folded.startswith(_NATIVE_CODE_DIR):
            s.native_code = rel
    return s


def _zip_format(path: Path) -> ModelFormat:
    with path.open("rb") as f:
        try:
            summary = _summarise(iter_zip_entries(f, max_entries=MAX_ZIP_ENTRIES,
                                                  max_directory_bytes=MAX_ZIP_DIRECTORY_BYTES))
        except ZipDirectoryTooLarge as exc:
            raise ModelRejected(f"not a model file: {exc} (a PyTorch archive has one entry per tensor "
                                "and source file)") from None
        except ZipDirectoryError as exc:
            raise ModelRejected(f"not a model file: expected {EXPECTED}, found a damaged zip archive ({exc})") from None
        fmt = _archive_format(summary)
        if fmt is ModelFormat.EXPORTED:
            _check_exported_program(f, summary)
    return fmt


def _archive_format(s: _ArchiveSummary) -> ModelFormat:
    if s.root is None or s.foreign is not None:
        raise ModelRejected(f"not a model file: expected {EXPECTED}, found a zip archive that is not a PyTorch archive")
    if "archive_format" in s.entries or s.program_count:
        return ModelFormat.EXPORTED
    if "constants.pkl" in s.entries or s.has_code:
        return ModelFormat.TORCHSCRIPT
    if "data.pkl" in s.entries:
        return ModelFormat.STATE_DICT
    raise ModelRejected(f"not a model file: expected {EXPECTED}, found a zip archive without data.pkl or code/")


# --- exported programs -------------------------------------------------------------------
# torch.export.load unpickles (torch.load with weights_only=False, or pickle.loads) every weight
# or constant its payload description marks `use_pickle`, custom objects, the legacy weight
# files, and example inputs that fail safe loading; it also loads AOTInductor's native code.
# All of that is refused here, from the archive's plain-data parts.

def _refuse_program(reason: str) -> ModelRejected:
    return ModelRejected(f"exported program refused: {reason}")


def _check_exported_program(f: BinaryIO, s: _ArchiveSummary) -> None:
    if s.programs != [_PROGRAM]:
        found = ", ".join(repr(p) for p in s.programs) + (" …" if s.program_count > len(s.programs) else "")
        raise _refuse_program(f"expected one program, {_PROGRAM!r}, as torch.export.save writes it; "
                              f"found {found or 'none'}")
    for name, entries in s.members.items():
        if len(entries) > 1:
            raise _refuse_program(f"it holds {len(entries)} entries named {name!r}, differing at most in "
                                  "letter case, which PyTorch's reader need not tell apart: the file is damaged")
    if s.native_code is not None:
        raise _refuse_program(f"it holds compiled AOTInductor code ({s.native_code!r}), which is never run; "
                              "save with torch.export.save(torch.export.export(...), path)")
    if s.pickled_object is not None:
        raise _refuse_program(f"it holds {s.pickled_object!r}, a pickled object, which is never loaded; "
                              + _PLAIN_TENSORS_HINT)
    for legacy in _LEGACY_PICKLES:
        if legacy in s.members:
            raise _refuse_program(f"it stores payloads in {legacy!r}, the older pickled layout, which is "
                                  "never loaded; save it again with torch.export.save from a current PyTorch")
    for fqn, meta in _payload_config(f, s, _WEIGHTS_CONFIG):
        if meta.get("use_pickle") is not False:
            raise _refuse_program(f"weight {fqn!r} is stored as a pickle (use_pickle), which is never "
                                  "loaded; " + _PLAIN_TENSORS_HINT)
    for fqn, meta in _payload_config(f, s, _CONSTANTS_CONFIG):
        path_name = meta.get("path_name")
        if meta.get("use_pickle") is not False or not (
                isinstance(path_name, str) and path_name.startswith(_TENSOR_CONSTANT_PREFIX)):
            raise _refuse_program(f"constant {fqn!r} is stored as a pickle (use_pickle, or a custom "
                                  "object), which is never loaded; " + _PLAIN_TENSORS_HINT)
    _check_sample_inputs(f, _member(s, _SAMPLE_INPUTS))


def _member(s: _ArchiveSummary, name: str) -> ZipEntry:
    found = s.members.get(name)
    if not found:
        raise _refuse_program(f"it has no {name!r}; save it with torch.export.save")
    return found[0]


def _payload_config(f: BinaryIO, s: _ArchiveSummary, name: str) -> list[tuple[str, dict]]:
    """(name, payload description) pairs of a weights or constants config."""
    text = _read_stored(f, _member(s, name), _MAX_CONFIG_BYTES)
    try:
        config = json.loads(text)["config"]
    except (ValueError, RecursionError, KeyError, TypeError):
        raise _refuse_program(f"{name!r} is not a valid payload description: the file is damaged") from None
    if not isinstance(config, dict) or not all(isinstance(m, dict) for m in config.values()):
        raise _refuse_program(f"{name!r} is not a valid payload description: the file is damaged")
    return list(config.items())


def _stored_data_offset(f: BinaryIO, entry: ZipEntry) -> int:
    if entry.method != 0 or entry.compressed_size != entry.size:
        raise _refuse_program(f"its entry {entry.name!r} is compressed, while torch.export.save stores "
                              "every entry as is: save it again with torch.export.save")
    try:
        return member_data_offset(f, entry)
    except ZipDirectoryError as exc:
        raise _refuse_program(f"the archive is damaged ({exc})") from None


def _read_stored(f: BinaryIO, entry: ZipEntry, limit: int) -> bytes:
    if entry.size > limit:
        raise _refuse_program(f"its entry {entry.name!r} is {entry.size:,} bytes; at most {limit:,} are accepted")
    f.seek(_stored_data_offset(f, entry))
    data = f.read(entry.size)
    if len(data) != entry.size or zlib.crc32(data) != entry.crc:
        raise _refuse_program(f"its entry {entry.name!r} is truncated or damaged")
    return data


class _Slice(io.RawIOBase):
    """Bytes [start, start + size) of a file, as a raw file: an archive stored inside an archive."""

    def __init__(self, f: BinaryIO, start: int, size: int):
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._size, self._pos + len(view))
        if end <= self._pos:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(end - self._pos)
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)


def _check_sample_inputs(f: BinaryIO, entry: ZipEntry) -> None:
    """The example inputs are a torch.save archive that torch.export.load opens with safe
    loading and, should that fail, with full unpickling: only plain tensors are accepted."""
    where = f"its example inputs ({_SAMPLE_INPUTS!r})"
    nested = io.BufferedReader(_Slice(f, _stored_data_offset(f, entry), entry.size))
    if nested.read(4) != ZIP_MAGIC:
        raise _refuse_program(f"{where} are a bare pickle, which is never loaded; save it with torch.export.save")
    try:
        pickles = [e for e in iter_zip_entries(nested, max_entries=_MAX_SAMPLE_ENTRIES,
                                               max_directory_bytes=_MAX_SAMPLE_ENTRIES * 256)
                   if e.name.casefold().endswith("/data.pkl") or e.name.casefold() == "data.pkl"]
    except ZipDirectoryError as exc:
        raise _refuse_program(f"{where} are damaged ({exc})") from None
    if len(pickles) != 1 or pickles[0].name.count("/") != 1:
        raise _refuse_program(f"{where} are not a torch.save archive with one data.pkl")
    found = _first_non_tensor_global(_read_stored(nested, pickles[0], _MAX_SAMPLE_PICKLE_BYTES))
    if found is not None:
        raise _refuse_program(f"{where} hold {found}, not only tensors, and are never loaded; "
                              "export with tensors as example inputs, and torch.export.save's default "
                              "pickle protocol")


def _first_non_tensor_global(pickled: bytes) -> str | None:
    """What the pickle would import beyond tensor rebuilding, or None. Only its opcodes are read."""
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if opcode.name == "GLOBAL" and arg not in _TENSOR_GLOBALS:
                return str(arg).replace(" ", ".")
            if opcode.name == "STACK_GLOBAL":
                return "an import by name (pickle protocol 4 or above)"
            if opcode.name in _IMPORTING_OPCODES:
                return f"an object built by the {opcode.name} opcode"
    except ValueError:
        return "a damaged pickle"
    return None


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


def check_model_file(path: Path, task: TaskSpec) -> ModelFormat:
    """The format of the model file at `path`, if `task` can run it; ModelRefused otherwise.

    Plain data only (nothing is unpickled or run): the API calls it at upload, the worker again
    before it starts a sandbox."""
    try:
        fmt = sniff_model_format(path)
    except ModelRefused:
        raise
    except ModelRejected as exc:
        raise ModelRefused(str(exc)) from None
    if "model" not in task.accepts:
        raise ModelRefused(f"task {task.name} does not accept model files; upload a predictions file")
    if fmt.is_state_dict and not task.reference_model:
        raise ModelRefused(
            f"task {task.name} names no reference architecture, so a state_dict cannot be evaluated; "
            "upload a TorchScript archive (torch.jit.save) or an exported program (torch.export.save)")
    return fmt
