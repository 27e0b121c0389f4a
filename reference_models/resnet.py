"""ResNet-18 classifiers (CIFAR-10/100, birds): torchvision's resnet18 with a replaced head."""

from __future__ import annotations

from torch import nn


def resnet18_classifier(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18  # lazy: torchvision import is slow

    model = resnet18(weights=None)  # never download: students submit their own weights
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
