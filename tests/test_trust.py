"""Comparisons a reader can trust: one seed gives every loss the same start and the same batches; a run that
claims a single test evaluation makes exactly one; the BatchNorm statistics can match the weights evaluated."""

from pathlib import Path

import pytest
import torch

from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import epoch_batches, load_data
from experiments.engine.trainer import Trainer

SMALL = dict(
    dataset="synthetic", feat_dim=2, epochs=2, train_size=512, test_size=200, batch_size=64
)


def first_steps(loss: str, tmp_path: Path, steps: int = 2) -> dict:
    """The model's initial weights, the first batches' indices and their augmented images, for ``loss``."""
    cfg = RunConfig(loss=loss, **SMALL)
    data = load_data(cfg, tmp_path, torch.device("cpu"))
    trainer = Trainer(
        cfg, data, tmp_path / cfg.run_id, RunContext(device=torch.device("cpu"), progress=False)
    )
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    seen = []
    augment = trainer.augment
    trainer.augment = lambda images: seen.append(augment(images)) or seen[-1]
    batches = epoch_batches(
        len(data.train_labels), cfg.batch_size, trainer.device, trainer.generators.batches
    )
    for index in batches[:steps]:
        trainer.train_step(index)
    return {"weights": weights, "batches": batches[:steps], "images": seen}


def test_one_seed_gives_every_loss_the_same_start_batches_and_augmentations(tmp_path):
    runs = {loss: first_steps(loss, tmp_path) for loss in ("xent", "cent", "standalone")}
    xent = runs["xent"]
    for loss in ("cent", "standalone"):
        assert torch.equal(runs[loss]["batches"], xent["batches"]), loss
        assert all(torch.equal(a, b) for a, b in zip(runs[loss]["images"], xent["images"])), loss
        assert all(torch.equal(runs[loss]["weights"][k], v) for k, v in xent["weights"].items()), (
            loss
        )


def test_another_seed_gives_other_batches(tmp_path):
    cfg = RunConfig(loss="xent", seed=1, **SMALL)
    data = load_data(cfg, tmp_path, torch.device("cpu"))
    a = Trainer(
        cfg, data, tmp_path / "a", RunContext(device=torch.device("cpu"), progress=False)
    ).generators.batches
    b = Trainer(
        RunConfig(loss="xent", **SMALL),
        data,
        tmp_path / "b",
        RunContext(device=torch.device("cpu"), progress=False),
    )
    assert not torch.equal(
        epoch_batches(512, 64, torch.device("cpu"), a),
        epoch_batches(512, 64, torch.device("cpu"), b.generators.batches),
    )


@pytest.mark.gpu
def test_one_seed_gives_every_loss_the_same_batches_and_augmentations_on_cuda(tmp_path):
    device = torch.device("cuda")
    seen = {}
    for loss in ("xent", "cent", "standalone"):
        cfg = RunConfig(loss=loss, **SMALL)
        data = load_data(cfg, tmp_path, device)
        trainer = Trainer(
            cfg,
            data,
            tmp_path / cfg.run_id,
            RunContext(device=device, progress=False, use_graph=False),
        )
        batches = epoch_batches(
            len(data.train_labels), cfg.batch_size, device, trainer.generators.batches
        )
        seen[loss] = (
            batches[:2].cpu(),
            trainer.augment(data.train_images[batches[0]]).cpu(),
            [v.cpu() for v in trainer.model.state_dict().values()],
        )
    for loss in ("cent", "standalone"):
        assert torch.equal(seen[loss][0], seen["xent"][0]) and torch.equal(
            seen[loss][1], seen["xent"][1]
        )
        assert all(torch.equal(a, b) for a, b in zip(seen[loss][2], seen["xent"][2]))


@pytest.mark.parametrize(
    "protocol, test_evaluations", [("last", 1), ("fair", 1), ("reference", 2 + 3 + 1)]
)
@pytest.mark.slow
def test_a_run_that_claims_one_test_evaluation_makes_exactly_one(
    tmp_path, protocol, test_evaluations
):
    cfg = RunConfig(loss="cent", protocol=protocol, **SMALL)
    data = load_data(cfg, tmp_path, torch.device("cpu"))
    trainer = Trainer(
        cfg, data, tmp_path / cfg.run_id, RunContext(device=torch.device("cpu"), progress=False)
    )
    splits = []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda split, final=False: splits.append(split) or evaluate(split, final)
    result = trainer.fit()
    assert (
        splits.count("test") == test_evaluations
    )  # reference: every epoch, the early frames, the final one
    if protocol == "last":
        assert result["final_test_acc"] is not None and result.get("best_test_acc") is None
        assert "best_epoch" not in result and "test_acc" not in trainer.history[-1]


@pytest.mark.slow
def test_precise_bn_recomputes_the_statistics_on_fixed_training_images_without_changing_training(
    tmp_path,
):
    base = RunConfig(loss="xent", lr=0.1, **SMALL)
    data = load_data(base, tmp_path, torch.device("cpu"))
    plain = Trainer(
        base, data, tmp_path / "plain", RunContext(device=torch.device("cpu"), progress=False)
    )
    precise = Trainer(
        RunConfig.from_dict({**base.to_dict(), "precise_bn": 256}),
        data,
        tmp_path / "precise",
        RunContext(device=torch.device("cpu"), progress=False),
    )
    plain.fit(), precise.fit()
    assert [r["loss"] for r in plain.history] == [
        r["loss"] for r in precise.history
    ]  # the same training
    bn, bn_plain = (
        next(m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        for t in (precise, plain)
    )
    # by hand: the first BatchNorm's input (the stem's output) over the 256 fixed unaugmented images, one batch
    # at a time, its per-batch means averaged (a cumulative average: momentum None)
    images = data.train_images[precise.bn_index].float() / 255
    with torch.no_grad():
        means = [precise.model.stem(chunk).mean((0, 2, 3)) for chunk in images.split(64)]
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert not torch.allclose(
        bn_plain.running_mean, bn.running_mean, atol=1e-3
    )  # training's moving average
    assert bn.momentum == bn_plain.momentum == 0.1  # put back for training
