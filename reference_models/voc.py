"""PASCAL VOC multi-label SimpleClassifier: a small CNN with one output per class (20 for VOC).

Outputs are per-class logits; the task decides whether scores are passed through a sigmoid.
Adaptive pooling keeps it usable at any input resolution (the course used 227×227).
"""

from __future__ import annotations

import torch
from torch import nn


class SimpleClassifier(nn.Module):
    def __init__(self, num_classes: int = 20):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5, stride=2)
        self.conv2 = nn.Conv2d(64, 32, 3)
        self.conv3 = nn.Conv2d(32, 16, 3)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d((4, 4))
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = self.gap(torch.relu(self.conv3(x)))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))
