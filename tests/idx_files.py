"""Write tiny dataset files in the real formats (IDX, CIFAR pickle)."""

import gzip
import hashlib
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np

from experiments.datasets.specs import SPECS


def idx_bytes(array: np.ndarray) -> bytes:
    type_code = {np.uint8: 0x08}[array.dtype.type]
    header = struct.pack(">HBB", 0, type_code, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    return header + array.tobytes()


def tiny_images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def write_tiny_mnist(
    root: Path, name="fashion-mnist", n_train=20, n_test=10, gz_dir: Path | None = None
):
    """Write IDX files (balanced labels) and return a spec that expects exactly them."""
    spec = SPECS[name]
    arrays = {
        "train-images-idx3-ubyte": tiny_images(n_train, (28, 28), 0),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": tiny_images(n_test, (28, 28), 1),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    files = {}
    for fname, array in arrays.items():
        data = idx_bytes(array)
        target = (gz_dir / f"{fname}.gz") if gz_dir else (Path(root) / spec.folder / fname)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(data) if gz_dir else data)
        files[fname] = (len(data), hashlib.md5(data).hexdigest())
    return replace(spec, files=files, train_size=n_train, test_size=n_test), arrays


def write_tiny_cifar(root: Path, per_batch=10):
    spec = SPECS["cifar-10"]
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    files, rng = {}, np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for fname in names:
        entry = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": list(range(per_batch)),
        }
        (folder / fname).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(spec.class_names)}))
    for fname in [*names, "batches.meta"]:
        files[fname] = (None, hashlib.md5((folder / fname).read_bytes()).hexdigest())
    return replace(spec, files=files, train_size=5 * per_batch, test_size=per_batch)
