"""The interface every loss implements.

A loss is an ``nn.Module`` called as pytorch-metric-learning's losses are,
``loss(embeddings, labels)``, which returns the scalar to minimise; a loss that
trains the model's classifier head (``uses_logits``: xent, cent, the push
variants) also takes that head's ``logits=``. ``loss.loss_terms(embeddings,
labels, logits)`` returns ``(total, terms)``: the scalar and a dict of its named
terms (for logging; the trainer calls this). Its learnable centers or proxies
are its parameters (``loss.parameters()``: give them their own optimizer and
lr, or a center rule, ``centersuite.losses.center_rules``). A loss declares,
through class attributes, what the trainer and the evaluation need to know:

- ``uses_logits``: whether the loss trains the model's classifier head. When
  False, argmax accuracy is not reported (the head is untrained).
- ``prediction``: ``"logits"`` (argmax of ``class_logits``) or ``"centers"``
  (nearest center): how this loss classifies, i.e. its headline metric;
  ``class_logits(features, logits)``: the logits it classifies by (the model
  head's when it trains it; None for a loss that classifies by distance).
- ``centers``: the ``num_classes x feat_dim`` centers, or None;
  ``learnable_centers``: the same when they are a trained parameter.
- ``center_weight``: the weight in front of the term that pulls features to
  the centers (the ``separate`` center rule divides the center gradient by it).
- ``centers_only_pulled``: whether the pull term is the only one that moves
  the centers; the ``separate`` and ``wen`` rules replace exactly that
  term's update, so they are refused for a loss where other terms move them.
- ``graph_safe`` (True): False where the loss's step syncs with the host or
  makes shapes that depend on the data, so that it cannot be captured in a CUDA
  graph (the runner then gives it eager steps).

Its options (each defined once in ``losses/options.py``) are its ``__init__``'s
keyword parameters; the registry (``losses/__init__.py``) lists them, so that
commands know them without importing torch, and checks them against the
signature when it first loads the class.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .distances import squared_distances


class Loss(nn.Module):
    uses_logits: bool = True
    prediction: str = "logits"
    centers_only_pulled: bool = True
    graph_safe: bool = True
    compares_directions: bool = (
        False  # compares features by direction only (cosine): their norm is no scale
    )

    def __init__(self, num_classes: int, feat_dim: int):
        """``num_classes``: the classes the labels index (``0 .. num_classes - 1``); ``feat_dim``: the width
        ``d`` of the embeddings ``(n, d)`` the loss is called with. A loss's own options are keyword
        arguments with the defaults of the reference study (the class docstring gives its formula;
        ``LOSSES.entry(name).options`` lists them)."""
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

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple=None,
        *,
        logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The scalar loss of ``embeddings`` ``(batch, feat_dim)`` with ``labels`` ``(batch,)`` (int64, 0 to
        classes - 1); ``logits`` ``(batch, classes)``: the model head's, for a loss that trains it
        (``uses_logits``). ``indices_tuple`` (a miner's output, in pytorch-metric-learning's call) is taken by
        none of these losses: ValueError when given."""
        if indices_tuple is not None:
            raise ValueError(
                f"{type(self).__name__} takes no miner output (indices_tuple); call it as "
                "loss(embeddings, labels)"
            )
        return self.loss_terms(embeddings, labels, logits)[0]

    def loss_terms(
        self, embeddings: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None
    ):
        """``(total, {name: term})``: the scalar to minimise and its named terms."""  # pragma: no cover
        raise NotImplementedError

    def check_inputs(
        self, features: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor
    ):
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(
                f"{type(self).__name__}: features must be (batch, {self.feat_dim}), got {tuple(features.shape)}"
            )
        if labels.shape != features.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: labels must be ({features.shape[0]},), got {tuple(labels.shape)}"
            )
        if self.uses_logits and logits is None:
            raise ValueError(
                f"{type(self).__name__} trains the model's classifier head: call it as "
                "loss(embeddings, labels, logits=logits)"
            )
        if self.uses_logits and logits.shape != (features.shape[0], self.num_classes):
            raise ValueError(
                f"{type(self).__name__}: logits must be ({features.shape[0]}, {self.num_classes}), "
                f"got {tuple(logits.shape)}"
            )

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
        declared = next(
            (c.__dict__["pull_weight"] for c in cls.__mro__ if "pull_weight" in c.__dict__),
            "missing",
        )
        if declared == "missing" or (
            declared is not None and declared not in inspect.signature(cls.__init__).parameters
        ):
            raise TypeError(
                f"loss {cls.__name__}: it has learnable centers, so it must declare pull_weight, the name "
                "of the option that weighs its pull-to-center term (or None when it has none)"
            )
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
