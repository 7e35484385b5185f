"""What each dataset is on disk and how to parse it (the data specs: the engine reads datasets through them).

A ``DatasetSpec`` names the files of a dataset under the data root (torchvision
layout), their byte sizes and md5s, the expected split sizes and per-class
counts. ``load_split`` verifies the files, parses them with torchvision's own
dataset classes (``download=False``) and checks the labels, so a partial or
corrupt file is never trained on.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.datasets.fixes import HOW_TO_GET


class DataError(RuntimeError):
    """A dataset is missing or broken; the message says which file and what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    torchvision_class: str | None  # the name of torchvision's dataset class (imported when parsing)
    folder: str  # where the files live, relative to the data root
    files: dict[str, tuple[int | None, str]]  # file name -> (bytes or None, md5)
    train_size: int
    test_size: int
    class_names: tuple[str, ...]
    in_channels: int
    image_size: int
    balanced: bool  # every class has exactly size / num_classes samples
    extra: dict = field(default_factory=dict)
    make: object = None  # for generated data: (train: bool) -> (images, labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def how_to_get(self) -> str:
        """The command that brings the dataset's files (experiments/datasets/fixes.py: words for a reader,
        outside what a run's fingerprint hashes)."""
        return HOW_TO_GET[self.name]


IDX_SIZES = {
    "train-images-idx3-ubyte": 47040016,
    "train-labels-idx1-ubyte": 60008,
    "t10k-images-idx3-ubyte": 7840016,
    "t10k-labels-idx1-ubyte": 10008,
}


def _idx_spec(
    name: str,
    torchvision_class: str,
    folder: str,
    md5s: tuple[str, str, str, str],
    class_names: tuple[str, ...],
    balanced: bool,
) -> DatasetSpec:
    """An MNIST-layout dataset: four IDX files (train/test images and labels), 60k/10k 28x28 gray images;
    ``md5s`` in the order of ``IDX_SIZES``."""
    return DatasetSpec(
        name=name,
        torchvision_class=torchvision_class,
        folder=folder,
        files={
            file: (size, md5) for (file, size), md5 in zip(IDX_SIZES.items(), md5s, strict=True)
        },
        train_size=60000,
        test_size=10000,
        class_names=class_names,
        in_channels=1,
        image_size=28,
        balanced=balanced,
    )


def make_synthetic(train: bool, size: int | None = None):
    """A small separable 10-class problem: a bright 4x4 patch whose position is the
    class, on a noisy 16x16 background. Deterministic; for tests and smoke runs."""
    import torch

    n = size or (2000 if train else 500)
    g = torch.Generator().manual_seed(0 if train else 1)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 80, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    rows, cols = (labels // 4) * 4 + 2, (labels % 4) * 4
    for i in range(n):
        images[i, 0, rows[i] : rows[i] + 4, cols[i] : cols[i] + 4] = 200 + torch.randint(
            0, 56, (1,), generator=g
        ).to(torch.uint8)
    return images, labels


SPECS: dict[str, DatasetSpec] = {
    "mnist": _idx_spec(
        "mnist",
        "MNIST",
        "MNIST/raw",
        (
            "6bbc9ace898e44ae57da46a324031adb",
            "a25bea736e30d166cdddb491f175f624",
            "2646ac647ad5339dbf082846283269ea",
            "27ae3e4e09519cfbb04c329615203637",
        ),
        class_names=tuple(str(i) for i in range(10)),
        balanced=False,
    ),
    "fashion-mnist": _idx_spec(
        "fashion-mnist",
        "FashionMNIST",
        "FashionMNIST/raw",
        (
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
        ),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        balanced=True,
    ),
    "cifar-10": DatasetSpec(
        name="cifar-10",
        torchvision_class="CIFAR10",
        folder="cifar-10-batches-py",
        files={
            "data_batch_1": (None, "c99cafc152244af753f735de768cd75f"),
            "data_batch_2": (None, "d4bba439e000b95fd0a9bffe97cbabec"),
            "data_batch_3": (None, "54ebc095f3ab1f0389bbae665268c751"),
            "data_batch_4": (None, "634d18415352ddfa80567beed471001a"),
            "data_batch_5": (None, "482c414d41f54cd18b22e5b47cb7c3cb"),
            "test_batch": (None, "40351d587109b95175f43aff81a1287e"),
            "batches.meta": (None, "5ff9c542aee3614f3951f8cda6e48888"),
        },
        train_size=50000,
        test_size=10000,
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        in_channels=3,
        image_size=32,
        balanced=True,
        extra={
            "archive": "cifar-10-python.tar.gz",
            "archive_md5": "c58f30108f718f92721af3b95e74349a",
        },
    ),
    "synthetic": DatasetSpec(
        name="synthetic",
        torchvision_class=None,
        folder="",
        files={},
        train_size=2000,
        test_size=500,
        class_names=tuple(f"patch {i}" for i in range(10)),
        in_channels=1,
        image_size=16,
        balanced=True,
        make=make_synthetic,
    ),
}


OOD_PARTNERS = {
    "mnist": "fashion-mnist",
    "fashion-mnist": "mnist",
}  # the same image shape, other content


def get_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(SPECS)}")
    return SPECS[name]


def torchvision_class(spec: DatasetSpec) -> type:
    """torchvision's dataset class, checking the md5s of the spec (the same as
    torchvision's for the real files; the tests' tiny files have their own)."""
    from torchvision import datasets as tvd

    cls = getattr(tvd, spec.torchvision_class)
    if not issubclass(cls, tvd.CIFAR10):
        return cls
    md5 = {name: digest for name, (_, digest) in spec.files.items()}
    return type(
        "SpecCIFAR10",
        (cls,),
        {
            "train_list": [[n, md5[n]] for n, _ in tvd.CIFAR10.train_list],
            "test_list": [[n, md5[n]] for n, _ in tvd.CIFAR10.test_list],
            "meta": {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]},
        },
    )


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_problems(spec: DatasetSpec, root: Path) -> list[str]:
    """One line per missing, truncated or corrupt file; empty when all is well."""
    problems = []
    for name, (size, md5) in spec.files.items():
        path = Path(root) / spec.folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif size is not None and path.stat().st_size != size:
            problems.append(
                f"{path}: {path.stat().st_size} bytes, expected {size} (truncated or wrong file)"
            )
        elif md5_of(path) != md5:
            problems.append(f"{path}: md5 mismatch (corrupt or wrong file)")
    return problems


def verify_files(spec: DatasetSpec, root: Path) -> None:
    problems = file_problems(spec, root)
    if problems:
        raise DataError(
            f"{spec.name}: {problems[0]}{f' (+{len(problems) - 1} more)' if len(problems) > 1 else ''}; "
            f"to fix, {spec.how_to_get}"
        )


def check_labels(spec: DatasetSpec, labels, train: bool) -> None:
    import torch

    split = "train" if train else "test"
    expected = spec.train_size if train else spec.test_size
    counts = torch.bincount(labels, minlength=spec.num_classes)
    if len(labels) != expected or len(counts) != spec.num_classes or (counts == 0).any():
        raise DataError(
            f"{spec.name} {split}: {len(labels)} labels over {len(counts)} classes, "
            f"expected {expected} over {spec.num_classes}; to fix, {spec.how_to_get}"
        )
    if spec.balanced and not (counts == expected // spec.num_classes).all():
        raise DataError(
            f"{spec.name} {split}: class counts {counts.tolist()} are not balanced; to fix, {spec.how_to_get}"
        )


def load_split(spec: DatasetSpec, root: Path, train: bool):
    """Verified ``(images uint8 N x C x H x W, labels int64 N)`` of one split, on the CPU."""
    import torch

    if spec.make is not None:
        return spec.make(train)
    verify_files(spec, root)
    try:
        ds = torchvision_class(spec)(str(root), train=train, download=False)
    except Exception as e:  # a parser error on a file that passed the checks
        raise DataError(
            f"{spec.name}: torchvision could not parse the files in {Path(root) / spec.folder}: {e}; "
            f"to fix, {spec.how_to_get}"
        ) from e
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    check_labels(spec, labels, train)
    return images.contiguous(), labels


def default_data_root() -> Path:
    """``SUITE_DATA``, else ``data``; the old name ``CENTERLOSS_DATA`` still works, with a warning."""
    if "SUITE_DATA" not in os.environ and "CENTERLOSS_DATA" in os.environ:
        warnings.warn(
            "CENTERLOSS_DATA is now SUITE_DATA (the suite's variables all start with SUITE_); "
            "rename it",
            FutureWarning,
            stacklevel=2,
        )
        return Path(os.environ["CENTERLOSS_DATA"])
    return Path(os.environ.get("SUITE_DATA", "data"))
