import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def synthetic_data():
    from experiments.data import DeviceData
    from experiments.datasets import get_spec
    return DeviceData(get_spec("synthetic"), Path("data"), torch.device("cpu"), train_size=1024, test_size=500)


def dataset_root(name: str) -> Path | None:
    """The default data root once it holds the dataset (fetched there if need be), or None.
    In CI (CI=true) .ci/run installs Fashion-MNIST's package, so a missing Fashion-MNIST fails."""
    from experiments.data import available
    from experiments.datasets import default_data_root
    root = default_data_root()
    if available(name, root):
        return root
    if os.environ.get("CI") and name == "fashion-mnist":
        pytest.fail("Fashion-MNIST is missing in CI: .ci/run must install dataset-fashion-mnist")
    return None


def fashion_mnist_root() -> Path | None:
    return dataset_root("fashion-mnist")
