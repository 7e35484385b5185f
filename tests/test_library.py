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


def test_labels_behave_as_the_page_says_the_losses_check_shapes_not_values():
    """docs/library.md: a loss given an index past the last class raises torch's IndexError; a negative one
    counts from the end (the loss of label -1 is the loss of label 9). When the losses check label values,
    the page changes. The evaluation refuses both (next test)."""
    import torch

    from centersuite.losses import StandaloneCenterLoss

    torch.manual_seed(0)
    loss, embeddings = StandaloneCenterLoss(num_classes=10, feat_dim=2), torch.randn(4, 2)
    with pytest.raises(IndexError):
        loss(embeddings, torch.tensor([0, 1, 2, 10]))
    assert torch.equal(
        loss(embeddings, torch.tensor([0, 1, 2, -1])), loss(embeddings, torch.tensor([0, 1, 2, 9]))
    )


def bad_calls():
    """(function name, arguments, words the one-line refusal must hold) for the public evaluation."""
    import torch

    torch.manual_seed(0)
    e, y, c = torch.randn(6, 2), torch.tensor([0, 1, 2, 3, 4, 5]), torch.randn(10, 2)
    nan = torch.full((5,), float("nan"))
    return [
        ("nearest_center_accuracy", (e, y[:, None], c), ["labels", "1-D", "(6, 1)"]),
        ("nearest_center_accuracy", (e, y - 1, c), ["labels", "-1", "0..9", "ignore"]),
        ("nearest_center_accuracy", (e, y, torch.randn(10, 3)), ["embeddings", "2 columns", "3"]),
        ("class_mean_accuracy", (e, y, e, y.float(), 10), ["labels", "int64", "float32"]),
        ("argmax_accuracy", (torch.randn(6, 3), y), ["labels", "5", "0..2"]),
        ("knn1_accuracy", (e, y, e[:0], y[:0]), ["reference", "no sample"]),
        ("knn1_accuracy", (e, y[:5], e, y), ["query_labels", "6"]),
        ("map_at_r", (e, y.to(torch.uint8), 10), ["labels", "uint8"]),
        ("map_at_r", (e[0], y, 10), ["features", "2-D"]),
        ("detection_metrics", (nan, torch.zeros(3)), ["scores_in", "5", "not finite"]),
        ("detection_metrics", (torch.zeros(5), nan), ["scores_out", "not finite"]),
        ("detection_metrics", (torch.zeros(5), torch.zeros(0)), ["scores_out", "non-empty"]),
        ("center_score", (e, torch.randn(10, 3)), ["embeddings", "columns"]),
        ("center_shift", (c, c[:5]), ["before", "(10, 2)"]),
    ]


@pytest.mark.parametrize("case", range(14))
def test_the_evaluation_refuses_what_would_give_a_wrong_number_in_one_line(case):
    """Before: labels (n, 1) gave a 1-NN accuracy of 32.8, all-NaN in-distribution scores an AUROC of 1.0,
    a -1 label a class counted from the end, all silently."""
    import centersuite.eval as evaluation

    calls = bad_calls()
    assert len(calls) == 14
    name, args, words = calls[case]
    with pytest.raises(ValueError) as refused:
        getattr(evaluation, name)(*args)
    message = str(refused.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_the_checked_evaluation_gives_the_modules_numbers_by_position_or_by_name():
    import torch

    import centersuite.eval as evaluation
    from centersuite.eval import embedding, metrics, ood

    torch.manual_seed(0)
    e, y, c = torch.randn(50, 3), torch.randint(0, 4, (50,)), torch.randn(4, 3)
    assert evaluation.nearest_center_accuracy(embeddings=e, labels=y, centers=c) == (
        metrics.nearest_center_accuracy(e, y, c)
    )
    assert evaluation.map_at_r(e, y, 4, chunk=7) == embedding.map_at_r(e, y, 4)
    assert evaluation.knn1_accuracy(e[:20], y[:20], e[20:], y[20:]) == (
        embedding.knn1_accuracy(e[:20], y[:20], e[20:], y[20:])
    )
    scores = ood.center_score(e, c)
    assert evaluation.detection_metrics(scores[:30], scores[30:]) == (
        ood.detection_metrics(scores[:30], scores[30:])
    )
    assert "MAP@R" in evaluation.map_at_r.__doc__ and "ValueError" in evaluation.map_at_r.__doc__


def test_the_engine_computes_through_the_modules_its_fingerprint_covers():
    """The checked names (eval/public.py) are the library's; a run's numbers pass through the modules
    themselves, which the code fingerprint follows (it takes in a package's __init__ without following
    its imports): no engine module imports the evaluation's package or public module."""
    import ast

    for path in sorted((REPO / "experiments" / "engine").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in ("centersuite.eval", "centersuite.eval.public"), path.name
            if isinstance(node, ast.Import):
                assert all(a.name not in ("centersuite.eval",) for a in node.names), path.name
