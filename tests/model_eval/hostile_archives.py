"""Real torch.export.save archives, and the same archives edited the way an attacker would:
each variant makes plain torch.export.load run a pickle payload (checked when they were written)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from .helpers import malicious_pickle


class _Net(torch.nn.Module):
    """Parameters, a buffer and a lifted tensor constant: every payload kind an archive has."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(28 * 28, 10)
        self.register_buffer("shift", torch.zeros(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) + self.shift + torch.tensor([0.0] * 9 + [1e-3])


def exported_program_bytes() -> bytes:
    ep = torch.export.export(_Net().eval(), (torch.zeros(2, 1, 28, 28),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def edit_archive(src: bytes, replace: dict[str, bytes | Callable[[bytes], bytes]] | None = None,
                 add: dict[str, bytes] | None = None) -> bytes:
    """The archive with entries (named relative to its root folder) replaced or added."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            data = zin.read(info)
            change = replace.get(info.filename.split("/", 1)[1])
            if change is not None:
                data = change(data) if callable(change) else change
            zout.writestr(info, data)
        for rel, data in add.items():
            zout.writestr(zipfile.ZipInfo(f"{root}/{rel}"), data)
    return out.getvalue()


def payload_meta(fqn: str, **changes) -> Callable[[bytes], bytes]:
    """An edit of a weights/constants config: `changes` applied to entry `fqn`."""
    def edit(data: bytes) -> bytes:
        config = json.loads(data)
        config["config"][fqn].update(changes)
        return json.dumps(config).encode()
    return edit


def hostile_exported_programs(marker: Path) -> dict[str, bytes]:
    """One archive per way torch.export.load unpickles a member; each creates `marker` if loaded."""
    good = exported_program_bytes()
    payload = malicious_pickle(marker)
    return {
        "pickled weight": edit_archive(good, replace={
            "data/weights/model_weights_config.json": payload_meta("fc.weight", use_pickle=True),
            "data/weights/weight_0": payload}),
        "pickled constant": edit_archive(good, replace={
            "data/constants/model_constants_config.json": payload_meta("lifted_tensor_0", use_pickle=True),
            "data/constants/tensor_0": payload}),
        "pickled object constant": edit_archive(good, replace={
            "data/constants/model_constants_config.json": payload_meta(
                "lifted_tensor_0", path_name="opaque_obj_0", use_pickle=True, tensor_meta=None)},
            add={"data/constants/opaque_obj_0": payload}),
        "legacy pickled weights": edit_archive(good, add={"data/weights/model.pt": payload}),
        "example inputs that fail safe loading": edit_archive(good, replace={
            "data/sample_inputs/model.pt": lambda inputs: edit_archive(inputs, replace={"data.pkl": payload})}),
    }


def safetensors_with_header(path: Path, header_text_chunks, total: int) -> Path:
    """A safetensors file whose header is the concatenated chunks (`total` bytes), no data."""
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", total))
        f.writelines(header_text_chunks)
    return path
