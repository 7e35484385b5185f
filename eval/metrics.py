"""Evaluation rules: argmax, nearest center, class means. All on the device.

Nothing here reads a value back to the host: the functions return tensors,
the caller syncs once per evaluation.
"""

from __future__ import annotations

import torch

from ..losses.distances import squared_distances


@torch.no_grad()
def embed(
    model,
    images: torch.Tensor,
    batch_size: int | None = None,
    autocast_dtype=None,
    memory_format=torch.contiguous_format,
    forward=None,
):
    """``(features, logits)`` of uint8 images in eval mode, in fixed-size chunks, float32.

    Default chunk: 4096 on CUDA; 256 on the CPU, where large batches fall out of cache. Each chunk is
    scaled into one input buffer that is reused, and the outputs are written into tensors allocated
    once, so an evaluation allocates the same few blocks whatever the number of images. ``forward``:
    a compiled forward of ``model`` (static shapes: every chunk, the last too, runs on the full buffer).
    """
    batch_size = min(batch_size or (4096 if images.is_cuda else 256), max(len(images), 1))
    was_training = model.training
    model.eval()
    x = torch.empty((batch_size, *images.shape[1:]), device=images.device).contiguous(
        memory_format=memory_format
    )
    features = logits = None
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        xb = x[: len(chunk)]
        xb.copy_(chunk).div_(255.0)
        with torch.autocast(
            x.device.type,
            dtype=autocast_dtype or torch.bfloat16,
            enabled=autocast_dtype is not None,
        ):
            f, z = model(xb) if forward is None else [out[: len(chunk)] for out in forward(x)]
        if features is None:
            features = torch.empty(len(images), f.shape[1], device=images.device)
            logits = torch.empty(len(images), z.shape[1], device=images.device)
        features[start : start + len(chunk)] = f
        logits[start : start + len(chunk)] = z
    model.train(was_training)
    return features, logits


def nearest_center(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the closest center (squared Euclidean) for each feature; a center
    that is not finite (a class with no training sample) is never the closest."""
    d = squared_distances(features, centers.nan_to_num(0.0))
    return d.masked_fill(~torch.isfinite(centers).all(1), float("inf")).argmin(1)


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Samples per class as float, without a host sync (unlike ``bincount`` on CUDA)."""
    ones = torch.ones_like(labels, dtype=torch.float)
    return torch.zeros(num_classes, device=labels.device).index_add_(0, labels, ones)


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean feature of each class; a class with no sample gets NaN (never nearest)."""
    sums = torch.zeros(num_classes, features.shape[1], device=features.device).index_add_(
        0, labels, features.float()
    )
    counts = class_counts(labels, num_classes)[:, None]
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The share of ``predictions`` ``(n,)`` equal to ``labels`` ``(n,)``: a 0-d tensor in [0, 1]."""
    return (predictions == labels).float().mean()


@torch.no_grad()
def nearest_center_accuracy(
    embeddings: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """Accuracy of classifying ``embeddings`` ``(n, d)`` by their nearest of ``centers`` ``(classes, d)``
    (squared Euclidean; row j is class j), against ``labels`` ``(n,)``: a 0-d tensor in [0, 1]."""
    return accuracy(nearest_center(embeddings, centers), labels)


@torch.no_grad()
def class_mean_accuracy(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """Accuracy of classifying ``embeddings`` ``(n, d)`` by the nearest mean of the ``train_embeddings``
    ``(m, d)`` of each class (``train_labels`` ``(m,)``): a 0-d tensor in [0, 1]."""
    return nearest_center_accuracy(
        embeddings, labels, class_means(train_embeddings, train_labels, num_classes)
    )


@torch.no_grad()
def argmax_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of the argmax of ``logits`` ``(n, classes)`` against ``labels`` ``(n,)``: a 0-d tensor."""
    return accuracy(logits.argmax(1), labels)


def evaluate_embeddings(
    loss, train_features, train_labels, test_features, test_logits, test_labels
) -> dict[str, torch.Tensor]:
    """Test accuracies of one model by every rule that applies.

    - ``argmax``: argmax of the logits the loss classifies by (NaN for a loss that classifies by distance);
    - ``class_mean``: nearest mean of the training features of each class;
    - ``center``: nearest learned center, or the class means for a loss without centers;
    (``class_mean``, and ``center`` without learned centers, are NaN when no train features are given)
    - ``headline``: the rule the loss declares (argmax or nearest learned center).
    """
    num_classes = loss.num_classes
    nan = torch.full((), float("nan"), device=test_features.device)
    means = (
        class_means(train_features, train_labels, num_classes)
        if train_features is not None
        else None
    )
    centers = loss.centers.detach() if loss.centers is not None else means
    class_logits = loss.class_logits(test_features, test_logits)
    out = {
        "argmax": accuracy(class_logits.argmax(1), test_labels)
        if class_logits is not None
        else nan,
        "class_mean": accuracy(nearest_center(test_features, means), test_labels)
        if means is not None
        else nan,
        "center": accuracy(nearest_center(test_features, centers), test_labels)
        if centers is not None
        else nan,
    }
    out["headline"] = out["argmax"] if loss.prediction == "logits" else out["center"]
    return out
