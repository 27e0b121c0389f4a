"""Load the uploaded model inside the sandbox, by the format the worker sniffed."""

from __future__ import annotations

import os
import pickle
import re

import torch
from torch import nn

from heldout_guest.errors import GuestError

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_LIST_MAX = 5


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _short_list(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_MAX])
    return shown + (f", … (+{len(items) - _LIST_MAX} more)" if len(items) > _LIST_MAX else "")


def _load_torch_state_dict(path: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(err))
        what = f" (found {found.group(1)})" if found else ""
        raise GuestError(
            "the file is not a plain state_dict: it needs Python objects that safe loading refuses"
            f"{what}; save it with torch.save(model.state_dict(), path)") from None
    except Exception as err:  # damaged archive, wrong byte order, …
        raise GuestError(f"could not read the state_dict: {_first_line(err)}") from None


def _load_safetensors(path: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as err:
        raise GuestError(f"could not read the safetensors file: {_first_line(err)}") from None


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    """Accept the usual checkpoint wrappers ({"state_dict": …}) and DataParallel's "module." prefix."""
    if isinstance(obj, dict) and len(obj) == 1:
        (key, inner), = obj.items()
        if key in _WRAPPER_KEYS and isinstance(inner, dict):
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise GuestError(f"expected a state_dict (a dict of tensor names to tensors), found {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise GuestError(f"expected a state_dict of tensors; entries that are not tensors: {_short_list(bad)}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _fit(model: nn.Module, name: str, sd: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} is {tuple(sd[k].shape)}, expected {tuple(expected[k].shape)}"
              for k in expected if k in sd and sd[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short_list(unexpected)}")
    if shapes:
        problems.append(f"shape of {_short_list(shapes)}")
    if problems:
        raise GuestError(f"state_dict does not fit reference model {name}: " + "; ".join(problems))
    model.load_state_dict(sd, strict=True)


def load_model(fmt: str, path: str, reference: str | None, num_classes: int, device: torch.device) -> nn.Module:
    if fmt == "torchscript":
        try:
            model = torch.jit.load(path, map_location=device)
        except Exception as err:
            raise GuestError(f"could not load the TorchScript archive: {_first_line(err)}") from None
    elif fmt == "exported_program":
        # torch.export.load falls back to full unpickling when safe loading of the example
        # inputs fails; forced safe loading turns that into an error. (The worker has already
        # refused archives that mark payloads as pickled.)
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            model = torch.export.load(path).module()
        except Exception as err:
            raise GuestError(f"could not load the exported program: {_first_line(err)}") from None
    elif fmt in ("state_dict", "safetensors"):
        import reference_models

        if reference is None or not reference_models.exists(reference):
            raise GuestError(f"this task names no known reference architecture ({reference!r})", "internal")
        raw = _load_safetensors(path) if fmt == "safetensors" else _load_torch_state_dict(path)
        model = reference_models.get(reference, num_classes)
        _fit(model, reference, _unwrap(raw))
    else:
        raise GuestError(f"unknown model format {fmt!r}", "internal")
    model = model.to(device)
    try:
        model.eval()
    except Exception:   # an exported program's module refuses eval(); it is already in eval mode
        pass
    return model
