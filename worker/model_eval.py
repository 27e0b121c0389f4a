"""Evaluate an uploaded model file on a split's inputs, inside the sandbox.

The worker process never loads the upload: it sniffs the format by bytes, stages the file and
the inputs in a sandbox's private directory, and reads back a scores array that it validates
again (the guest is untrusted once the model is loaded). Labels never enter the sandbox; the
scoring core applies them to the returned Predictions.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scoring.types import Predictions, TaskSpec
from worker.model_formats import ModelFormat, check_model_file
from worker.sandbox.errors import ModelLimitExceeded, ModelRefused, ModelRejected, SandboxUnavailable
from worker.sandbox.inputs import PreparedInputs
from worker.sandbox.limits import SandboxLimits
from worker.sandbox.pool import get_pool
from worker.sandbox.process import SandboxProcess

__all__ = ["ModelLimitExceeded", "ModelRefused", "ModelRejected", "ModelRun", "SandboxLimits", "SandboxUnavailable",
           "default_device", "evaluate_model_file"]

_CPU_BATCH_ELEMENTS = 1 << 20      # ~4 MB of float input per batch on CPU
_GPU_BATCH_ELEMENTS = 1 << 24
_MAX_BATCH = 1024
_NPY_HEADER_MAX_BYTES = 1 << 16   # a version 1.0 header is at most 64 KiB


@dataclass
class ModelRun:
    predictions: Predictions
    stats: dict = field(default_factory=dict)


def default_device() -> str:
    """'cuda' when this worker can see a usable GPU, else 'cpu' (the service may override)."""
    if not os.path.exists("/dev/nvidiactl") or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return "cpu"
    import torch  # only on machines with a GPU driver

    return "cuda" if torch.cuda.is_available() else "cpu"


def _threads(limits: SandboxLimits) -> int:
    return limits.threads or max(1, len(os.sched_getaffinity(0)))


def _layout(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return "nhw"
    if shape[1] in (1, 3) or shape[3] not in (1, 3):
        return "nchw"
    return "nhwc"


def _image_hw(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    return (shape[1], shape[2]) if layout in ("nhw", "nhwc") else (shape[2], shape[3])


def _expected_output(task: TaskSpec, hw: tuple[int, int]) -> list[int | None]:
    if task.kind == "segmentation":
        h, w = task.image_size or hw
        return [None, task.num_classes, h, w]
    return [None, task.num_classes]


def _activation(task: TaskSpec) -> str | None:
    if task.scores != "probabilities":
        return None
    return "sigmoid" if task.kind == "multilabel" else "softmax"


def _batch_size(shape: tuple[int, ...], device: str, limits: SandboxLimits) -> int:
    if limits.batch_size:
        return limits.batch_size
    per_image = int(np.prod(shape[1:]))
    budget = _GPU_BATCH_ELEMENTS if device.startswith("cuda") else _CPU_BATCH_ELEMENTS
    bs = 1
    while bs * 2 * per_image <= budget and bs * 2 <= _MAX_BATCH:
        bs *= 2
    return bs


def _autocast(task: TaskSpec, device: str) -> str | None:
    # CPU autocast is off: bf16 on CPUs without AMX is slower and changes scores for nothing.
    if not (task.allow_autocast and device.startswith("cuda")):
        return None
    return "bfloat16"   # the guest falls back to float16 where bf16 is unsupported


def _job(task: TaskSpec, fmt: ModelFormat, prepared: PreparedInputs, device: str,
         limits: SandboxLimits, guest_in: Path) -> dict:
    layout = _layout(prepared.shape)
    channels = 1 if layout == "nhw" else (prepared.shape[1] if layout == "nchw" else prepared.shape[3])
    if task.input_mean is not None and len(task.input_mean) not in (1, channels):
        raise ValueError(f"task {task.name}: input_mean has {len(task.input_mean)} values for {channels} channels")
    return {
        "format": fmt.value, "model_path": str(guest_in / "model"),
        "inputs_path": str(guest_in / "inputs.npy"), "layout": layout,
        "reference_model": task.reference_model, "num_classes": task.num_classes,
        "expected": _expected_output(task, _image_hw(prepared.shape, layout)), "task": task.name,
        "mean": list(task.input_mean) if task.input_mean is not None else None,
        "std": list(task.input_std) if task.input_std is not None else None,
        "activation": _activation(task), "batch_size": _batch_size(prepared.shape, device, limits),
        "autocast": _autocast(task, device),
    }


def _npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy version {version}")


def _read_scores(box: SandboxProcess, expected: list[int | None], n: int, task: TaskSpec) -> np.ndarray:
    """Re-check what the untrusted guest wrote: a plain float32 array of the expected shape.

    The header is checked before anything is allocated, and no more than the expected array
    is read, whatever the file claims.
    """
    want = tuple(n if d is None else d for d in expected)
    nbytes = int(np.prod(want)) * np.dtype(np.float32).itemsize
    f = box.open_output("scores.npy", _NPY_HEADER_MAX_BYTES + nbytes)   # refuses pipes, links, …
    if f is None:
        raise ModelRejected("the model produced no readable scores")
    with f:
        try:
            shape, fortran_order, dtype = _npy_header(f)
        except (OSError, ValueError):
            raise ModelRejected("the model produced no readable scores") from None
        if dtype != np.float32 or tuple(shape) != want:
            raise ModelRejected(f"output shape {tuple(shape)} does not fit task {task.name}: expected {want}")
        buf = np.empty(want[::-1] if fortran_order else want, dtype=np.float32)
        view, got = buf.data.cast("B"), 0
        while got < nbytes and (step := f.readinto(view[got:])):
            got += step
        if got != nbytes or f.read(1):
            raise ModelRejected(f"the model's scores file holds {got} bytes of data; {nbytes} were expected")
    scores = np.ascontiguousarray(buf.T) if fortran_order else buf
    if not np.isfinite(scores).all():
        raise ModelRejected("the model's output contains NaN or infinite values")
    return scores


def evaluate_model_file(path: Path, task: TaskSpec, inputs: np.ndarray | Path, *,
                        device: str = "cpu", limits: SandboxLimits | None = None) -> ModelRun:
    """Run the model at `path` on `inputs` (split order) in a sandbox and return its scores.

    Raises ModelRejected (a reason for the student) for anything wrong with the submission:
    ModelRefused before any sandbox started, ModelLimitExceeded for a limit; SandboxUnavailable
    when this machine cannot sandbox at all, ValueError for bad inputs/task.
    """
    path = Path(path)
    limits = limits or SandboxLimits(wall_time_s=task.model_time_limit_s)
    fmt = check_model_file(path, task)
    pool = get_pool()
    threads = _threads(limits)
    prepared = pool.inputs.prepare(inputs)
    box = pool.take(device, threads, limits.max_file_bytes)
    try:
        job = _job(task, fmt, prepared, device, limits, box.launch.guest.inputs)
        shutil.copyfile(path, box.dirs.inputs / "model")
        os.chmod(box.dirs.inputs / "model", 0o444)
        pool.inputs.stage(prepared, box.dirs.inputs / "inputs.npy")
        outcome = box.run(job, limits)
        if not outcome.ok and outcome.limit is not None:
            raise ModelLimitExceeded(outcome.reason or f"hit the {outcome.limit} limit", outcome.limit)
        if not outcome.ok:
            raise ModelRejected(outcome.reason or "the model failed")
        scores = _read_scores(box, job["expected"], prepared.shape[0], task)
    finally:
        box.close()
        pool.inputs.release(prepared)
        pool.refill(device, threads, limits.max_file_bytes)
    scores = scores if task.kind == "segmentation" else scores.astype(np.float64)
    guest = outcome.result.get("stats", {})
    stats = {
        "params": int(guest.get("params", 0)),
        "ms_per_image": float(guest.get("ms_per_image", 0.0)),
        "peak_memory_mb": float(guest.get("peak_memory_mb", 0.0)),
        "device": device, "autocast": job["autocast"],
        "batch_size": int(guest.get("batch_size", job["batch_size"])),
        "format": fmt.value, "threads": threads,
        "load_s": float(guest.get("load_s", 0.0)),
        "sandbox": pool.mode, "wall_s": outcome.wall_s, "guest_s": float(guest.get("guest_s", 0.0)),
    }
    return ModelRun(Predictions(scores=scores, source_format="model"), stats)
