"""6-class segmentation net: ResNet-18 features (stride 32), 1×1 classifier, ×32 bilinear upsampling.

224×224 inputs give 7×7 feature maps and 224×224 per-pixel class logits (N×K×224×224).
"""

from __future__ import annotations

import torch
from torch import nn


class ResNet18Upsample32(nn.Module):
    def __init__(self, num_classes: int = 6):
        super().__init__()
        from torchvision.models import resnet18  # lazy: torchvision import is slow

        backbone = resnet18(weights=None)
        # Everything up to layer4: drop the global pool and fc.
        self.features = nn.Sequential(*list(backbone.children())[:-2])
        self.classifier = nn.Conv2d(512, num_classes, kernel_size=1)
        self.upsample = nn.Upsample(scale_factor=32, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.classifier(self.features(x)))
