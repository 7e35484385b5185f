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


def fashion_mnist_root() -> Path | None:
    """The data root with Fashion-MNIST, made from Debian's package if needed.
    In CI (CI=true) the package is installed by .ci/run, so a missing dataset fails."""
    from experiments.data import available
    root = Path(os.environ.get("CENTERLOSS_DATA", "data"))
    if available("fashion-mnist", root):
        return root
    if os.environ.get("CI"):
        pytest.fail("Fashion-MNIST is missing in CI: .ci/run must install dataset-fashion-mnist")
    return None
