"""The data of one run, held whole on the training device, and its batches.

``DeviceData`` holds a dataset's verified splits as uint8 tensors on the
device (a fixed training subset, a fixed stratified validation split under the
fair protocol, the known classes of an open-set run, the out-of-distribution
images); ``epoch_batches`` draws an epoch's batch indices on the device. Files
are only read here, never fetched: a runner makes them present first
(``experiments/datasets/sources.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from experiments.datasets.specs import (
    OOD_PARTNERS,
    DataError,
    DatasetSpec,
    file_problems,
    get_spec,
    load_split,
)
from experiments.engine.protocol import protocol_of


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0][:120] if lines else type(error).__name__


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, held_out)`` indices: ``fraction`` of every class held out, by a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        held.append(members[: round(len(members) * fraction)])
    held_out = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return mask.nonzero().squeeze(1), held_out


NOISE = "noise"  # where no partner is at hand: uniform uint8 noise of the run's image shape, seed 0


def parse_classes(text: str) -> list[int]:
    """``"0-5"`` or ``"0,2,4-6"`` -> sorted class indices."""
    out = set()
    for part in filter(None, text.replace(" ", "").split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


def class_names(dataset: str, known_classes: str = "") -> tuple[str, ...]:
    """The names of a run's classes in its label order: the dataset's, or only the known ones (open set)."""
    names = get_spec(dataset).class_names
    known = parse_classes(known_classes or "")
    return tuple(names[c] for c in known) if known else names


def load_data(cfg, data_root: Path, device) -> DeviceData:
    """The data of the run ``cfg`` (a RunConfig), on ``device``."""
    return DeviceData(
        get_spec(cfg.dataset),
        data_root,
        device,
        cfg.train_size,
        cfg.test_size,
        val_fraction=protocol_of(cfg.protocol).val_fraction,
        known_classes=parse_classes(cfg.known_classes) or None,
        ood_images=cfg.ood_images or None,
    )


def noise_images(n: int, spec: DatasetSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(
        0,
        256,
        (n, spec.in_channels, spec.image_size, spec.image_size),
        generator=g,
        dtype=torch.uint8,
    )


def load_images(path: Path, spec: DatasetSpec) -> torch.Tensor:
    """uint8 images of ``spec``'s shape from a .npy file: N x H x W, N x H x W x C or N x C x H x W."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(
            f"{path}: not a readable .npy file ({first_line(e)}); save the images with numpy.save"
        ) from None
    images = torch.from_numpy(array)
    c, size = spec.in_channels, spec.image_size
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.dim() == 4 and images.shape[-1] == c and images.shape[1] != c:
        images = images.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (c, size, size):
        raise DataError(
            f"{path}: {array.dtype} images of shape {tuple(array.shape)}; {spec.name} needs uint8 images "
            f"of {c} x {size} x {size} (N x H x W x C or N x C x H x W)"
        )
    return images.contiguous()


class DeviceData:
    """A dataset held whole as uint8 tensors on the training device.

    With ``val_fraction`` > 0 a fixed stratified part of the training split
    (seed 0, the same for every run) becomes the validation split. With
    ``known_classes`` (open-set recognition) only those classes are trained,
    selected and tested on (relabelled 0..k-1); the test images of the other
    classes are the out-of-distribution set. Otherwise the out-of-distribution
    set is the test split of the partner dataset (MNIST <-> Fashion-MNIST), or
    uniform noise where there is none, as many images as the test split, or
    the images of a .npy file the user gives (``ood_images``).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        root: Path,
        device: torch.device,
        train_size: int | None = None,
        test_size: int | None = None,
        val_fraction: float = 0.0,
        known_classes: list[int] | None = None,
        ood_images: Path | None = None,
    ):
        self.spec = spec
        self.ood_note = (
            ""  # why the planned out-of-distribution set is not the one scored, if it is not
        )
        train_images, train_labels = self._subset(*load_split(spec, root, train=True), train_size)
        test_images, test_labels = self._subset(*load_split(spec, root, train=False), test_size)
        self.class_names = spec.class_names
        if known_classes:
            unknown = [c for c in range(spec.num_classes) if c not in known_classes]
            if not unknown or any(c >= spec.num_classes for c in known_classes):
                raise ValueError(
                    f"known classes {known_classes}: give a proper subset of 0..{spec.num_classes - 1}"
                )
            train_images, train_labels = self._known(train_images, train_labels, known_classes)
            ood_mask = torch.isin(test_labels, torch.tensor(unknown))
            self.ood_name, ood_images = "unknown classes", test_images[ood_mask]
            test_images, test_labels = self._known(test_images, test_labels, known_classes)
            self.class_names = tuple(spec.class_names[c] for c in known_classes)
        elif ood_images:
            self.ood_name, ood_images = Path(ood_images).name, load_images(ood_images, spec)
        else:
            self.ood_name, ood_images = self._ood(spec, root, len(test_labels))
        self.ood_images = ood_images.to(device)
        self.test_images, self.test_labels = test_images.to(device), test_labels.to(device)
        self.val_images = self.val_labels = None
        if val_fraction > 0:
            keep, held = stratified_split(train_labels, val_fraction)
            self.val_images, self.val_labels = (
                train_images[held].to(device),
                train_labels[held].to(device),
            )
            train_images, train_labels = train_images[keep], train_labels[keep]
        self.train_images, self.train_labels = train_images.to(device), train_labels.to(device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def _subset(images, labels, size):
        """The first ``size`` samples of a fixed permutation (the same for every run)."""
        if size is not None and size < len(labels):
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size]
            images, labels = images[keep], labels[keep]
        return images, labels

    @staticmethod
    def _known(images, labels, known: list[int]):
        """Only the known classes, relabelled 0..k-1 in the order given."""
        mask = torch.isin(labels, torch.tensor(known))
        relabel = torch.full((max(int(labels.max()) + 1, max(known) + 1),), -1, dtype=torch.int64)
        relabel[torch.tensor(known)] = torch.arange(len(known))
        return images[mask], relabel[labels[mask]]

    def _ood(self, spec: DatasetSpec, root: Path, n: int) -> tuple[str, torch.Tensor]:
        partner = OOD_PARTNERS.get(spec.name)
        if partner is not None and not file_problems(get_spec(partner), root):
            images, _ = load_split(get_spec(partner), root, train=False)
            return partner, self._subset(images, torch.zeros(len(images)), n)[0]
        if partner is not None:
            self.ood_note = (
                f"the out-of-distribution set of {spec.name} is {partner}, which is not in {root}: its "
                f"detection metrics score uniform noise instead (`./suite data fetch {partner}` brings it)"
            )
        return NOISE, noise_images(n, spec)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``test`` or ``val``."""
        if name == "val" and self.val_labels is None:
            raise ValueError(
                "no validation split: make the data with val_fraction > 0 (--protocol fair)"
            )
        return (
            (self.test_images, self.test_labels)
            if name == "test"
            else (self.val_images, self.val_labels)
        )


def epoch_batches(
    num_samples: int, batch_size: int, device: torch.device, generator=None
) -> torch.Tensor:
    """``(steps, batch_size)`` indices of a device-side permutation; the last partial batch is dropped."""
    steps = num_samples // batch_size
    if steps == 0:
        raise ValueError(
            f"batch size {batch_size} is larger than the training set ({num_samples} samples)"
        )
    perm = torch.randperm(num_samples, device=device, generator=generator)
    return perm[: steps * batch_size].view(steps, batch_size)
