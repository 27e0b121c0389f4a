"""Uploads that must be refused with a reason a student can act on; pickle payloads never run."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import reference_models
from worker.model_eval import ModelRejected, evaluate_model_file

from .helpers import (
    images,
    make_task,
    malicious_pickle,
    replace_zip_entry,
    save_state_dict,
    save_torchscript,
)
from .hostile_archives import hostile_exported_programs

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:FutureWarning")


@pytest.fixture
def x() -> np.ndarray:
    return images(16, 1, 28, 28)


def test_malicious_state_dict_pickle_is_refused_and_never_runs(tmp_path, x):
    marker = tmp_path / "pwned"
    good = io.BytesIO()
    torch.save(reference_models.get("fashion_basenet", 10).state_dict(), good)
    path = tmp_path / "evil.pt"
    path.write_bytes(replace_zip_entry(good.getvalue(), "/data.pkl", malicious_pickle(marker)))
    with pytest.raises(ModelRejected, match="not a plain state_dict.*safe loading refuses"):
        evaluate_model_file(path, make_task(), x)
    assert not marker.exists()


def test_raw_pickle_is_refused_without_loading(tmp_path, x):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(malicious_pickle(marker))
    with pytest.raises(ModelRejected, match="raw pickle"):
        evaluate_model_file(path, make_task(), x)
    assert not marker.exists()


def test_torchscript_with_pickle_payload_in_constants(tmp_path, x):
    """A traced archive whose pickled data carries a Python payload: torch.jit.load refuses it."""
    marker = tmp_path / "pwned"
    src = save_torchscript(reference_models.get("fashion_basenet", 10), tmp_path / "ok.pt").read_bytes()
    path = tmp_path / "evil.pt"
    path.write_bytes(replace_zip_entry(src, "/data.pkl", malicious_pickle(marker)))
    with pytest.raises(ModelRejected, match="could not load the TorchScript archive"):
        evaluate_model_file(path, make_task(reference_model=None), x)
    assert not marker.exists()


def test_exported_program_with_pickled_weights_is_refused_before_loading(tmp_path, x):
    """torch.export.load would torch.load(weights_only=False) a weight marked use_pickle."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt2"
    path.write_bytes(hostile_exported_programs(marker)["pickled weight"])
    with pytest.raises(ModelRejected, match=r"^exported program refused: weight 'fc\.weight' is stored as a "
                                            r"pickle \(use_pickle\).*plain torch\.Tensor"):
        evaluate_model_file(path, make_task(reference_model=None), x)
    assert not marker.exists()


def test_state_dict_keys_and_shapes_are_named(tmp_path, x):
    sd = reference_models.get("fashion_basenet", 7).state_dict()     # 7 classes: wrong head
    sd.pop("conv1.weight")
    sd["extra.bias"] = torch.zeros(3)
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(ModelRejected) as err:
        evaluate_model_file(tmp_path / "m.pt", make_task(), x)
    msg = str(err.value)
    assert msg.startswith("state_dict does not fit reference model fashion_basenet: missing keys conv1.weight")
    assert "unexpected keys extra.bias" in msg
    assert "fc3.weight is (7, 84), expected (10, 84)" in msg


def test_whole_model_pickle_is_refused(tmp_path, x):
    """torch.save(model) (not its state_dict) needs unsafe globals: refused, with the fix."""
    torch.save(reference_models.get("fashion_basenet", 10), tmp_path / "m.pt")
    with pytest.raises(ModelRejected, match=r"found reference_models\.fashion\.BaseNet.*model\.state_dict\(\)"):
        evaluate_model_file(tmp_path / "m.pt", make_task(), x)


def test_wrong_output_shape(tmp_path):
    x = images(100, 1, 28, 28)
    path = save_torchscript(reference_models.get("fashion_basenet", 7), tmp_path / "m.pt")
    with pytest.raises(ModelRejected,
                       match=r"^output shape \(100, 7\) does not fit task fashion_mnist: expected \(N, 10\)"):
        evaluate_model_file(path, make_task(reference_model=None), x)


def test_state_dict_for_task_without_reference(tmp_path, x):
    path = save_state_dict(reference_models.get("fashion_basenet", 10), tmp_path / "m.pt")
    with pytest.raises(ModelRejected, match="names no reference architecture.*TorchScript"):
        evaluate_model_file(path, make_task(reference_model=None), x)


def test_nan_outputs(tmp_path, x):
    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.size(0), 10), float("nan"))

    path = save_torchscript(Nan(), tmp_path / "m.pt")
    with pytest.raises(ModelRejected, match="NaN or infinite values"):
        evaluate_model_file(path, make_task(reference_model=None), x)


def test_model_error_is_reported(tmp_path, x):
    class Bad(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(-1, 3, 5)

    path = save_torchscript(Bad(), tmp_path / "m.pt")
    with pytest.raises(ModelRejected, match=r"the model failed on images 0\.\.15"):
        evaluate_model_file(path, make_task(reference_model=None), x)
