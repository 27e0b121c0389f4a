"""Reference architectures a task may name for state_dict submissions.

`get(name, num_classes)` builds a fresh, randomly initialised model; no weights are
ever downloaded. The registry maps names to "module:function" so that listing or
checking names (`NAMES`, `exists`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# name -> "submodule:builder"; every builder takes num_classes and returns an nn.Module.
_REGISTRY: dict[str, str] = {
    "fashion_basenet": "fashion:BaseNet",
    "fashion_basenet_improved": "fashion:ImprovedNet",
    "voc_simple_classifier": "voc:SimpleClassifier",
    "cifar100_basenet": "cifar:BaseNet",
    "resnet18_classifier": "resnet:resnet18_classifier",
    "resnet18_seg32": "segmentation:ResNet18Upsample32",
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def exists(name: str) -> bool:
    return name in _REGISTRY


def get(name: str, num_classes: int) -> "nn.Module":
    """A new instance of reference architecture `name` with `num_classes` outputs."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown reference model {name!r}; known: {', '.join(NAMES)}") from None
    module_name, attr = target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, attr)(num_classes)
