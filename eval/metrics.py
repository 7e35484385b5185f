"""Evaluation rules: argmax, nearest center, class means. All on the device.

Nothing here reads a value back to the host: the functions return tensors,
the caller syncs once per evaluation.
"""
from __future__ import annotations

import torch

from losses.distances import squared_distances


@torch.no_grad()
def embed(model, images: torch.Tensor, batch_size: int | None = None, autocast_dtype=None):
    """``(features, logits)`` of uint8 images in eval mode, in large batches, float32.

    Default batch: 4096 on CUDA; 256 on the CPU, where large batches fall out of cache.
    """
    batch_size = batch_size or (4096 if images.is_cuda else 256)
    was_training = model.training
    model.eval()
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float().div_(255.0)
        if x.is_cuda:  # the model is channels_last on CUDA
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            f, z = model(x)
        features.append(f.float())
        logits.append(z.float())
    model.train(was_training)
    return torch.cat(features), torch.cat(logits)


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
    sums = torch.zeros(num_classes, features.shape[1], device=features.device).index_add_(0, labels, features.float())
    counts = class_counts(labels, num_classes)[:, None]
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (predictions == labels).float().mean()


def evaluate_embeddings(loss, train_features, train_labels, test_features, test_logits, test_labels) -> dict[str, torch.Tensor]:
    """Test accuracies of one model by every rule that applies.

    - ``argmax``: argmax of the logits the loss classifies by (NaN for a loss that classifies by distance);
    - ``class_mean``: nearest mean of the training features of each class;
    - ``center``: nearest learned center, or the class means for a loss without centers;
    - ``headline``: the rule the loss declares (argmax or nearest learned center).
    """
    num_classes = loss.num_classes
    means = class_means(train_features, train_labels, num_classes)
    centers = loss.centers.detach() if loss.centers is not None else means
    nan = torch.full((), float("nan"), device=test_features.device)
    class_logits = loss.class_logits(test_features, test_logits)
    out = {
        "argmax": accuracy(class_logits.argmax(1), test_labels) if class_logits is not None else nan,
        "class_mean": accuracy(nearest_center(test_features, means), test_labels),
        "center": accuracy(nearest_center(test_features, centers), test_labels),
    }
    out["headline"] = out["argmax"] if loss.prediction == "logits" else out["center"]
    return out
