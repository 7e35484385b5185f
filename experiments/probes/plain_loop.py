"""The baseline every bench table is measured against: the same model trained the plain PyTorch way.

A torchvision-style dataset (each image a PIL image through the usual
torchvision transforms: the reference study's augmentation), a
``torch.utils.data.DataLoader`` (shuffled, batch 128, last batch dropped),
the model in fp32, eager, contiguous, SGD at the reference lr and momentum,
cross-entropy on the logits. This is how the reference code trains; the
bench times it in the same process as the suite's step, alternately.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms.functional import to_pil_image

from centersuite.models import build_model

BILINEAR = transforms.InterpolationMode.BILINEAR
TRANSFORMS = {  # the reference augmentation, as torchvision transforms on PIL images
    "mnist": [transforms.RandomRotation(5, interpolation=BILINEAR)],
    "fashion-mnist": [
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(5, interpolation=BILINEAR),
    ],
    "cifar-10": [transforms.RandomHorizontalFlip(), transforms.RandomCrop(32, padding=4)],
}


class PILImages(Dataset):
    """uint8 ``(N, C, H, W)`` images served one by one as PIL images through ``transform``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.cpu(), labels.cpu(), transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(to_pil_image(self.images[i])), int(self.labels[i])


class PlainLoop:
    """``images_per_s(steps)``: train ``steps`` batches the plain way and time them (after one warm-up batch)."""

    def __init__(
        self,
        data,
        dataset: str,
        device: torch.device,
        batch_size: int = 128,
        feat_dim: int = 2,
        workers: int = 0,
    ):
        spec = data.spec
        self.device, self.batch_size = device, batch_size
        torch.manual_seed(0)
        self.model = build_model(
            "resnet", spec.in_channels, data.num_classes, feat_dim, spec.image_size
        ).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        transform = transforms.Compose([*TRANSFORMS.get(dataset, []), transforms.ToTensor()])
        self.loader = DataLoader(
            PILImages(data.train_images, data.train_labels, transform),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )
        self.batches = iter(())

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> float:
        images, labels = self.next_batch()
        images, labels = (
            images.to(self.device, non_blocking=True),
            labels.to(self.device, non_blocking=True),
        )
        _, logits = self.model(images)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()  # the per-batch host sync of a plain loop (logging the loss)

    def images_per_s(self, steps: int) -> float:
        self.model.train()
        self.step()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return self.batch_size * steps / (time.perf_counter() - t0)
