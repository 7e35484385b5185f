"""The interface every loss implements.

A loss is an ``nn.Module`` called as ``loss(features, logits, labels)`` that
returns ``(total, terms)``: the scalar to minimise and a dict of its named
terms (detached-free tensors, for logging). It owns its parameters (centers)
and declares, through class attributes, what the trainer and the evaluation
need to know:

- ``uses_logits``: whether the loss trains the model's classifier head. When
  False, argmax accuracy is not reported (the head is untrained).
- ``prediction``: ``"logits"`` (argmax of ``class_logits``) or ``"centers"``
  (nearest center): how this loss classifies, i.e. its headline metric;
  ``class_logits(features, logits)``: the logits it classifies by (the model
  head's when it trains it; None for a loss that classifies by distance).
- ``centers``: the ``num_classes x feat_dim`` centers, or None;
  ``learnable_centers``: the same when they are a trained parameter.
- ``pairs_across_classes``: whether a term sums over pairs of samples with
  different labels, so a batch holding one class (batch size 1) makes it 0.
- ``center_weight``: the weight in front of the term that pulls features to
  the centers (the ``separate`` center rule divides the center gradient by it).
- ``options``: the options it takes (losses/options.py: each defined once,
  with its default and search range), the parameters of its ``__init__``,
  whose defaults are the options' defaults (checked when the class is defined).
- ``centers_only_pulled``: whether the pull term is the only one that moves
  the centers; the ``separate`` and ``wen`` rules replace exactly that
  term's update, so they are refused for a loss where other terms move them.

Two optional attributes, read where they are absent as their defaults:
``graph_safe`` (True): False where the loss's step syncs with the host or makes
shapes that depend on the data, so that it cannot be captured in a CUDA graph
(the runner then gives it eager steps); ``libraries`` (none): the names of the
installed packages whose code computes the loss (their versions enter its rows'
code fingerprint).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from .distances import squared_distances
from .options import Option


class Loss(nn.Module):
    uses_logits: bool = True
    prediction: str = "logits"
    pairs_across_classes: bool = False
    centers_only_pulled: bool = True
    options: tuple[Option, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        params = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                  if k not in ("self", "num_classes", "feat_dim")}
        declared = {o.name: o.default for o in cls.options}
        if params != declared:
            raise TypeError(f"loss {cls.__name__}: its options {declared} (class attribute options, see "
                            f"losses/options.py) must be its __init__ parameters with their defaults, {params}")

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.feat_dim = feat_dim

    @property
    def centers(self) -> torch.Tensor | None:
        return None

    @property
    def learnable_centers(self) -> torch.nn.Parameter | None:
        """The centers if they are a trained parameter (fixed centers are not)."""
        return self.centers if isinstance(self.centers, nn.Parameter) else None

    @property
    def center_weight(self) -> float:
        return 1.0

    def forward(self, features, logits, labels):  # pragma: no cover - interface
        raise NotImplementedError

    def check_inputs(self, features: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor):
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"{type(self).__name__}: features must be (batch, {self.feat_dim}), got {tuple(features.shape)}")
        if labels.shape != features.shape[:1]:
            raise ValueError(f"{type(self).__name__}: labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
        if self.uses_logits and (logits is None or logits.shape != (features.shape[0], self.num_classes)):
            got = None if logits is None else tuple(logits.shape)
            raise ValueError(f"{type(self).__name__}: logits must be ({features.shape[0]}, {self.num_classes}), got {got}")

    def class_logits(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        return logits if self.uses_logits else None

    @torch.no_grad()
    def predict(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Class predictions by this loss's own rule."""
        if self.prediction == "logits":
            return self.class_logits(features, logits).argmax(1)
        return squared_distances(features, self.centers).argmin(1)


class CenterParameters(nn.Module):
    """Learnable class centers, initialised from a standard normal (reference)."""

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, feat_dim))


class LossWithCenters(Loss):
    """A loss that owns learnable centers. Every subclass declares ``pull_weight``: the option that
    weighs its pull-to-center term (the ``separate`` rule divides by it), or None where no term pulls
    features to the centers; a subclass that forgets it is refused when it is defined."""

    def __init_subclass__(cls, **kwargs):
        declared = next((c.__dict__["pull_weight"] for c in cls.__mro__ if "pull_weight" in c.__dict__), "missing")
        if declared == "missing" or (declared is not None and declared not in inspect.signature(cls.__init__).parameters):
            raise TypeError(f"loss {cls.__name__}: it has learnable centers, so it must declare pull_weight, the name "
                            "of the option that weighs its pull-to-center term (or None when it has none)")
        super().__init_subclass__(**kwargs)

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__(num_classes, feat_dim)
        self.center_params = CenterParameters(num_classes, feat_dim)

    @property
    def centers(self) -> nn.Parameter:
        return self.center_params.weight

    @property
    def center_weight(self) -> float | None:
        return None if self.pull_weight is None else getattr(self, self.pull_weight)
