"""Parsers on tiny files in the real formats, verification, fetch, augmentation, batches."""

import os

import numpy as np
import pytest
import torch

from experiments import data as data_command
from experiments.datasets import sources as data_mod
from experiments.datasets.sources import from_debian_dir
from experiments.datasets.specs import SPECS, DataError, check_labels, file_problems, load_split
from experiments.engine.augment import Augment, random_crop, random_flip, random_rotation
from experiments.engine.data import epoch_batches, first_line
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
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: \d+ bytes, expected \d+ .*fetch fashion-mnist"
    ):
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
    with pytest.raises(
        DataError, match=r"cifar-10-python.tar.gz \(md5 c58f30108f718f92721af3b95e74349a\)"
    ):
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
    assert torch.equal(
        Augment("mnist", "none")(torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)),
        torch.ones(2, 1, 4, 4),
    )


def test_epoch_batches_drop_the_last_partial_batch():
    batches = epoch_batches(10, 3, torch.device("cpu"))
    assert batches.shape == (3, 3) and len(set(batches.flatten().tolist())) == 9
    with pytest.raises(ValueError, match="larger than the training set"):
        epoch_batches(2, 3, torch.device("cpu"))


def tiny_fashion_root(tmp_path, monkeypatch):
    """A data root holding tiny Fashion-MNIST files, and the spec that expects exactly them."""
    spec, _ = write_tiny_mnist(tmp_path / "root")
    monkeypatch.setitem(SPECS, "fashion-mnist", spec)
    good = {name: (tmp_path / "root" / spec.folder / name).read_bytes() for name in spec.files}
    return tmp_path / "root", spec, good


def test_a_bad_file_in_a_data_root_is_named_and_never_replaced_unless_asked(tmp_path, monkeypatch):
    root, spec, good = tiny_fashion_root(tmp_path, monkeypatch)
    labels = root / spec.folder / "train-labels-idx1-ubyte"
    labels.write_bytes(
        np.random.default_rng(0).integers(0, 256, len(good[labels.name]), dtype=np.uint8).tobytes()
    )
    fetched = []

    def restore(spec, root, seconds):
        fetched.append(root)
        for name, raw in good.items():
            (root / spec.folder / name).write_bytes(raw)
        return True

    monkeypatch.setitem(
        data_mod.SOURCES, "fashion-mnist", [data_mod.Source("a test copy", restore)]
    )
    bad = labels.read_bytes()
    for fetch in (False, True):
        with pytest.raises(
            DataError,
            match=r"train-labels-idx1-ubyte: md5 mismatch .*it is left as it is: delete "
            r"it, or replace it with `\./suite data fetch fashion-mnist "
            r"--repair --data-root ",
        ):
            data_mod.ensure("fashion-mnist", root, fetch=fetch)
    assert labels.read_bytes() == bad and fetched == []
    data_mod.ensure("fashion-mnist", root, repair=True, log=lambda *_: None)
    assert fetched == [root] and labels.read_bytes() == good[labels.name]


def test_training_never_fetches_into_a_data_root_the_user_named(tmp_path, monkeypatch):
    root, spec, _ = tiny_fashion_root(tmp_path, monkeypatch)
    (root / spec.folder / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setitem(
        data_mod.SOURCES, "fashion-mnist", [data_mod.Source("must not run", lambda *a: 1 / 0)]
    )
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte: missing; files are fetched implicitly only into "
        r"the default data root .*fetch fashion-mnist --data-root",
    ):
        data_mod.prepare("fashion-mnist", root)
    assert not (root / spec.folder / "t10k-labels-idx1-ubyte").exists()


@pytest.mark.parametrize("command", ["train", "fetch"])
def test_train_and_fetch_give_the_one_line_that_check_gives(tmp_path, monkeypatch, capsys, command):
    from experiments import train

    root, spec, good = tiny_fashion_root(tmp_path, monkeypatch)
    labels = root / spec.folder / "train-labels-idx1-ubyte"
    labels.write_bytes(bytes(len(good[labels.name])))
    if command == "train":
        code = train.main(
            [
                "--dataset",
                "fashion-mnist",
                "--data-root",
                str(root),
                "--out",
                str(tmp_path / "runs"),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
    else:
        code = data_command.main(["fetch", "fashion-mnist", "--data-root", str(root)])
    err = capsys.readouterr().err
    assert code in (1, 2) and len(err.strip().splitlines()) == 1, err
    assert (
        err.startswith("error: fashion-mnist: ") and "train-labels-idx1-ubyte: md5 mismatch" in err
    )
    assert labels.read_bytes() == bytes(len(good[labels.name]))


def test_an_error_without_a_message_still_gives_a_line():
    assert first_line(AssertionError()) == "AssertionError"
    assert first_line(OSError("no route\nmore")) == "no route"


def test_pack_then_fetch_from_carries_a_dataset_without_network(tmp_path, monkeypatch, capsys):
    root, spec, good = tiny_fashion_root(tmp_path, monkeypatch)
    monkeypatch.setitem(data_mod.SOURCES, "fashion-mnist", [])  # no other source may be used
    assert (
        data_command.main(
            ["pack", "fashion-mnist", "--data-root", str(root), "--to", str(tmp_path / "carry")]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "carry" / "fashion-mnist").iterdir()) == sorted(
        f"{n}.gz" for n in spec.files
    )
    there = tmp_path / "there"
    assert (
        data_command.main(
            ["fetch", "fashion-mnist", "--data-root", str(there), "--from", str(tmp_path / "carry")]
        )
        == 0
    )
    assert {n: (there / spec.folder / n).read_bytes() for n in spec.files} == good
    assert "fashion-mnist: ok" in capsys.readouterr().out


def test_a_corrupt_carried_gzip_is_named_and_leaves_nothing_partial(tmp_path):
    gz = tmp_path / "carry"
    spec, _ = write_tiny_mnist(tmp_path / "unused", gz_dir=gz)
    target = gz / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-12])  # cut short, as a copy that broke off
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte.gz: not a readable gzip file .*data pack"
    ):
        from_debian_dir(spec, tmp_path / "root", source_dir=gz)
    assert not [p for p in (tmp_path / "root").rglob("*") if p.is_file()]


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
def test_the_fix_a_check_prints_is_the_command_that_mends_that_folder(
    tmp_path, monkeypatch, capsys, fault
):
    import shlex

    root, spec, good = tiny_fashion_root(tmp_path, monkeypatch)
    labels = root / spec.folder / "train-labels-idx1-ubyte"
    labels.write_bytes(bytes(len(good[labels.name]))) if fault == "corrupt" else labels.unlink()

    def restore(spec, root, seconds):
        for name, raw in good.items():
            (root / spec.folder / name).write_bytes(raw)
        return True

    monkeypatch.setitem(
        data_mod.SOURCES, "fashion-mnist", [data_mod.Source("a test copy", restore)]
    )
    assert data_command.main(["check", "fashion-mnist", "--data-root", str(root)]) == 1
    fix = capsys.readouterr().err.split("to fix, run `")[1].split("`")[0]
    words = shlex.split(fix)
    assert words[:3] == ["./suite", "data", "fetch"] and ("--repair" in words) == (
        fault == "corrupt"
    )
    assert data_command.main(words[2:]) == 0  # the printed fix, as printed
    assert data_command.main(["check", "fashion-mnist", "--data-root", str(root)]) == 0


def test_a_missing_optional_dataset_is_reported_not_an_error_unless_named(
    tmp_path, monkeypatch, capsys
):
    root, _, _ = tiny_fashion_root(tmp_path, monkeypatch)
    monkeypatch.setitem(SPECS, "mnist", write_tiny_mnist(root, "mnist")[0])
    assert data_command.main(["check", "--data-root", str(root)]) == 0
    assert "cifar-10: not present (optional" in capsys.readouterr().out
    assert data_command.main(["check", "cifar-10", "--data-root", str(root)]) == 1
