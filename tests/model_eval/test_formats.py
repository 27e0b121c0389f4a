"""Model files recognised by their bytes (no sandbox needed), and the reference architectures."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

import reference_models
from tests.memory import peak_bytes_of
from tests.scoring.test_zipdir import claims_huge_directory, many_entries_zip
from worker.model_formats import ModelFormat, is_model_file, sniff_model_format
from worker.sandbox.errors import ModelRejected

from .helpers import save_safetensors, save_state_dict, save_torchscript
from .hostile_archives import (
    edit_archive,
    exported_program_bytes,
    hostile_exported_programs,
    safetensors_with_header,
)

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
    from pathlib import Path

    import yaml

    for path in sorted((Path(__file__).resolve().parents[2] / "datasets").glob("*.yaml")):
        name = (yaml.safe_load(path.read_text()) or {}).get("reference_model")
        assert name is None or reference_models.exists(name), f"{path.name}: {name}"



# --- exported programs whose payloads torch.export.load would unpickle --------------------

@pytest.mark.parametrize("kind, message", [
    ("pickled weight", r"weight 'fc\.weight' is stored as a pickle \(use_pickle\), which is never loaded"),
    ("pickled constant", r"constant 'lifted_tensor_0' is stored as a pickle"),
    ("pickled object constant", r"it holds 'data/constants/opaque_obj_0', a pickled object"),
    ("legacy pickled weights", r"it stores payloads in 'data/weights/model\.pt', the older pickled layout"),
    ("example inputs that fail safe loading", r"its example inputs .* hold io\.open, not only tensors"),
])
def test_exported_program_with_a_pickled_member_is_refused(tmp_path, kind, message):
    path = tmp_path / "m.pt2"
    path.write_bytes(hostile_exported_programs(tmp_path / "pwned")[kind])
    with pytest.raises(ModelRejected, match=r"^exported program refused: " + message) as err:
        sniff_model_format(path)
    assert "plain torch.Tensor" in str(err.value) or "torch.export.save" in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_exported_program_with_compiled_code_or_two_programs_is_refused(tmp_path):
    good = exported_program_bytes()
    path = tmp_path / "m.pt2"
    path.write_bytes(edit_archive(good, add={"data/aotinductor/model/model.so": b"\x7fELF"}))
    with pytest.raises(ModelRejected, match="compiled AOTInductor code"):
        sniff_model_format(path)
    path.write_bytes(edit_archive(good, add={"models/other.json": b"{}"}))
    with pytest.raises(ModelRejected, match="expected one program, 'models/model.json'"):
        sniff_model_format(path)
    path.write_bytes(edit_archive(good, add={"data/weights/MODEL_weights_config.json": b"{}"}))
    with pytest.raises(ModelRejected, match="2 entries named 'data/weights/model_weights_config.json'"):
        sniff_model_format(path)


def test_plain_exported_programs_are_accepted(tmp_path):
    path = tmp_path / "m.pt2"
    path.write_bytes(exported_program_bytes())
    assert sniff_model_format(path) is ModelFormat.EXPORTED
    model = reference_models.get("resnet18_classifier", 10).eval()
    ep = torch.export.export(model, (torch.zeros(2, 3, 32, 32),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(ep, tmp_path / "resnet.pt2")
    assert sniff_model_format(tmp_path / "resnet.pt2") is ModelFormat.EXPORTED


# --- archives and headers too large to parse ----------------------------------------------

def test_zip_with_too_many_entries_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "many.pt"
    path.write_bytes(many_entries_zip(150_000))

    def sniff():
        with pytest.raises(ModelRejected, match="lists 150,000 entries; at most 100,000 are accepted"):
            sniff_model_format(path)

    assert peak_bytes_of(sniff) < 2 << 20      # zipfile.ZipFile: ~90 MB for this directory


def test_zip_claiming_a_huge_directory_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "claims.pt"
    claims_huge_directory(path, 300 << 20)

    def sniff():
        with pytest.raises(ModelRejected, match="directory is 314,572,800 bytes"):
            sniff_model_format(path)

    assert peak_bytes_of(sniff) < 2 << 20


def test_huge_safetensors_header_is_refused_before_it_is_read(tmp_path):
    size = 67_000_000
    head, tail = b'{"__metadata__": {"k": "', b'"}}'
    body = head + b"a" * (size - len(head) - len(tail)) + tail
    path = safetensors_with_header(tmp_path / "big.safetensors", [body], size)
    del body

    def sniff():
        with pytest.raises(ModelRejected, match="header is 67,000,000 bytes; at most 1,048,576"):
            sniff_model_format(path)

    assert peak_bytes_of(sniff) < 2 << 20


def test_depth_scan_of_an_unterminated_string_header_is_linear():
    """A 1 MiB header of `{"` then `\\"` repeated (a string that never ends) was scanned
    quadratically inside one regex call, holding the API's GIL for an hour."""
    import time

    from worker.model_formats import _json_nests_deeper_than

    header = b'{"' + b'\\"' * (1 << 19)
    started = time.process_time()
    assert _json_nests_deeper_than(header, 3) is False
    assert _json_nests_deeper_than(b'{"a\\\\": [[[[1]]]]}', 3) is True  # an escaped backslash, then the quote ends it
    # generous: linear takes ~0.1 s here, the quadratic scan took ~5 s at 32 KB and ~80 min at 1 MiB
    assert time.process_time() - started < 10


def test_deeply_nested_safetensors_header_is_a_rejected_model(tmp_path):
    depth = 200_000
    body = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    path = safetensors_with_header(tmp_path / "deep.safetensors", [body], len(body))
    with pytest.raises(ModelRejected, match="nested more than 3 levels deep"):
        sniff_model_format(path)
