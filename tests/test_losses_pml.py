"""The field's competitors: pytorch-metric-learning's losses behind the adapter (losses/pml.py), and the
center-loss push variants git and island (losses/push_variants.py), against the library and by hand."""

import math
import sys

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from centersuite.eval.metrics import evaluate_embeddings
from centersuite.losses import LOSSES, build_loss, has_class_parameters
from centersuite.losses.center_rules import build_center_rule
from centersuite.losses.pml import MetricLearningLoss, MissingLibrary
from experiments import grid, train
from experiments.ledger import fingerprint
from experiments.runners.backends import graph_safe
from tests.test_cli import TINY
from tests.test_speed import HostSyncs

# suite name: (library class, suite options, the same options as the library's arguments, miner and its arguments)
CASES = {
    "arcface": (
        "ArcFaceLoss",
        {"arc_margin": 10.0, "scale": 30.0},
        {"margin": 10.0, "scale": 30.0},
        None,
    ),
    "cosface": (
        "CosFaceLoss",
        {"cos_margin": 0.2, "scale": 30.0},
        {"margin": 0.2, "scale": 30.0},
        None,
    ),
    "sphereface": ("SphereFaceLoss", {"sphere_margin": 2.0}, {"margin": 2}, None),
    "normalized-softmax": (
        "NormalizedSoftmaxLoss",
        {"softmax_temperature": 0.1},
        {"temperature": 0.1},
        None,
    ),
    "proxy-nca": ("ProxyNCALoss", {"softmax_scale": 3.0}, {"softmax_scale": 3.0}, None),
    "proxy-anchor": (
        "ProxyAnchorLoss",
        {"proxy_margin": 0.2, "proxy_alpha": 16.0},
        {"margin": 0.2, "alpha": 16.0},
        None,
    ),
    "soft-triple": (
        "SoftTripleLoss",
        {"soft_la": 10.0, "soft_gamma": 0.2, "soft_margin": 0.02},
        {"la": 10.0, "gamma": 0.2, "margin": 0.02},
        None,
    ),
    "contrastive": ("ContrastiveLoss", {"neg_margin": 2.0}, {"neg_margin": 2.0}, None),
    "triplet": (
        "TripletMarginLoss",
        {"triplet_margin": 0.1, "miner_margin": 0.3},
        {"margin": 0.1},
        ("TripletMarginMiner", {"margin": 0.3}),
    ),
    "multi-similarity": (
        "MultiSimilarityLoss",
        {"ms_alpha": 1.0, "ms_beta": 40.0},
        {"alpha": 1.0, "beta": 40.0},
        None,
    ),
    "supcon": ("SupConLoss", {"supcon_temperature": 0.2}, {"temperature": 0.2}, None),
}
# the suite's defaults that are not the library's (docs/losses.md: measured to learn in 2-D)
OURS = {
    "arcface": {"scale": 16.0},
    "cosface": {"scale": 16.0},
    "sphereface": {"margin": 1},
    "proxy-anchor": {"alpha": 1.0},
}
ADAPTED = sorted(n for n, c in LOSSES.items() if issubclass(c, MetricLearningLoss))
C, D = 4, 8


def batch(seed=0, n=32, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    features = 3 * torch.eye(C, D)[labels] + spread * torch.randn(n, D, generator=g)
    return features, labels


def library_twin(name, options_as_library):
    """The library's own loss (and miner), built by hand with the library's argument names."""
    cls_name, _, _, miner = CASES[name]
    cls = getattr(pml_losses, cls_name)
    kind = LOSSES[name].kind
    loss = (
        cls(num_classes=C, embedding_size=D, **options_as_library)
        if kind != "pair"
        else cls(**options_as_library)
    )
    mine = (
        getattr(pml_miners, miner[0])(**miner[1])
        if miner and options_as_library
        else (getattr(pml_miners, miner[0])() if miner else None)
    )
    return loss, mine


def test_every_adapted_loss_is_tested_here():
    assert ADAPTED == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("given", ["defaults", "options"])
def test_the_adapter_returns_the_librarys_own_total(name, given):
    _, options, as_library, _ = CASES[name]
    options, as_library = (options, as_library) if given == "options" else ({}, OURS.get(name, {}))
    torch.manual_seed(1)
    ours = build_loss(name, C, D, **options)
    twin, mine = library_twin(name, as_library)
    if ours.learnable_centers is not None:  # the same proxies in both
        twin.load_state_dict(ours.metric_loss.state_dict())
    features, labels = batch()
    total, terms = ours.loss_terms(features, labels, None)
    expected = twin(features, labels, mine(features, labels) if mine else None)
    assert torch.equal(total, expected) and terms == {name: total}


@pytest.mark.parametrize("name", ADAPTED + ["git", "island"])
def test_one_step_lowers_the_loss(name):
    torch.manual_seed(0)
    x, labels = batch(spread=2.0)
    head = torch.nn.Linear(D, D)
    loss = build_loss(name, C, D)
    logits_head = torch.nn.Linear(D, C)
    params = [*head.parameters(), *logits_head.parameters(), *loss.parameters()]
    optimizer = torch.optim.SGD(params, lr=1e-3)

    def value():
        features = head(x)
        return loss.loss_terms(features, labels, logits_head(features))[0]

    before = value()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert value().item() < before.item()


@pytest.mark.parametrize("name", ADAPTED)
def test_each_adapted_loss_classifies_separable_points_by_its_rule(name):
    loss = build_loss(name, C, D)
    features, labels = batch(spread=0.1)
    directions = torch.eye(C, D)
    if loss.kind == "pair":
        for _ in range(50):  # the running means that the train accuracy reads
            loss.loss_terms(features, labels, None)
        assert loss.class_logits(features, None) is None and loss.centers is None
        rule = "class_mean"
    else:
        weights = loss.learnable_centers
        per_class = weights.shape[1 if loss.proxies[1] else 0] // C
        proxies = directions.repeat_interleave(per_class, 0)
        with torch.no_grad():
            weights.copy_(proxies.t() if loss.proxies[1] else proxies)
        rule = "argmax"
    assert torch.equal(loss.predict(features, None), labels)
    accuracy = evaluate_embeddings(loss, features, labels, features, None, labels)
    assert accuracy["headline"] == accuracy[rule] == 1.0


def test_the_adapted_proxies_are_the_centers_and_only_the_joint_rule_trains_them():
    arcface = build_loss("arcface", C, D)
    unit = torch.nn.functional.normalize(arcface.metric_loss.W.t(), dim=1)
    assert torch.allclose(arcface.centers, unit) and arcface.centers.shape == (C, D)
    assert arcface.learnable_centers is arcface.metric_loss.W
    assert (
        build_loss("soft-triple", C, D).centers is None
    )  # 10 sub-centers per class: no one center to draw
    build_center_rule("joint", arcface)
    for rule in ("separate", "wen"):
        with pytest.raises(ValueError, match=f"--center-rule {rule} does not fit"):
            build_center_rule(rule, arcface)


@pytest.mark.parametrize(
    "name", ["arcface", "cosface", "normalized-softmax", "proxy-nca", "proxy-anchor"]
)
def test_the_nearest_center_of_a_cosine_loss_is_its_nearest_proxy_by_cosine(name):
    # proxies (10, 0) and (0, 1): (3, 2.9) is nearest the first by cosine (3 > 2.9 after normalizing the proxies)
    # and the second by Euclidean distance to the raw proxies (12.6 < 57.4), which would read every angle wrong
    loss = build_loss(name, 2, 2)
    proxies = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        loss.learnable_centers.copy_(proxies.t() if loss.proxies[1] else proxies)
    features, labels = torch.tensor([[3.0, 2.9], [1.0, 2.0]]), torch.tensor([0, 1])
    assert torch.allclose(loss.centers, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    accuracy = evaluate_embeddings(loss, features, labels, features, None, labels)
    assert (
        accuracy["center"].item() == 1.0 and accuracy["argmax"].item() == 1.0
    )  # the library's logits agree


def test_a_pair_losss_running_mean_starts_at_its_first_batch():
    loss = build_loss("contrastive", 3, 2)
    first = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    loss(first, torch.tensor([0, 0, 1]))
    assert torch.equal(
        loss.running_means, torch.tensor([[2.0, 3.0], [10.0, 0.0], [0.0, 0.0]])
    )  # class 2 unseen
    loss(torch.tensor([[4.0, 5.0], [6.0, 8.0]]), torch.tensor([0, 2]))
    assert torch.allclose(
        loss.running_means,
        torch.tensor([[0.9 * 2 + 0.1 * 4, 0.9 * 3 + 0.1 * 5], [10.0, 0.0], [6.0, 8.0]]),
    )
    loss.eval()
    loss(torch.tensor([[100.0, 100.0]]), torch.tensor([1]))  # evaluation moves no mean
    assert loss.running_means[1].tolist() == [10.0, 0.0] and loss.seen.squeeze(1).tolist() == [
        True,
        True,
        True,
    ]


def test_graph_safety_is_declared_where_the_step_syncs_and_only_there():
    for name in ADAPTED + ["git", "island"]:
        loss = build_loss(name, C, D)
        features, labels = batch()
        features.requires_grad_(True)
        logits = torch.randn(len(labels), C, requires_grad=True)
        with HostSyncs() as syncs:
            total, _ = loss.loss_terms(features, labels, logits)
            total.backward()
            loss.predict(features.detach(), logits.detach())
        assert (syncs.seen == []) == graph_safe(name), (name, syncs.seen)
    assert (
        graph_safe("normalized-softmax") and not graph_safe("arcface") and graph_safe("standalone")
    )


def test_the_librarys_version_is_in_the_fingerprint_of_its_losses_only(monkeypatch):
    before = {
        n: fingerprint.code_fingerprint(n, "resnet") for n in ("arcface", "supcon", "xent", "git")
    }
    real = fingerprint.importlib.metadata.version
    monkeypatch.setattr(
        fingerprint.importlib.metadata,
        "version",
        lambda name: "99.0" if name == "pytorch-metric-learning" else real(name),
    )
    after = {n: fingerprint.code_fingerprint(n, "resnet") for n in before}
    assert after["arcface"] != before["arcface"] and after["supcon"] != before["supcon"]
    assert after["xent"] == before["xent"] and after["git"] == before["git"]


@pytest.mark.slow
def test_without_the_library_its_losses_are_refused_in_one_line_and_the_others_run(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setitem(
        sys.modules, "pytorch_metric_learning", None
    )  # import fails as if not installed
    with pytest.raises(MissingLibrary, match="pytorch-metric-learning"):
        build_loss("arcface", C, D)
    assert build_loss("standalone", C, D) is not None
    # what the runners and the report ask of a loss is still answered (it once raised from the sweep and the report)
    assert (
        has_class_parameters("arcface")
        and not has_class_parameters("supcon")
        and has_class_parameters("git")
    )
    assert grid.main(["--datasets", "synthetic", "--losses", "xent", "arcface", "--dry-run"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: arcface: this loss needs the package pytorch-metric-learning")
    assert train.main(TINY + ["--loss", "git", "--epochs", "1", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--scale", "0", "must be more than 0"),
        ("--supcon-temperature", "0", "must be more than 0"),
        ("--soft-gamma", "0", "must be more than 0"),
        ("--arc-margin", "180", "must be under 180"),
        ("--sphere-margin", "2.5", "must be a whole number from 1 to 4"),
        ("--sphere-margin", "5", "must be a whole number from 1 to 4"),
        ("--sphere-margin", "-1", "must be a whole number from 1 to 4"),
        ("--sphere-margin", "0", "must be a whole number from 1 to 4"),
    ],
)
def test_a_scale_or_temperature_of_0_and_a_half_turn_margin_are_refused(
    flag, value, message, capsys
):
    loss = {
        "--scale": "arcface",
        "--supcon-temperature": "supcon",
        "--soft-gamma": "soft-triple",
        "--arc-margin": "arcface",
        "--sphere-margin": "sphereface",
    }[flag]
    with pytest.raises(SystemExit):
        train.parse_args(["--loss", loss, flag, value])
    assert message in capsys.readouterr().err


def test_every_loss_has_its_own_line_color():
    from experiments.curves import LINE_COLORS
    from experiments.report.figures import loss_color

    assert len({LINE_COLORS[loss_color(name) % len(LINE_COLORS)] for name in LOSSES}) == len(LOSSES)


def test_git_loss_matches_a_hand_computation():
    loss = build_loss("git", 2, 2, lambda_c=0.5, lambda_g=2.0)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    features = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    labels = torch.tensor([0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    total, terms = loss.loss_terms(features, labels, logits)
    xent = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    center = (1.0 + 1.0) / 2  # ||(1,0)-(0,0)||^2 = 1, ||(3,3)-(3,4)||^2 = 1
    git = (1 / (1 + 20.0) + 1 / (1 + 18.0)) / 2  # ||(1,0)-(3,4)||^2 = 20, ||(3,3)-(0,0)||^2 = 18
    assert terms["center"].item() == pytest.approx(center) and terms["git"].item() == pytest.approx(
        git
    )
    assert total.item() == pytest.approx(xent + 0.5 * center + 2.0 * git)


def test_island_loss_matches_a_hand_computation():
    loss = build_loss("island", 3, 2, lambda_island=0.1, lambda_1=2.0)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    features = torch.tensor([[1.0, 1.0]])
    labels = torch.tensor([2])
    logits = torch.zeros(1, 3)
    total, terms = loss.loss_terms(features, labels, logits)
    # cosines: (0, 1) = 0, (0, 2) = -1, (1, 2) = 0; each ordered pair twice: 2 * ((0+1) + (-1+1) + (0+1)) = 4
    assert terms["island"].item() == pytest.approx(4.0)
    assert terms["center"].item() == pytest.approx(16.0 + 1.0)  # ||(1,1)-(-3,0)||^2
    assert total.item() == pytest.approx(math.log(3) + 0.1 * (17.0 + 2.0 * 4.0))


@pytest.mark.slow
def test_a_2d_arcface_run_draws_its_pictures_with_its_proxies(tmp_path):
    assert train.main(TINY + ["--loss", "arcface", "--epochs", "1", "--out", str(tmp_path)]) == 0
    [run] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # not .claims
    final = torch.load(run / "features" / "final.pt")
    assert final["centers"].shape == (10, 2) and torch.isfinite(final["centers"]).all()
    assert sorted(p.name for p in (run / "pictures").iterdir() if p.suffix in (".gif", ".png"))
