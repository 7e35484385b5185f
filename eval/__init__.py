"""Evaluation on plain tensors: accuracies by nearest center, class mean and argmax (``metrics``), 1-NN and
MAP@R (``embedding``), out-of-distribution scores and their detection metrics (``ood``), the geometry of class
centers (``geometry``). Every function takes tensors (embeddings ``(n, d)``, labels ``(n,)``, centers
``(classes, d)``, logits ``(n, classes)``) on any device and returns tensors there."""

# the functions with their inputs checked (public.py); the engine imports the modules themselves
from .public import (
    accuracy,
    argmax_accuracy,
    center_score,
    center_shift,
    class_mean_accuracy,
    class_means,
    detection_metrics,
    energy_score,
    intra_inter_ratio,
    knn1_accuracy,
    knn_score,
    map_at_r,
    msp_score,
    nearest_center,
    nearest_center_accuracy,
    nearest_center_gap,
)

__all__ = [
    "accuracy",
    "argmax_accuracy",
    "center_score",
    "center_shift",
    "class_mean_accuracy",
    "class_means",
    "detection_metrics",
    "energy_score",
    "intra_inter_ratio",
    "knn1_accuracy",
    "knn_score",
    "map_at_r",
    "msp_score",
    "nearest_center",
    "nearest_center_accuracy",
    "nearest_center_gap",
]
