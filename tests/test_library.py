"""The library as a researcher uses it: installed into a clean location from the checkout, imported as
centersuite from a project that holds its own losses.py and models/, the page's code run as it stands
(docs/library.md, extracted from the file), learning, and pulling in nothing of the suite."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import dataset_root

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "library.md"
SHIPPED = ("pyproject.toml", "centersuite", "losses", "models", "eval", "docs/library.md")


def page_blocks() -> list[str]:
    """The page's Python code blocks, in order, as they stand."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_loop_and_its_examples():
    blocks = page_blocks()
    assert len(blocks) == 4 and "for images, labels in loader:" in blocks[0]
    assert (
        sum(1 for line in blocks[0].splitlines() if line.strip()) <= 40
    )  # a loop of about 30 lines


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --no-deps --target`` of a copy of the checkout's library files (a build writes into its
    source folder); the torch already installed is the only dependency."""
    src, site = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("site")
    for name in SHIPPED:
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(REPO / name, target)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-800:]
    return site


@pytest.mark.slow
def test_the_package_installs_under_its_own_name_and_needs_torch_only(installed):
    assert sorted(
        p.name
        for p in (installed / "centersuite").iterdir()
        if p.is_dir() and p.name != "__pycache__"
    ) == ["eval", "losses", "models"]
    assert not (installed / "experiments").exists() and not (installed / "losses").exists()
    [meta] = installed.glob("centersuite-*.dist-info/METADATA")
    requires = [line for line in meta.read_text().splitlines() if line.startswith("Requires-Dist")]
    assert [r for r in requires if "extra" not in r] == ["Requires-Dist: torch>=2.1"]
    assert any("pytorch-metric-learning" in r and 'extra == "pml"' in r for r in requires)


@pytest.mark.slow
def test_the_pages_loop_learns_in_a_project_with_its_own_losses_and_models(installed, tmp_path):
    root = dataset_root("mnist")
    if root is None:
        pytest.skip("MNIST is not available here (./suite data fetch mnist)")
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "losses.py").write_text('MINE = "the project\'s own losses.py"\n')
    (project / "models" / "__init__.py").write_text('MINE = "the project\'s own models/"\n')
    (project / "page.py").write_text("\n".join(page_blocks()))
    check = (
        "import json, runpy, sys\n"
        "ns = runpy.run_path('page.py')\n"
        "import losses, models\n"
        "print(json.dumps({'accuracy': float(ns['accuracy']), 'own': [losses.MINE, models.MINE],\n"
        "                  'imported': sorted(m for m in ('experiments', 'optuna', 'pandas', 'matplotlib', 'ray')\n"
        "                                     if m in sys.modules or any(k.startswith(m + '.') for k in sys.modules)),\n"
        "                  'centersuite': sys.modules['centersuite'].__file__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), SUITE_DATA=str(root.resolve()), OMP_NUM_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["centersuite"].startswith(
        str(installed)
    )  # the installed package, not the checkout
    assert result["own"] == ["the project's own losses.py", "the project's own models/"]
    assert (
        result["imported"] == []
    )  # neither the suite's commands nor optuna, pandas, matplotlib, ray
    assert result["accuracy"] > 0.3  # ten classes: chance is 0.1
    assert "nearest-center accuracy after one short epoch" in done.stdout
    # the evaluation block scores the trained model's test embeddings against its training embeddings
    found = re.search(r"class mean: ([\d.]+) 1-NN: ([\d.]+) MAP@R: ([\d.]+)", done.stdout)
    assert found, done.stdout
    class_mean, knn1, map_r = map(float, found.groups())
    assert class_mean > 0.3 and knn1 > 0.3 and 0.1 < map_r <= 1, done.stdout


def test_labels_behave_as_the_page_says_they_are_not_checked():
    """docs/library.md: an index past the last class raises torch's IndexError; a negative one counts from
    the end (the loss of label -1 is the loss of label 9). When labels get checked, the page changes."""
    import torch

    from centersuite.eval import nearest_center_accuracy
    from centersuite.losses import StandaloneCenterLoss

    torch.manual_seed(0)
    loss, embeddings = StandaloneCenterLoss(num_classes=10, feat_dim=2), torch.randn(4, 2)
    with pytest.raises(IndexError):
        loss(embeddings, torch.tensor([0, 1, 2, 10]))
    assert torch.equal(
        loss(embeddings, torch.tensor([0, 1, 2, -1])), loss(embeddings, torch.tensor([0, 1, 2, 9]))
    )
    centers = loss.centers.detach()
    assert nearest_center_accuracy(embeddings, torch.tensor([-1] * 4), centers) == (
        nearest_center_accuracy(embeddings, torch.tensor([9] * 4), centers)
    )
