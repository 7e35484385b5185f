import os
import signal
from pathlib import Path

import pytest
import torch

# pytest-xdist runs the tests in WORKERS processes side by side (pytest.ini: -n 2); they share the cores, and so
# do the processes a test starts (OMP_NUM_THREADS), since threads that outnumber the cores slow every op down
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, os.cpu_count() or 1) // WORKERS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a GPU")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def threads_put_back():
    """A grid run in this process with --cpus-per-run sets torch's threads for the process (as a worker of its
    own would): put back after the test, so that the tests after it on this worker do not run with more
    threads than its share of the cores (threads that outnumber the cores slow every op down)."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def cpu_unless_marked_gpu(request, monkeypatch):
    """Every test not marked ``gpu`` trains on the CPU whatever the machine has: the device
    ``auto`` resolves to (here and in the processes a test starts) is pinned to ``cpu``."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("SUITE_DEVICE", "cpu")


@pytest.fixture(scope="session")
def synthetic_data():
    from experiments.datasets.specs import get_spec
    from experiments.engine.data import DeviceData

    return DeviceData(
        get_spec("synthetic"), Path("data"), torch.device("cpu"), train_size=1024, test_size=500
    )


def dataset_root(name: str) -> Path | None:
    """The default data root once it holds the dataset (fetched there if need be), or None.
    In CI (CI=true) .ci/run installs Fashion-MNIST's package, so a missing Fashion-MNIST fails."""
    from experiments.datasets.sources import available
    from experiments.datasets.specs import default_data_root

    root = default_data_root()
    if available(name, root):
        return root
    if os.environ.get("CI") and name == "fashion-mnist":
        pytest.fail("Fashion-MNIST is missing in CI: .ci/run must install dataset-fashion-mnist")
    return None


def fashion_mnist_root() -> Path | None:
    return dataset_root("fashion-mnist")


def sigint_default() -> None:
    """``preexec_fn`` of a child a test sends Ctrl-C: a shell that starts the tests in the background ignores
    SIGINT, and a Python started with SIGINT ignored never raises KeyboardInterrupt; the child gets it back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def says(message: str, *parts: str) -> None:
    """Assert that ``message`` names every one of ``parts`` (the value at fault, the flag or command that fixes
    it), in any wording around them: a message is tested for what it must tell, not for its sentence."""
    missing = [p for p in parts if p not in message]
    assert not missing, f"the message does not name {missing}: {message!r}"
