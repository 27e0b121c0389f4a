"""Sandboxed evaluation gives the same scores as a bare PyTorch loop, for every accepted format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference_models
from worker.model_eval import ModelRun, evaluate_model_file

from .helpers import bare_loop, images, make_task, save_safetensors, save_state_dict, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:FutureWarning")

ATOL = 1e-5


def _trained(name: str, classes: int, seed: int = 0) -> torch.nn.Module:
    """A reference model with non-default weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    model = reference_models.get(name, classes)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _check(run: ModelRun, expected: np.ndarray, *, params: int) -> None:
    assert run.predictions.labels is None
    assert run.predictions.scores.shape == expected.shape
    np.testing.assert_allclose(run.predictions.scores, expected, atol=ATOL, rtol=1e-4)
    assert run.stats["params"] == params
    assert run.stats["ms_per_image"] > 0 and run.stats["peak_memory_mb"] > 0
    assert run.stats["device"] == "cpu" and run.stats["autocast"] is None


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("save", [save_torchscript, save_state_dict, save_safetensors],
                         ids=["torchscript", "torch.save", "safetensors"])
def test_fashion_basenet_all_formats(tmp_path, save):
    task = make_task()
    model = _trained("fashion_basenet", 10)
    x = images(64, 1, 28, 28)
    run = evaluate_model_file(save(model, tmp_path / "m"), task, x)
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_fashion_improved_safetensors_from_split_file(tmp_path):
    """Inputs given as a split file (N×H×W grayscale), read once and cached by path+mtime."""
    task = make_task(reference_model="fashion_basenet_improved")
    model = _trained("fashion_basenet_improved", 10)
    x = images(64, 1, 28, 28)
    np.save(tmp_path / "inputs.npy", x[:, 0])
    path = save_safetensors(model, tmp_path / "m.safetensors")
    run = evaluate_model_file(path, task, tmp_path / "inputs.npy")
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_cifar100_basenet_channels_last_inputs(tmp_path):
    """Inputs stored N×H×W×C (torchvision's CIFAR layout) are transposed inside the sandbox."""
    task = make_task("cifar100", classes=100, reference_model="cifar100_basenet",
                     mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), scores="logits")
    model = _trained("cifar100_basenet", 100)
    x = images(64, 3, 32, 32)
    path = save_state_dict(model, tmp_path / "m.pt")
    run = evaluate_model_file(path, task, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    _check(run, bare_loop(model, x, task), params=_params(model))


@pytest.mark.slow
@pytest.mark.parametrize("traced", [True, False], ids=["traced", "state_dict"])
def test_resnet18_classifier(tmp_path, traced):
    task = make_task("cifar100_resnet", classes=100, reference_model="resnet18_classifier",
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = _trained("resnet18_classifier", 100)
    x = images(64, 3, 32, 32)
    if traced:
        path = save_torchscript(model, tmp_path / "m.pt", example=torch.zeros(2, 3, 32, 32))
    else:
        path = save_state_dict(model, tmp_path / "m.pt")
    run = evaluate_model_file(path, task, x)
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_voc_multilabel_sigmoid(tmp_path):
    task = make_task("voc", kind="multilabel", classes=20, reference_model="voc_simple_classifier",
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    model = _trained("voc_simple_classifier", 20)
    x = images(32, 3, 64, 64)
    run = evaluate_model_file(save_state_dict(model, tmp_path / "m.pt"), task, x)
    _check(run, bare_loop(model, x, task), params=_params(model))
    assert ((run.predictions.scores > 0) & (run.predictions.scores < 1)).all()


@pytest.mark.slow
def test_segmentation_resnet18_x32(tmp_path):
    task = make_task("seg6", kind="segmentation", classes=6, reference_model="resnet18_seg32",
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), image_size=(224, 224))
    model = _trained("resnet18_seg32", 6)
    x = images(3, 3, 224, 224)
    run = evaluate_model_file(save_safetensors(model, tmp_path / "m.safetensors"), task, x)
    expected = bare_loop(model, x, task)
    assert run.predictions.scores.dtype == np.float32
    _check(run, expected, params=_params(model))
    np.testing.assert_allclose(run.predictions.scores.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_exported_program(tmp_path):
    task = make_task()
    model = _trained("fashion_basenet", 10)
    ep = torch.export.export(model, (torch.zeros(2, 1, 28, 28),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(ep, tmp_path / "m.pt2")
    x = images(40, 1, 28, 28)
    run = evaluate_model_file(tmp_path / "m.pt2", task, x)
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_student_architecture_torchscript(tmp_path):
    """Students' own networks: any scripted module whose output fits the task."""

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # .view needs a contiguous tensor: the sandbox must drop channels_last for this model.
            return self.fc(self.conv(x.view(x.size(0), 3, 8, 8)).reshape(x.size(0), -1))

    task = make_task(reference_model=None, mean=None, std=None)
    model = Tiny().eval()
    x = images(50, 3, 8, 8)
    run = evaluate_model_file(save_torchscript(model, tmp_path / "m.pt"), task, x)
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_memory_mapped_split_inputs_are_cached(tmp_path):
    """The service passes scoring.splits.load_inputs(dir): a memmap, cached by its file."""
    from worker.sandbox.pool import get_pool

    task = make_task()
    model = _trained("fashion_basenet", 10)
    x = images(32, 1, 28, 28)
    np.save(tmp_path / "inputs.npy", x)
    mm = np.load(tmp_path / "inputs.npy", mmap_mode="r")
    path = save_state_dict(model, tmp_path / "m.pt")
    first = get_pool().inputs.prepare(mm)
    assert not first.temporary and get_pool().inputs.prepare(mm) == first
    run = evaluate_model_file(path, task, mm)
    _check(run, bare_loop(model, x, task), params=_params(model))


def test_a_warm_spare_left_idle_past_the_startup_timeout_is_used(tmp_path):
    """A spare's "ready" line waits in its pipe for as long as the worker is idle; taking it
    minutes later must not count as a start that timed out."""
    import select

    from worker.sandbox.pool import get_pool

    task = make_task()
    model = _trained("fashion_basenet", 10)
    x = images(16, 1, 28, 28)
    path = save_state_dict(model, tmp_path / "m.pt")
    evaluate_model_file(path, task, x)                      # leaves a warm spare behind
    pool = get_pool()
    assert len(pool._spares) == 1
    spare = next(iter(pool._spares.values()))
    assert select.select([spare.proc.stdout], [], [], 120)[0], "the spare never said ready"
    spare.started -= 10 * 60                               # as if the worker had been idle for 10 min
    run = evaluate_model_file(path, task, x)
    assert spare.ready_at is not None                       # the old spare served this job
    _check(run, bare_loop(model, x, task), params=_params(model))
