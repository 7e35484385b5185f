"""The models, by name: ``build_model(name, in_channels, num_classes, feat_dim, image_size)`` makes one, whose
forward returns ``(features, logits)`` (``features``: ``(batch, feat_dim)``, the embedding the losses see;
``logits``: ``(batch, num_classes)``, its linear head's).

``MODELS`` lists each name with its class (imported when first built, so that a command knows the names
without loading torch) and its own departures from the reference recipe (``recipe``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelEntry:
    """``target``: ``".module:Class"`` of this package; ``takes_image_size``: its ``__init__`` takes the input's
    side in pixels after ``feat_dim``; ``recipe``: its own lr and weight decay where the reference's do not fit
    it (applied when a run does not give them; recorded as departures like any other)."""

    target: str
    takes_image_size: bool = False
    recipe: dict = field(default_factory=dict)


MODELS = {
    "resnet": ModelEntry(".resnet:PreActResNet"),
    # LeNet++ without batch norm is not safe at the reference lr (models/lenet.py): the PyTorch center-loss
    # port's SGD settings (momentum 0.9, as the reference)
    "lenet++": ModelEntry(
        ".lenet:LeNetPlusPlus", takes_image_size=True, recipe={"lr": 0.001, "weight_decay": 5e-4}
    ),
}


def model_class(name: str) -> type:
    """The model's class (imports it)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    module, _, attr = MODELS[name].target.partition(":")
    return getattr(importlib.import_module(module, __name__), attr)


def build_model(name: str, in_channels: int, num_classes: int, feat_dim: int, image_size: int):
    """The model ``name`` (``resnet``: the reference pre-activation ResNet; ``lenet++``: the center-loss
    demo's LeNet++) for images of ``in_channels`` channels: called on a float batch ``(n, in_channels, h, w)``
    it returns ``(features (n, feat_dim), logits (n, num_classes))``. ``image_size`` (the side in pixels) is
    read by the models whose registry entry takes it (LeNet++'s flattened layer); the ResNet pools globally
    and takes any size. ValueError for an unknown name."""
    cls = model_class(name)
    if MODELS[name].takes_image_size:
        return cls(in_channels, num_classes, feat_dim, image_size)
    return cls(in_channels, num_classes, feat_dim)


def model_recipe(name: str) -> dict:
    """A model's own departures from the reference recipe (LeNet++: the lr and weight decay of the PyTorch
    center-loss port); empty for the reference ResNet."""
    return dict(MODELS[name].recipe)
