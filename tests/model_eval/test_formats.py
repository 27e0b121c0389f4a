"""Model files recognised by their bytes (no sandbox needed), and the reference architectures."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

import reference_models
from worker.model_formats import ModelFormat, is_model_file, sniff_model_format
from worker.sandbox.errors import ModelRejected

from .helpers import save_safetensors, save_state_dict, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:FutureWarning")


@pytest.fixture
def net() -> torch.nn.Module:
    return reference_models.get("fashion_basenet", 10)


def test_formats_are_sniffed(tmp_path, net):
    files = {
        ModelFormat.TORCHSCRIPT: save_torchscript(net, tmp_path / "a.pt"),
        ModelFormat.STATE_DICT: save_state_dict(net, tmp_path / "b.pt"),
        ModelFormat.SAFETENSORS: save_safetensors(net, tmp_path / "c.safetensors"),
    }
    for fmt, path in files.items():
        assert sniff_model_format(path) is fmt
        assert is_model_file(path.read_bytes()[:64])


def test_exported_program_is_sniffed(tmp_path):
    ep = torch.export.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),))
    torch.export.save(ep, tmp_path / "e.pt2")
    assert sniff_model_format(tmp_path / "e.pt2") is ModelFormat.EXPORTED


@pytest.mark.parametrize("content, found", [
    (pickle.dumps({"w": 1}), "raw pickle"),
    (b"id,label\n1,2\n", "unrecognised content"),
    (b"", "empty file"),
])
def test_non_models_are_named(tmp_path, content, found):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    assert not is_model_file(content[:64])
    with pytest.raises(ModelRejected, match=f"expected a TorchScript archive.*found .*{found}"):
        sniff_model_format(path)


def test_predictions_npz_is_not_a_model(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, scores=np.zeros((2, 3)))
    (tmp_path / "p.npz").write_bytes(buf.getvalue())
    assert not is_model_file(buf.getvalue()[:64])
    with pytest.raises(ModelRejected, match="not a PyTorch archive"):
        sniff_model_format(tmp_path / "p.npz")


def test_truncated_safetensors(tmp_path, net):
    path = save_safetensors(net, tmp_path / "c.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelRejected, match="truncated"):
        sniff_model_format(path)


@pytest.mark.parametrize("name, shape, out", [
    ("fashion_basenet", (2, 1, 28, 28), (2, 10)),
    ("fashion_basenet_improved", (2, 1, 28, 28), (2, 10)),
    ("cifar100_basenet", (2, 3, 32, 32), (2, 100)),
    ("voc_simple_classifier", (2, 3, 64, 64), (2, 20)),
    ("resnet18_classifier", (2, 3, 32, 32), (2, 100)),
    ("resnet18_seg32", (1, 3, 224, 224), (1, 6, 224, 224)),
])
def test_reference_models_build(name, shape, out):
    classes = out[1]
    model = reference_models.get(name, classes).eval()
    with torch.inference_mode():
        assert tuple(model(torch.zeros(shape)).shape) == out


def test_unknown_reference_model():
    assert not reference_models.exists("vgg")
    with pytest.raises(KeyError, match="known: fashion_basenet"):
        reference_models.get("vgg", 10)


def test_task_files_name_known_reference_models():
    import yaml
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "datasets").glob("*.yaml")):
        name = (yaml.safe_load(path.read_text()) or {}).get("reference_model")
        assert name is None or reference_models.exists(name), f"{path.name}: {name}"

