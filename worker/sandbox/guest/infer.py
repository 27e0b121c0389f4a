"""Batched inference over a memory-mapped input array, writing scores to a .npy file."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from heldout_guest.errors import GuestError


@dataclass
class InferJob:
    inputs: np.ndarray            # memory-mapped, (N, C, H, W) / (N, H, W, C) / (N, H, W)
    layout: str                   # "nchw" | "nhwc" | "nhw"
    out_path: str
    expected: list[int | None]    # output shape, None = any (the batch dimension)
    task: str
    mean: list[float] | None
    std: list[float] | None
    activation: str | None        # "softmax" | "sigmoid" | None, over dim 1
    batch_size: int
    autocast: str | None          # "bfloat16" | "float16" | None
    device: torch.device


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return "out of memory" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text


def _describe_shape(shape: list[int | None]) -> str:
    parts = ["N" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ")"


class Runner:
    def __init__(self, model: nn.Module, job: InferJob):
        self.model, self.job = model, job
        self.channels_last = job.layout != "nhw" and job.inputs.ndim == 4
        dev = job.device
        if job.autocast == "bfloat16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            job.autocast = "float16"
        self.normalize: tuple[torch.Tensor, torch.Tensor] | None = None   # (mean, std), per channel
        if job.mean is not None:
            self.normalize = (torch.tensor(job.mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1),
                              torch.tensor(job.std, dtype=torch.float32, device=dev).view(1, -1, 1, 1))
        if self.channels_last:
            self._to_channels_last()

    def _to_channels_last(self) -> None:
        try:
            self.model.to(memory_format=torch.channels_last)
        except Exception:
            self.channels_last = False

    def _prepare(self, start: int, stop: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.job.inputs[start:stop]))
        x = x.to(self.job.device, non_blocking=True)
        if self.job.layout == "nhw":
            x = x.unsqueeze(1)
        elif self.job.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)          # a channels_last view, no copy
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if self.normalize is not None:
            mean, std = self.normalize
            x = (x - mean) / std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = (torch.autocast(self.job.device.type, dtype=getattr(torch, self.job.autocast))
               if self.job.autocast else contextlib.nullcontext())
        with ctx:
            out = self.model(x)
        if isinstance(out, dict) and "out" in out:          # torchvision segmentation models
            out = out["out"]
        elif isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise GuestError(f"the model returned {type(out).__name__}, expected a tensor")
        out = out.float()
        if self.job.activation == "softmax":
            out = torch.softmax(out, dim=1)
        elif self.job.activation == "sigmoid":
            out = torch.sigmoid(out)
        return out

    def _check(self, out: torch.Tensor, start: int) -> None:
        exp = self.job.expected
        ok = out.dim() == len(exp) and all(e is None or e == d for e, d in zip(exp, out.shape))
        if not ok or out.shape[0] != self._last_batch:
            raise GuestError(f"output shape {tuple(out.shape)} does not fit task {self.job.task}: "
                             f"expected {_describe_shape(exp)}, N = {self._last_batch} images in the batch")
        if not bool(torch.isfinite(out).all()):
            bad = int((~torch.isfinite(out)).flatten(1).any(1).nonzero()[0, 0]) + start
            raise GuestError(f"the model's output contains NaN or infinite values (first at image {bad})")

    def _first_batch(self, stop: int) -> torch.Tensor:
        """The first batch also decides channels_last: some models .view() their input."""
        if self.channels_last:
            try:
                return self._forward(self._prepare(0, stop))
            except GuestError:
                raise
            except Exception as err:
                if _is_oom(err):
                    raise
                self.channels_last = False
                self.model.to(memory_format=torch.contiguous_format)
        return self._forward(self._prepare(0, stop))

    def run(self) -> dict:
        n = len(self.job.inputs)
        bs = max(1, min(self.job.batch_size, n))
        out_file: np.memmap | None = None
        start = 0
        t0 = time.perf_counter()
        with torch.inference_mode():
            while start < n:
                stop = min(n, start + bs)
                self._last_batch = stop - start
                try:
                    out = self._first_batch(stop) if out_file is None else self._forward(self._prepare(start, stop))
                except GuestError:
                    raise
                except Exception as err:
                    if not _is_oom(err):
                        detail = str(err).strip()
                        first_line = detail.splitlines()[0][:300] if detail else ""
                        raise GuestError(f"the model failed on images {start}..{stop - 1}: "
                                         f"{type(err).__name__}: {first_line}") from None
                    if bs == 1:
                        raise GuestError("ran out of memory even with batch size 1", "memory") from None
                    bs //= 2
                    if self.job.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                self._check(out, start)
                if out_file is None:
                    out_file = np.lib.format.open_memmap(
                        self.job.out_path, mode="w+", dtype=np.float32, shape=(n, *out.shape[1:]))
                out_file[start:stop] = out.cpu().numpy()
                start = stop
        if self.job.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        assert out_file is not None
        out_file.flush()
        return {"seconds": elapsed, "batch_size": bs, "channels_last": self.channels_last}
