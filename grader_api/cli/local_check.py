"""Check a predictions file on the student's machine before it costs a submission.

The client has the task (classes, kind, image size from `GET /tasks/{name}`) but not the
split, so it cannot know the test ids or N. It runs the scoring core's own parser
(`scoring.parsers.parse_predictions`, the one the server runs, hence the same messages)
against a stand-in split built from the file itself: the CSV's own ids, or the array's own
N. Everything but "missing ids" / "unknown ids" / "wrong N" is checked: header and class
order, column counts, numbers, NaN/inf, probability range, duplicate ids, dtype, shape.
Model files are left to the server (the sandbox decides what they are).
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import IO, Any

from grader_api.client import ValidationFailed

# Codes the stand-in split cannot judge: they need the real ids or N.
_NEEDS_SPLIT = {"missing_ids", "unknown_id"}
_MODEL_ZIP_ENTRIES = ("data.pkl", "constants.pkl", "archive_format")


def check_file(path: Path, task_info: dict[str, Any]) -> None:
    """Raise `ValidationFailed` (message as the server would word it) when the file cannot be valid."""
    size = path.stat().st_size
    cap = task_info.get("max_upload_mb")
    if isinstance(cap, (int, float)) and size > cap * 1024 * 1024:
        raise ValidationFailed(f"{path.name}: {size / 1048576:.1f} MB is over this task's upload limit of {cap:g} MB",
                               code="too_large")
    with path.open("rb") as fh:
        head = fh.read(16)
    if _looks_like_model(path, head):
        if "model" not in (task_info.get("accepts") or ["predictions"]):
            raise ValidationFailed(f"{path.name} looks like a model file, but task '{task_info.get('name')}' "
                                   "accepts predictions files only", code="unsupported_media_type")
        return  # evaluated in the server's sandbox; nothing to check here

    import numpy as np

    from scoring.errors import PredictionFormatError
    from scoring.parsers import parse_predictions, sniff_format
    from scoring.types import Split

    spec = _spec_from_info(task_info)
    fmt = sniff_format(head)
    try:
        if fmt == "csv":
            ids = _csv_ids(path.read_bytes(), path.name)
            n = len(ids)
            label_tail: tuple[int, ...] = ()
        else:
            shape = _array_shape(path, fmt)
            if shape is None or not shape:
                ids, n, label_tail = ["0"], 1, ()
            else:
                n = int(shape[0])
                ids = [str(i) for i in range(n)]
                label_tail = tuple(int(x) for x in shape[2:]) if spec.kind == "segmentation" else ()
    except PredictionFormatError as e:
        raise _as_failure(e) from None
    if spec.kind == "multilabel":
        label_shape: tuple[int, ...] = (n, spec.num_classes)
    elif spec.kind == "segmentation":
        label_shape = (n, *(spec.image_size or label_tail or (1, 1)))
    else:
        label_shape = (n,)
    stand_in = Split(
        root=Path("."),
        labels=np.broadcast_to(np.uint8(0), label_shape),  # never read: only its shape is used
        ids=ids,
        public_mask=np.ones(n, dtype=bool),
        id_index={i: r for r, i in enumerate(ids)},
    )
    try:
        parse_predictions(path, spec, stand_in, filename=path.name)
    except PredictionFormatError as e:
        if str(e.code) in _NEEDS_SPLIT:
            return
        raise _as_failure(e) from None


def _as_failure(e: Any) -> ValidationFailed:
    return ValidationFailed(str(e), code=str(e.code), line=e.line, column=e.column)


def _spec_from_info(info: dict[str, Any]):  # -> scoring.types.TaskSpec
    from scoring.types import TaskSpec

    image_size = info.get("image_size")
    return TaskSpec(
        name=str(info.get("name", "task")),
        title=str(info.get("title") or info.get("name") or ""),
        kind=info.get("kind", "classification"),
        classes=tuple(info.get("classes") or ()),
        metric=info.get("metric", "accuracy"),
        ap=info.get("ap"),
        split="",
        public_fraction=float(info.get("public_fraction") or 1.0),
        points=None,
        scores=info.get("scores") or "any",
        image_size=tuple(image_size) if image_size else None,
        accepts=tuple(info.get("accepts") or ("predictions",)),
    )


def _csv_ids(data: bytes, filename: str) -> list[str]:
    """The distinct ids of the file's first column, in order (the header row excluded).

    Decoding goes through the scoring core's own text checks, so BOM/UTF-8/binary errors read
    exactly as on the server. A duplicated id appears once here and twice in the file, so the
    parser still reports it.
    """
    from scoring.parsers.text import decode_csv_text

    text = decode_csv_text(data, filename)
    seen: dict[str, None] = {}
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    first = True
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if first:
                first = False
                continue
            seen.setdefault(row[0].strip(), None)
    except csv.Error:
        pass  # the parser reports the malformed row with its line
    return list(seen)


def _array_shape(path: Path, fmt: str) -> tuple[int, ...] | None:
    """Shape from the .npy header (or the single / 'scores' array of an .npz), without loading data."""
    from numpy.lib import format as npformat

    def header(fp: IO[bytes]) -> tuple[int, ...] | None:
        try:
            version = npformat.read_magic(fp)
            read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _fortran, _dtype = read(fp, max_header_size=1 << 16)
            return tuple(shape)
        except Exception:  # corrupt header: the parser says so with its own words
            return None

    if fmt == "npy":
        with path.open("rb") as fp:
            return header(fp)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            if not infos:
                return None
            chosen = infos[0] if len(infos) == 1 else next(
                (i for i in infos if i.filename[:-4] in ("scores", "predictions", "probs", "arr_0")), infos[0])
            with zf.open(chosen) as member:
                return header(member)
    except (zipfile.BadZipFile, OSError):
        return None


def _looks_like_model(path: Path, head: bytes) -> bool:
    """Same rule as the server's upload sniffing: a torch zip, a safetensors file or a pickle."""
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                return any(n.rsplit("/", 1)[-1] in _MODEL_ZIP_ENTRIES for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        return 2 <= header_len <= 100_000_000 and header_len + 8 <= path.stat().st_size
    return False
