"""Model registry. Every model is built as ``build_model(name, in_channels,
num_classes, feat_dim, image_size)`` and its forward returns ``(features, logits)``."""
from __future__ import annotations

import inspect

from torch import nn

from .lenet import LeNetPlusPlus
from .resnet import PreActResNet


def _resnet(in_channels, num_classes, feat_dim, image_size):
    return PreActResNet(in_channels, num_classes, feat_dim)


def _lenet(in_channels, num_classes, feat_dim, image_size):
    return LeNetPlusPlus(in_channels, num_classes, feat_dim, image_size)


MODELS = {"resnet": _resnet, "lenet++": _lenet}


def build_model(name: str, in_channels: int, num_classes: int, feat_dim: int, image_size: int) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](in_channels, num_classes, feat_dim, image_size)


def model_recipe(model: str) -> dict:
    """A model's own departures from the reference recipe: its class's ``RECIPE`` (LeNet++: the lr and weight
    decay of the PyTorch center-loss port); empty for the reference ResNet."""
    used = inspect.getclosurevars(MODELS[model]).globals.values()
    return next((dict(c.RECIPE) for c in used if inspect.isclass(c) and hasattr(c, "RECIPE")), {})
