"""Shared helpers: tasks, model files written by the tests, a bare evaluation loop to compare with."""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from scoring.types import TaskSpec

warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*", category=FutureWarning)


def make_task(name: str = "fashion_mnist", *, kind: str = "classification", classes: int = 10,
              reference_model: str | None = "fashion_basenet", mean=(0.5,), std=(0.5,),
              scores: str = "probabilities", image_size=None, time_limit: float = 60.0) -> TaskSpec:
    return TaskSpec(
        name=name, title=name, kind=kind, classes=tuple(f"c{i}" for i in range(classes)),
        metric="mean_iou" if kind == "segmentation" else ("mean_ap" if kind == "multilabel" else "accuracy"),
        ap="step" if kind != "classification" else None, split="unused", public_fraction=0.5, points=None,
        scores=scores, image_size=image_size, input_mean=mean, input_std=std, accepts=("model",),
        reference_model=reference_model, model_time_limit_s=time_limit)


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def bare_loop(model: torch.nn.Module, x: np.ndarray, task: TaskSpec, batch: int = 16) -> np.ndarray:
    """The plain PyTorch evaluation a course would write: normalise, forward, softmax/sigmoid."""
    model.eval()
    outs = []
    mean = torch.tensor(task.input_mean).view(1, -1, 1, 1) if task.input_mean else None
    std = torch.tensor(task.input_std).view(1, -1, 1, 1) if task.input_std else None
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            t = torch.from_numpy(x[i:i + batch]).float() / 255
            if mean is not None:
                t = (t - mean) / std
            out = model(t)
            if task.scores == "probabilities":
                out = torch.sigmoid(out) if task.kind == "multilabel" else torch.softmax(out, 1)
            outs.append(out.numpy())
    return np.concatenate(outs)


def save_torchscript(model: torch.nn.Module, path: Path, example: torch.Tensor | None = None) -> Path:
    model.eval()
    scripted = torch.jit.trace(model, example) if example is not None else torch.jit.script(model)
    torch.jit.save(scripted, str(path))
    return path


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def save_safetensors(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


class Loop(torch.nn.Module):
    """Never returns: the wall-time limit must stop it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x + 1
        return x


class Peek(torch.nn.Module):
    """torch.from_file is scriptable: reads `nbytes` of `path` (the labels, say) if it can."""

    def __init__(self, path: str, nbytes: int = 10):
        super().__init__()
        self.path = path
        self.nbytes = nbytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file(self.path, False, self.nbytes, dtype=torch.uint8)
        return x.flatten(1)[:, :10].float() + stolen.float().sum()


class Drop(torch.nn.Module):
    """torch.save is scriptable (and fails silently): a model can try to write files."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(torch.zeros(4), self.path)
        return x.flatten(1)[:, :10].float()


class Payload:
    """Unpickling this creates `marker`: proof that an upload's pickle code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def replace_zip_entry(src: bytes, suffix: str, data: bytes) -> bytes:
    """Rewrite the entry ending in `suffix` of a torch zip archive."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename.endswith(suffix) else zin.read(info))
    return out.getvalue()


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"conv1.weight": Payload(marker)}, protocol=2)

