"""Build split directories from data an instructor already has on disk, in torchvision's
on-disk formats. Never downloads anything.

Formats: CIFAR-10/100 python batches (pickled dicts), FashionMNIST IDX files (optionally
.gz), and an ImageFolder tree (one sub-folder of images per class).

CIFAR batches are pickles. Instructor files are trusted less than code, so they are read
with a restricted unpickler that can only rebuild plain containers and numpy arrays.
"""

from __future__ import annotations

import gzip
import io
import pickle
import secrets
import struct
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scoring.errors import SplitError
from scoring.splits import load_split, write_split
from scoring.types import TaskSpec

FORMATS = ("cifar10", "cifar100", "fashion-mnist", "image-folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
MAX_PICKLE_BYTES = 1 << 30

# (module, name) pairs a CIFAR batch needs; nothing else can be constructed or called.
_ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("builtins", "bytearray"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data batch")


def safe_unpickle(data: bytes) -> Any:
    """Unpickle CIFAR-style data: dicts, lists, bytes, numbers and numpy arrays only."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


# --------------------------------------------------------------------------- CIFAR

def _find(source: Path, candidates: list[str]) -> Path:
    for c in candidates:
        p = source / c
        if p.is_file():
            return p
    raise SplitError(f"{source}: none of {', '.join(candidates)} found "
                     "(point --source at the folder torchvision downloaded into)")


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise SplitError(f"{path}: larger than a CIFAR batch can be")
    try:
        obj = safe_unpickle(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path}: not a CIFAR python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise SplitError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    obj = {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}
    if b"data" not in obj or label_key not in obj:
        raise SplitError(f"{path}: expected keys b'data' and {label_key!r}")
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise SplitError(f"{path}: b'data' must be uint8 (N, 3072), found {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise SplitError(f"{path}: {label_key!r} must hold {data.shape[0]} integer labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar(source: Path, *, hundred: bool, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from torchvision's CIFAR folder."""
    source = Path(source)
    if hundred:
        folder = "cifar-100-python"
        names = ["train"] if train else ["test"]
        key = b"fine_labels"
    else:
        folder = "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        key = b"labels"
    base = source / folder if (source / folder).is_dir() else source
    parts = [_read_batch(_find(base, [n]), key) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --------------------------------------------------------------------------- FashionMNIST

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format, unsigned bytes), plain or gzip-compressed."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise SplitError(f"{path}: broken gzip data ({exc})") from None
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise SplitError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if not 1 <= ndim <= 4 or len(raw) < 4 + 4 * ndim:
        raise SplitError(f"{path}: IDX header declares {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    count = int(np.prod(shape, dtype=np.int64))
    body = raw[4 + 4 * ndim:]
    if len(body) != count:
        raise SplitError(f"{path}: header says {shape} ({count} bytes), file has {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def read_fashion_mnist(source: Path, *, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, 28, 28), labels int64 (N,)) from torchvision's FashionMNIST folder."""
    source = Path(source)
    base = source
    for sub in ("FashionMNIST/raw", "raw"):
        if (source / sub).is_dir():
            base = source / sub
            break
    prefix = "train" if train else "t10k"
    img_path = _find(base, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz"])
    lab_path = _find(base, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels-idx1-ubyte.gz"])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise SplitError(f"{base}: images {images.shape} and labels {labels.shape} do not match")
    return images[:, None, :, :], labels.astype(np.int64)


# --------------------------------------------------------------------------- ImageFolder

def read_image_folder(source: Path, classes: tuple[str, ...], *,
                      size: tuple[int, int] | None = None, channels: int = 3,
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, C, H, W), labels, file stems) from `source/<class>/<image>`.
    Class order is the task's; a folder that is not a class is an error. Images must all
    have one size unless `size` (H, W) is given, in which case they are resized."""
    from PIL import Image  # lazily: only this importer needs Pillow

    source = Path(source)
    if not source.is_dir():
        raise SplitError(f"{source}: not a directory")
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = {c: k for k, c in enumerate(classes)}
    for f in folders:
        if f.name not in index:
            raise SplitError(f"{source}: folder {f.name!r} is not a class of the task "
                             f"(classes: {', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
    mode = "L" if channels == 1 else "RGB"
    images: list[np.ndarray] = []
    labels: list[int] = []
    stems: list[str] = []
    for f in folders:
        files = sorted(p for p in f.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        for p in files:
            try:
                with Image.open(p) as opened:
                    im = opened.convert(mode)
                    if size is not None and im.size != (size[1], size[0]):
                        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (OSError, ValueError) as exc:
                raise SplitError(f"{p}: cannot read the image ({exc})") from None
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            if images and arr.shape != images[0].shape:
                raise SplitError(f"{p}: size {arr.shape[1]}x{arr.shape[2]} differs from "
                                 f"{images[0].shape[1]}x{images[0].shape[2]}; pass --resize to "
                                 "resize to the task's image_size")
            images.append(arr)
            labels.append(index[f.name])
            stems.append(p.stem)
    if not images:
        raise SplitError(f"{source}: no images found in class folders")
    return np.stack(images), np.asarray(labels, dtype=np.int64), stems


# --------------------------------------------------------------------------- import

def import_split(fmt: str, source: str | Path, out: str | Path, *, task: TaskSpec | None = None,
                 seed: int | None = None, train: bool = False, resize: bool = False,
                 ids: Literal["index", "filename"] = "index", overwrite: bool = False) -> Path:
    """Read `source` in format `fmt` and write a split directory at `out`.

    `seed` fixes the public/private partition; when None a random one is drawn (students
    cannot then predict which ids are public) and recorded in split.json.
    """
    if fmt not in FORMATS:
        raise SplitError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    source = Path(source)
    if not source.exists():
        raise SplitError(f"{source}: not found")
    if seed is None:
        seed = secrets.randbits(63)  # a partition an attacker cannot find by trying every seed
    which = "train" if train else "test"
    id_list: list[str] | None = None
    if fmt in ("cifar10", "cifar100"):
        images, labels = read_cifar(source, hundred=fmt == "cifar100", train=train)
    elif fmt == "fashion-mnist":
        images, labels = read_fashion_mnist(source, train=train)
    else:
        if task is None:
            raise SplitError("--task is required for image-folder (it fixes the class order)")
        if resize and task.image_size is None:
            raise SplitError(f"task {task.name!r} has no image_size to resize to")
        channels = len(task.input_mean) if task.input_mean else 3
        images, labels, stems = read_image_folder(
            source, task.classes, size=task.image_size if resize else None,
            channels=1 if channels == 1 else 3)
        # Folder order groups items by class; shuffle so position (and index ids) reveal nothing.
        perm = np.random.default_rng(seed).permutation(len(labels))
        images, labels = images[perm], labels[perm]
        if ids == "filename":
            id_list = [stems[i] for i in perm]
            if len(set(id_list)) != len(id_list):
                raise SplitError(f"{source}: image file names are not unique across class "
                                 "folders; use index ids")
    if task is not None:
        if task.kind != "classification":
            raise SplitError(f"task {task.name!r} is {task.kind}; these formats hold "
                             "classification labels")
        bad = int(np.count_nonzero((labels < 0) | (labels >= task.num_classes)))
        if bad:
            raise SplitError(f"{source}: {bad} labels are outside the {task.num_classes} classes "
                             f"of task {task.name!r}")
    root = write_split(out, labels, ids=id_list, inputs=images, seed=seed,
                       source=f"{fmt} {which} split", overwrite=overwrite)
    load_split(root, task)   # validate what was written, with the same code that will read it
    return root
