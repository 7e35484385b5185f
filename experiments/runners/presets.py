"""The grid's presets: named grids (datasets, feat_dims, losses, seeds, known classes), the ledger they go to,
and their departures from the recipe (experiments/engine/config.py: fields of ``RunConfig`` only). The report
recognises a preset's runs by them. Torch-free."""

from __future__ import annotations

from pathlib import Path

from centersuite.losses import LOSSES
from experiments.engine.config import DEFAULTS, RunConfig

MAIN_LOSSES = ["xent", "cent", "standalone"]  # the reference study's three losses
FAMILY_LOSSES = list(
    LOSSES
)  # the center-loss family and the field's competitors: every registered loss

PRESETS = {
    "paper": dict(
        about="the reference grid (3 datasets, 100 epochs, full splits), into results/",
        datasets=["mnist", "fashion-mnist", "cifar-10"],
        feat_dims=[2, 128],
        losses=MAIN_LOSSES,
        seeds=[0],
        known_classes=[""],
        results=Path("results"),
        recipe={},
    ),
    "quick": dict(
        about="2 datasets x {2, 128} x 3 losses, 3 epochs on 2048/1000 images, into results/quick/ (a "
        "first run on a CPU)",
        datasets=["mnist", "fashion-mnist"],
        feat_dims=[2, 128],
        losses=MAIN_LOSSES,
        seeds=[0],
        known_classes=[""],
        results=Path("results/quick"),
        recipe=dict(epochs=3, train_size=2048, test_size=1000),
    ),
    "demo": dict(
        about="the three losses at feat_dim 2 on MNIST and Fashion-MNIST, 5 epochs on 16,000/2,000 images, "
        "into results/ (about 35 minutes on 2 CPU cores)",
        datasets=["mnist", "fashion-mnist"],
        feat_dims=[2],
        losses=MAIN_LOSSES,
        seeds=[0],
        known_classes=[""],
        results=Path("results"),
        recipe=dict(epochs=5, train_size=16000, test_size=2000, eval_train_size=0),
    ),
    "cpu-study": dict(
        about="the study two CPU cores can finish: the three losses on MNIST and Fashion-MNIST at feat_dim 2 and "
        "128, seeds 0-2, 10 epochs on 20,000 training images (the lr cut by 5 after 2 epochs without a 10%% "
        "gain), the whole test splits, into results/ (the README's main results; about 4 hours on 2 idle "
        "cores, one thread a run, longer on a busy machine)",
        datasets=["mnist", "fashion-mnist"],
        feat_dims=[2, 128],
        losses=MAIN_LOSSES,
        seeds=[0, 1, 2],
        known_classes=[""],
        results=Path("results"),
        recipe=dict(epochs=10, train_size=20000, lr_patience=2, eval_train_size=2000),
    ),
    "family": dict(
        about="every loss of the family and the field's competitors on Fashion-MNIST at feat_dim 2 and 128, seeds "
        "0-2, 4 epochs on 6,144 training images at a constant lr, the last epoch tested once on the whole "
        "test split, into results/ (the README's family table; about 3 hours on 2 cores, one thread a run)",
        datasets=["fashion-mnist"],
        feat_dims=[2, 128],
        losses=FAMILY_LOSSES,
        seeds=[0, 1, 2],
        known_classes=[""],
        results=Path("results"),
        recipe=dict(epochs=4, train_size=6144, protocol="last", eval_train_size=2000),
    ),
    "openset": dict(
        about="the three losses on MNIST and CIFAR-10 with 6 known classes in 3 splits (the open-set "
        "recognition protocol), into results/",
        datasets=["mnist", "cifar-10"],
        feat_dims=[128],
        losses=MAIN_LOSSES,
        seeds=[0],
        known_classes=["0-5", "4-9", "0,2,4,6,8-9"],
        results=Path("results"),
        recipe={},
    ),
}
AXES = ("datasets", "feat_dims", "losses", "seeds", "known_classes", "results")
# what a preset sets when the flags do not: its axes and the recipe fields any preset departs in
PRESET_KEYS = AXES + tuple(dict.fromkeys(k for p in PRESETS.values() for k in p["recipe"]))


def preset_value(name: str, key: str):
    """The preset's value of an axis or recipe field (the recipe's default where it does not depart)."""
    preset = PRESETS[name]
    return preset[key] if key in AXES else preset["recipe"].get(key, DEFAULTS[key])


def preset_recipe(name: str, **overrides) -> dict:
    """Every recipe field's value in the preset (its departures over the defaults), with ``overrides`` that are
    not None on top."""
    return {
        **DEFAULTS,
        **PRESETS[name]["recipe"],
        **{k: v for k, v in overrides.items() if v is not None},
    }


def is_preset_run(cfg, name: str) -> bool:
    """Whether the run config ``cfg`` is one of the preset's runs with the reference recipe's other fields and
    the loss's default options."""
    preset = PRESETS[name]
    expected = RunConfig(
        dataset=cfg.dataset, loss=cfg.loss, feat_dim=cfg.feat_dim, seed=cfg.seed, **preset["recipe"]
    )
    return (
        cfg == expected
        and cfg.dataset in preset["datasets"]
        and cfg.loss in preset["losses"]
        and cfg.feat_dim in preset["feat_dims"]
    )
