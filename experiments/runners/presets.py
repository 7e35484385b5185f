"""The grid's presets: named sets of datasets, feat_dims, losses, seeds and sizes. The report
recognises the demo preset's runs (the README's pictures when no full-recipe runs exist)."""
from __future__ import annotations

from pathlib import Path

from experiments.engine.config import RunConfig

PRESETS = {
    "paper": dict(datasets=["mnist", "fashion-mnist", "cifar-10"], feat_dims=[2, 128],
                  losses=["xent", "cent", "standalone"], seeds=[0], epochs=100, train_size=None, test_size=None,
                  eval_train_size=10000, results=Path("results"), known_classes=[""]),
    "quick": dict(datasets=["mnist", "fashion-mnist"], feat_dims=[2, 128], losses=["xent", "cent", "standalone"],
                  seeds=[0], epochs=3, train_size=2048, test_size=1000, eval_train_size=10000,
                  results=Path("results/quick"),
                  known_classes=[""]),
    "demo": dict(datasets=["mnist", "fashion-mnist"], feat_dims=[2], losses=["xent", "cent", "standalone"],
                 seeds=[0], epochs=5, train_size=16000, test_size=2000, eval_train_size=0, results=Path("results"),
                 known_classes=[""]),
    "openset": dict(datasets=["mnist", "cifar-10"], feat_dims=[128], losses=["xent", "cent", "standalone"],
                    seeds=[0], epochs=100, train_size=None, test_size=None, eval_train_size=10000,
                    results=Path("results"), known_classes=["0-5", "4-9", "0,2,4,6,8-9"]),
}
PRESET_KEYS = ("datasets", "feat_dims", "losses", "seeds", "epochs", "train_size", "test_size", "eval_train_size",
               "results", "known_classes")


def is_preset_run(cfg, name: str) -> bool:
    """Whether the run config ``cfg`` is one of the preset's runs with the reference recipe's other fields and
    the loss's default options."""
    preset = PRESETS[name]
    expected = RunConfig(dataset=cfg.dataset, loss=cfg.loss, feat_dim=cfg.feat_dim, seed=cfg.seed,
                         epochs=preset["epochs"], train_size=preset["train_size"], test_size=preset["test_size"],
                         eval_train_size=preset["eval_train_size"])
    return (cfg == expected and cfg.dataset in preset["datasets"] and cfg.loss in preset["losses"]
            and cfg.feat_dim in preset["feat_dims"])
