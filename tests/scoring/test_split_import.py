"""`grade split import`: inputs written in the real torchvision on-disk formats."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from grader_api.cli.main import app
from scoring.errors import SplitError
from scoring.split_import import import_split, read_idx, safe_unpickle
from scoring.splits import load_inputs, load_split, read_meta
from scoring.tasks import parse_task

CIFAR10 = parse_task({"name": "cifar10", "kind": "classification",
                      "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck"],
                      "metric": "accuracy", "split": "cifar10/test"}, "t")


def _cifar_batch(path, n, label_key, rng, num_classes=10, protocol=2):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, n).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", label_key: labels, b"data": data,
                     b"filenames": [f"img{i}.png".encode() for i in range(n)]}, f, protocol=protocol)
    return data, np.array(labels)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_import(tmp_path, protocol):
    rng = np.random.default_rng(0)
    src = tmp_path / "data"
    data, labels = _cifar_batch(src / "cifar-10-batches-py" / "test_batch", 12, b"labels", rng,
                                protocol=protocol)
    out = import_split("cifar10", src, tmp_path / "out", task=CIFAR10, seed=3)
    split = load_split(out, CIFAR10)
    assert np.array_equal(split.labels, labels) and split.ids == [str(i) for i in range(12)]
    inputs = load_inputs(out)
    assert inputs.shape == (12, 3, 32, 32) and inputs.dtype == np.uint8
    assert np.array_equal(inputs.reshape(12, -1), data)          # CHW order as in the batch
    assert read_meta(out)["seed"] == 3


def test_cifar10_train_batches(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-10-batches-py"
    all_labels = [_cifar_batch(base / f"data_batch_{i}", 3, b"labels", rng)[1] for i in range(1, 6)]
    out = import_split("cifar10", tmp_path, tmp_path / "tr", train=True, seed=0)
    assert np.array_equal(load_split(out).labels, np.concatenate(all_labels))


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    _, labels = _cifar_batch(tmp_path / "cifar-100-python" / "test", 9, b"fine_labels", rng, 100)
    out = import_split("cifar100", tmp_path, tmp_path / "out", seed=1)
    assert np.array_equal(load_split(out).labels, labels)
    assert load_inputs(out).shape == (9, 3, 32, 32)


def test_random_seed_recorded_when_not_given(tmp_path):
    _cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", 4, b"labels",
                 np.random.default_rng(3))
    out = import_split("cifar10", tmp_path, tmp_path / "out")
    assert isinstance(read_meta(out)["seed"], int)


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [1]}))
    with pytest.raises(SplitError, match="not allowed"):
        import_split("cifar10", tmp_path, tmp_path / "out", seed=0)
    assert not (tmp_path / "out").exists()
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle(pickle.dumps(Evil()))


def test_cifar_errors(tmp_path):
    with pytest.raises(SplitError, match="test_batch"):
        import_split("cifar10", tmp_path, tmp_path / "out", seed=0)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(SplitError, match=r"\(N, 3072\)"):
        import_split("cifar10", tmp_path, tmp_path / "out", seed=0)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}))
    with pytest.raises(SplitError, match="1 labels are outside the 10 classes"):
        import_split("cifar10", tmp_path, tmp_path / "out", task=CIFAR10, seed=0)


def _idx(data: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, data.ndim) + struct.pack(f">{data.ndim}I", *data.shape) + \
        data.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_idx(tmp_path, gz):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, arr in [("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)]:
        blob = _idx(arr)
        if gz:
            (raw / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (raw / name).write_bytes(blob)
    out = import_split("fashion-mnist", tmp_path, tmp_path / "out", seed=2)
    split = load_split(out)
    assert np.array_equal(split.labels, labels.astype(np.int64))
    assert np.array_equal(load_inputs(out), images[:, None])


def test_idx_errors(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x00" * 8)   # float IDX
    with pytest.raises(SplitError, match="magic"):
        read_idx(p)
    p.write_bytes(_idx(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(SplitError, match="header says"):
        read_idx(p)
    assert read_idx_ok(tmp_path).shape == (2, 3)


def read_idx_ok(tmp_path):
    p = tmp_path / "ok"
    p.write_bytes(_idx(np.arange(6, dtype=np.uint8).reshape(2, 3)))
    return read_idx(p)


def _png(path, color, size=(6, 5)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


PETS = parse_task({"name": "pets", "kind": "classification", "classes": ["cat", "dog", "bird"],
                   "metric": "accuracy", "split": "pets", "image_size": [4, 4]}, "t")


def test_image_folder(tmp_path):
    src = tmp_path / "imgs"
    colors = {"cat": (255, 0, 0), "dog": (0, 255, 0), "bird": (0, 0, 255)}
    counts = {"cat": 3, "dog": 2, "bird": 4}
    for cls, n in counts.items():
        for i in range(n):
            _png(src / cls / f"{cls}_{i}.png", colors[cls])
    (src / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    out = import_split("image-folder", src, tmp_path / "out", task=PETS, seed=5)
    split = load_split(out, PETS)
    inputs = load_inputs(out)
    assert inputs.shape == (9, 3, 5, 6)
    assert np.bincount(split.labels, minlength=3).tolist() == [3, 2, 4]
    # class order is the task's; the pixels of each row match its label
    for row, label in enumerate(split.labels):
        assert tuple(inputs[row, :, 0, 0]) == colors[PETS.classes[label]]
    # rows are shuffled: position must not reveal the class
    assert split.labels.tolist() != sorted(split.labels.tolist())
    out2 = import_split("image-folder", src, tmp_path / "out2", task=PETS, seed=5, resize=True,
                        ids="filename")
    assert load_inputs(out2).shape == (9, 3, 4, 4)
    ids = load_split(out2).ids
    assert sorted(ids) == sorted(f"{c}_{i}" for c, n in counts.items() for i in range(n))


def test_image_folder_errors(tmp_path):
    src = tmp_path / "imgs"
    _png(src / "cat" / "a.png", (1, 2, 3))
    _png(src / "dog" / "b.png", (1, 2, 3), size=(8, 8))
    with pytest.raises(SplitError, match="pass --resize"):
        import_split("image-folder", src, tmp_path / "o", task=PETS, seed=0)
    _png(src / "horse" / "c.png", (1, 2, 3))
    with pytest.raises(SplitError, match="folder 'horse' is not a class"):
        import_split("image-folder", src, tmp_path / "o", task=PETS, seed=0)
    with pytest.raises(SplitError, match="--task is required"):
        import_split("image-folder", src, tmp_path / "o", seed=0)
    (src / "horse" / "c.png").unlink()
    (src / "horse").rmdir()
    (src / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SplitError, match="cannot read the image"):
        import_split("image-folder", src, tmp_path / "o", task=PETS, seed=0, resize=True)


def test_cli_import_and_info(tmp_path):
    _cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", 6, b"labels",
                 np.random.default_rng(6))
    task_file = tmp_path / "cifar10.yaml"
    task_file.write_text("name: cifar10\nkind: classification\nmetric: accuracy\nsplit: x\n"
                         "classes: [airplane, automobile, bird, cat, deer, dog, frog, horse, "
                         "ship, truck]\n")
    runner = CliRunner()
    res = runner.invoke(app, ["split", "import", "--format", "cifar10", "--source", str(tmp_path),
                              "--out", str(tmp_path / "out"), "--task", str(task_file),
                              "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert "6 items" in res.output and "seed 4" in res.output
    res = runner.invoke(app, ["split", "info", str(tmp_path / "out"), "--task", str(task_file)])
    assert res.exit_code == 0, res.output
    assert "items    6 (3 public" in res.output and "airplane:" in res.output
    res = runner.invoke(app, ["split", "info", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(app, ["split", "import", "--format", "cifar10", "--source", str(tmp_path),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "already exists" in res.output
