"""The reference pre-activation ResNet.

stem 3x3 conv (16, no padding) -> five groups of one pre-activation basic
block, widths 32/32/64/64/128, strides 1/2/1/2/1 -> BN-ReLU -> global average
pool -> fc1 (128 -> feat_dim, the feature) -> fc2 (feat_dim -> classes).
About 0.4 M parameters at feat_dim 2.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3; 1x1 conv shortcut on the
    pre-activated input when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    widths = (32, 32, 64, 64, 128)
    strides = (1, 2, 1, 2, 1)

    def __init__(self, in_channels: int, num_classes: int, feat_dim: int):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 0, bias=False)
        blocks, ch = [], 16
        for width, stride in zip(self.widths, self.strides):
            blocks.append(PreActBlock(ch, width, stride))
            ch = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(ch)
        self.fc1 = nn.Linear(ch, feat_dim)
        self.fc2 = nn.Linear(feat_dim, num_classes)
        init_weights(self)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        features = self.fc1(out.mean((2, 3)))
        return features, self.fc2(features)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal conv and linear weights, zero biases, BN weight 1 bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
