"""LeNet++ (the center-loss demo model for 2-D feature plots).

Six 5x5 convs 32/32/64/64/128/128 with PReLU, 2x2 max-pool after each pair,
``fc1: 128*s*s -> feat_dim`` with PReLU (the feature), ``fc2: feat_dim -> classes``.
For 28x28 input s = 3 (1152 inputs to fc1); for 32x32, s = 4.

Without batch norm, the seven PReLU layers are not safe at the reference
recipe's lr of 0.01 (the ResNet's, whose batch norm keeps its activations in
scale): with momentum 0.9 the standalone loss gave NaN within its first
steps and softmax within its first epoch. LeNet++ has its own recipe
(its registry entry's recipe, models/__init__.py: lr 0.001 and weight decay
5e-4, the settings the widely used PyTorch center-loss port trains it with), which the command line applies
when --lr and --weight-decay are not given; a run records them as departures
from the reference recipe like any other. At it, on 8,192 Fashion-MNIST
images for 2 epochs, softmax, center loss and the standalone loss all stay
finite and learn (test accuracy 0.45, 0.25, 0.34 after 128 steps).
"""

from __future__ import annotations

from torch import nn

from .resnet import init_weights


def conv_pair(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 5, padding=2),
        nn.PReLU(),
        nn.Conv2d(out_ch, out_ch, 5, padding=2),
        nn.PReLU(),
        nn.MaxPool2d(2),
    ]


class LeNetPlusPlus(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, feat_dim: int, image_size: int = 28):
        super().__init__()
        self.convs = nn.Sequential(
            *conv_pair(in_channels, 32), *conv_pair(32, 64), *conv_pair(64, 128)
        )
        side = image_size // 2 // 2 // 2
        self.fc1 = nn.Linear(128 * side * side, feat_dim)
        self.act = nn.PReLU()
        self.fc2 = nn.Linear(feat_dim, num_classes)
        init_weights(self)

    def forward(self, x):
        features = self.act(self.fc1(self.convs(x).flatten(1)))
        return features, self.fc2(features)
