"""The evaluation as the library exports it (``centersuite.eval``): the same functions, their inputs checked.

A researcher's tensors come from anywhere: labels shaped ``(n, 1)`` broadcast into an accuracy above 1, a
negative "ignore" label counts a class from the end, a diverged model's NaN scores sort as a perfect
detector. Each function here checks what it is given and raises ``ValueError`` in one line naming the
argument, the shape or value at fault and what it should be, then calls the module that computes it
(``metrics``, ``embedding``, ``ood``, ``geometry``), whose docstrings give the formulas.

The suite's engine imports those modules directly, never these names: its data are checked where they are
read (experiments/datasets/), and a run's numbers pass only through code its fingerprint covers.
"""

from __future__ import annotations

import functools
import inspect

import torch

from . import embedding, geometry, metrics, ood


def _matrix(name: str, x, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor (n, d), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has {x.shape[1]} columns where {dim} are expected (the same d)")
    return x


def _labels(name: str, labels, n: int, num_classes: int | None) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or len(labels) != n:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D tensor of {n} class indices, got {shape}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must hold integer class indices (int64), got {labels.dtype}")
    if n and num_classes is not None:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            hint = " (filter out 'ignore' labels such as -1 first)" if bad < 0 else ""
            raise ValueError(
                f"{name} holds {bad}, outside the class indices 0..{num_classes - 1}{hint}"
            )
    return labels


def _scores(name: str, scores) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1 or len(scores) == 0:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{name} must be a non-empty 1-D tensor of scores, got {shape}")
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} scores that are not finite (NaN or inf: a diverged model?); "
            "no detection metric is defined on them"
        )
    return scores


def _checked(compute, check):
    """``compute`` with its signature and docstring, ``check`` run first on its arguments in order (given by
    position or by name, defaults filled in)."""
    signature = inspect.signature(compute)

    @functools.wraps(compute)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        check(*bound.args)
        return compute(*args, **kwargs)

    wrapper.__doc__ = (compute.__doc__ or "") + (
        "\n\n    Inputs checked first (``centersuite.eval.public``): ValueError, in one line, for a shape, "
        "dtype, label or score at fault."
    )
    return wrapper


def _predictions(predictions, labels):
    if not isinstance(predictions, torch.Tensor) or predictions.dim() != 1:
        raise ValueError("predictions must be a 1-D tensor of class indices")
    _labels("labels", labels, len(predictions), None)


def _by_centers(embeddings, labels, centers):
    _matrix("centers", centers)
    _labels(
        "labels", labels, len(_matrix("embeddings", embeddings, centers.shape[1])), len(centers)
    )


def _by_class_means(train_embeddings, train_labels, embeddings, labels, num_classes):
    train = _matrix("train_embeddings", train_embeddings)
    _labels("train_labels", train_labels, len(train), num_classes)
    _labels("labels", labels, len(_matrix("embeddings", embeddings, train.shape[1])), num_classes)


def _by_logits(logits, labels):
    _labels("labels", labels, len(_matrix("logits", logits)), logits.shape[1])


def _features(features, labels, num_classes, *_):
    _labels("labels", labels, len(_matrix("features", features)), num_classes)


def _knn1(query, query_labels, reference, reference_labels, *_):
    reference = _matrix("reference", reference)
    if len(reference) == 0:
        raise ValueError("reference holds no sample: 1-NN needs at least one")
    _labels("reference_labels", reference_labels, len(reference), None)
    _labels("query_labels", query_labels, len(_matrix("query", query, reference.shape[1])), None)


def _embeddings_centers(embeddings, centers):
    _matrix("embeddings", embeddings, _matrix("centers", centers).shape[1])


def _embeddings_reference(embeddings, reference, *_):
    if len(_matrix("reference", reference)) == 0:
        raise ValueError("reference holds no sample: the kNN score needs at least one")
    _matrix("embeddings", embeddings, reference.shape[1])


def _detection(scores_in, scores_out):
    _scores("scores_in", scores_in)
    _scores("scores_out", scores_out)


def _center_shift(centers, before):
    _matrix("centers", centers)
    if not isinstance(before, torch.Tensor) or before.shape != centers.shape:
        raise ValueError(f"before must have the centers' shape {tuple(centers.shape)}")


accuracy = _checked(metrics.accuracy, _predictions)
nearest_center = _checked(metrics.nearest_center, _embeddings_centers)
nearest_center_accuracy = _checked(metrics.nearest_center_accuracy, _by_centers)
class_means = _checked(metrics.class_means, _features)
class_mean_accuracy = _checked(metrics.class_mean_accuracy, _by_class_means)
argmax_accuracy = _checked(metrics.argmax_accuracy, _by_logits)
knn1_accuracy = _checked(embedding.knn1_accuracy, _knn1)
map_at_r = _checked(embedding.map_at_r, _features)
intra_inter_ratio = _checked(embedding.intra_inter_ratio, _features)
center_score = _checked(ood.center_score, _embeddings_centers)
knn_score = _checked(ood.knn_score, _embeddings_reference)
msp_score = _checked(ood.msp_score, lambda logits: _matrix("logits", logits))
energy_score = _checked(ood.energy_score, lambda logits: _matrix("logits", logits))
detection_metrics = _checked(ood.detection_metrics, _detection)
nearest_center_gap = _checked(
    geometry.nearest_center_gap, lambda centers: _matrix("centers", centers)
)
center_shift = _checked(geometry.center_shift, _center_shift)
