"""Parsers on tiny files in the real formats, verification, fetch, augmentation, batches."""
import os

import numpy as np
import pytest
import torch

from experiments import data as data_mod
from experiments.augment import Augment, random_crop, random_flip, random_rotation
from experiments.data import epoch_batches, from_debian_dir
from experiments.datasets import DataError, check_labels, file_problems, load_split
from tests.idx_files import write_tiny_cifar, write_tiny_mnist


def test_idx_files_parse_to_tensors(tmp_path):
    spec, arrays = write_tiny_mnist(tmp_path)
    images, labels = load_split(spec, tmp_path, train=True)
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.uint8
    assert np.array_equal(images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert labels.tolist() == list(np.arange(20) % 10)
    test_images, _ = load_split(spec, tmp_path, train=False)
    assert test_images.shape == (10, 1, 28, 28)


def test_truncated_file_names_the_file_and_the_fix(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path)
    path = tmp_path / spec.folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: \d+ bytes, expected \d+ .*fetch fashion-mnist"):
        load_split(spec, tmp_path, train=True)


def test_corrupt_and_missing_files(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path)
    path = tmp_path / spec.folder / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert "md5 mismatch" in file_problems(spec, tmp_path)[0]
    os.remove(path)
    assert file_problems(spec, tmp_path)[0].endswith("t10k-labels-idx1-ubyte: missing")


def test_label_counts_are_checked(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path)
    with pytest.raises(DataError, match="not balanced"):
        check_labels(spec, torch.tensor([0] * 11 + list(range(1, 10))), train=True)
    with pytest.raises(DataError, match="19 labels"):
        check_labels(spec, torch.arange(19) % 10, train=True)


def test_cifar_pickles_parse(tmp_path):
    spec = write_tiny_cifar(tmp_path)
    images, labels = load_split(spec, tmp_path, train=True)
    assert images.shape == (50, 3, 32, 32) and labels.shape == (50,)
    test_images, test_labels = load_split(spec, tmp_path, train=False)
    assert test_images.shape == (10, 3, 32, 32) and test_labels.tolist() == list(range(10))


def test_debian_gz_files_are_decompressed_into_the_data_root(tmp_path):
    gz = tmp_path / "debian"
    spec, arrays = write_tiny_mnist(tmp_path / "unused", gz_dir=gz)
    root = tmp_path / "root"
    assert from_debian_dir(spec, root, source_dir=gz)
    assert file_problems(spec, root) == []
    images, _ = load_split(spec, root, train=False)
    assert np.array_equal(images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])


def test_ensure_fails_with_the_fix_when_no_source_works(tmp_path, monkeypatch):
    monkeypatch.setitem(data_mod.SOURCES, "cifar-10", [])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz \(md5 c58f30108f718f92721af3b95e74349a\)"):
        data_mod.ensure("cifar-10", tmp_path)
    assert not data_mod.available("cifar-10", tmp_path)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar-10"])
def test_augmentation_keeps_shape_dtype_and_range(dataset):
    channels, size = (3, 32) if dataset == "cifar-10" else (1, 28)
    images = torch.randint(0, 256, (16, channels, size, size), dtype=torch.uint8)
    out = Augment(dataset)(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_augmentation_ops_do_what_they_say():
    x = torch.rand(64, 1, 8, 8)
    flipped = random_flip(x)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < mirrored.sum() < 54
    # 0 degrees is the identity; crops are shifted windows of the zero-padded image
    assert torch.allclose(random_rotation(x, degrees=0.0), x, atol=1e-5)
    ones = torch.ones(32, 1, 8, 8)
    crops = random_crop(ones, padding=2)
    assert crops.shape == ones.shape and crops.min() == 0 and (crops.sum((1, 2, 3)) >= 36).all()
    assert torch.equal(Augment("mnist", "none")(torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)), torch.ones(2, 1, 4, 4))


def test_epoch_batches_drop_the_last_partial_batch():
    batches = epoch_batches(10, 3, torch.device("cpu"))
    assert batches.shape == (3, 3) and len(set(batches.flatten().tolist())) == 9
    with pytest.raises(ValueError, match="larger than the training set"):
        epoch_batches(2, 3, torch.device("cpu"))
