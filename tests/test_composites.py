"""The README's side-by-side pictures, redrawn from committed compact frames alone (no run directories)."""

import imageio.v3 as iio
import pytest
import torch

import experiments.plots as plots
from experiments import report
from experiments.engine.io import atomic_write_csv
from experiments.ledger.rows import EPOCH_COLUMNS, RUN_COLUMNS
from experiments.report import Outputs
from tests.test_report import ledger_row

EPOCHS = (0.125, 0.25, 0.5, 1, 2, 3)
LOSSES = ("xent", "cent", "standalone")


def frame(epoch: float, k: int, with_centers: bool) -> dict:
    """50 points of 10 classes that spread out as training goes on (scale grows with the epoch)."""
    labels = torch.arange(50) % 10
    angle = labels.float() * 0.628 + k
    radius = 1 + 3 * epoch
    features = (
        torch.stack([radius * angle.cos(), radius * angle.sin()], 1)
        + 0.01 * torch.arange(50)[:, None]
    )
    return {
        "epoch": epoch,
        "test_acc": 0.1 * epoch,
        "test_features": features.half(),
        "test_labels": labels.to(torch.uint8),
        # inside the points (a random center could widen an early frame's axes past a later one's)
        "centers": features[:10] / 2 if with_centers else None,
    }


def fixture_ledger(tmp_path, feat_dim: int):
    results = tmp_path / "results"
    rows = [
        ledger_row(
            loss,
            dataset="synthetic",
            feat_dim=feat_dim,
            epochs=3,
            train_size=256,
            test_size=100,
            final=0.5 + 0.1 * k,
        )
        for k, loss in enumerate(LOSSES)
    ]
    for r in rows:
        r.update(final_knn1_acc=0.9, final_map_at_r=0.4)
    atomic_write_csv(results / "runs.csv", rows, RUN_COLUMNS)
    atomic_write_csv(
        results / "epochs.csv",
        [
            {
                "run_id": r["run_id"],
                "group_id": r["group_id"],
                "epoch": e,
                "code_fingerprint": r["code_fingerprint"],
                "test_acc": 0.2 * e,
            }
            for r in rows
            for e in (1, 2, 3)
        ],
        EPOCH_COLUMNS,
    )
    (results / "frames").mkdir(parents=True)
    for k, r in enumerate(rows):
        if feat_dim == 2:
            data = {"frames": [frame(e, k, r["loss"] != "xent") for e in EPOCHS]}
        else:
            data = {
                "final": {
                    "test_features": torch.randn(60, feat_dim).half(),
                    "test_labels": (torch.arange(60) % 10).to(torch.uint8),
                    "test_acc": 0.5,
                }
            }
        torch.save(data, results / "frames" / f"{r['run_id']}.pt")
    return results, rows


def record_panels(monkeypatch) -> list:
    calls = []
    original = plots._panel

    def spy(ax, features, labels, class_names, centers, limits, title, **kwargs):
        calls.append(
            {
                "title": title,
                "limits": limits,
                "centers": centers is not None,
                "points": len(features),
                "axis_labels": kwargs.get("axis_labels"),
                "spread": None
                if not len(features)
                else (features[:, 0].min(), features[:, 0].max()),
            }
        )
        return original(ax, features, labels, class_names, centers, limits, title, **kwargs)

    monkeypatch.setattr(plots, "_panel", spy)
    return calls


@pytest.mark.slow
def test_the_composite_gif_is_redrawn_from_committed_frames_with_axes_fit_to_each_frame(
    tmp_path, monkeypatch
):
    results, rows = fixture_ledger(tmp_path, 2)
    calls = record_panels(monkeypatch)
    imgs = tmp_path / "imgs"
    report.build(Outputs(results, imgs, None), tmp_path / "no-runs")
    gif = imgs / "composite" / "synthetic-feat=2.gif"
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == len(EPOCHS) and gif.stat().st_size < 4 * 2**20
    assert (imgs / "composite" / "synthetic-feat=2.png").exists()
    assert (imgs / "composite" / "synthetic-feat=2-curves.png").exists()
    assert len(calls) == 3 * len(EPOCHS)  # three panels per frame
    for k, loss in enumerate(LOSSES):
        panel = calls[k::3]
        assert all(c["title"].startswith(f"{loss}: acc ") for c in panel)
        assert all(c["centers"] == (loss != "xent") for c in panel)
        # each frame's axes fit its own points: a frame that spreads wider gets wider axes
        widths = [c["limits"][1] - c["limits"][0] for c in panel]
        spreads = [c["spread"][1] - c["spread"][0] for c in panel]
        assert widths == sorted(widths) and spreads == sorted(spreads) and widths[0] < widths[-1]
    assert calls[-1]["title"] == "standalone: acc 0.300"  # the last frame names its accuracy


@pytest.mark.slow
def test_wide_features_get_one_still_of_the_three_losses(tmp_path, monkeypatch):
    results, rows = fixture_ledger(tmp_path, 128)
    calls = record_panels(monkeypatch)
    report.build(Outputs(results, tmp_path / "imgs", None), tmp_path / "no-runs")
    assert (tmp_path / "imgs" / "composite" / "synthetic-feat=128-pca.png").exists()
    assert [c["title"] for c in calls] == [
        f"{loss}: acc {0.5 + 0.1 * k:.3f}, 1-NN 0.900, MAP@R 0.400" for k, loss in enumerate(LOSSES)
    ]
    for c in calls:  # a PCA's axes say which components and how much of the variance they hold
        first, second = c["axis_labels"]
        assert (
            first.startswith("PC 1 (")
            and second.startswith("PC 2 (")
            and first.endswith("% of variance)")
        )


def test_at_most_forty_frames_chosen_evenly():
    assert plots.even_subset(10) == list(range(10))
    chosen = plots.even_subset(103)
    assert len(chosen) == 40 and chosen[0] == 0 and chosen[-1] == 102
    assert plots.training_point(0.125) == "1/8 of epoch 1" and plots.training_point(3) == "epoch 3"


def test_each_frames_axes_hold_its_own_centers(tmp_path, monkeypatch):
    calls = record_panels(monkeypatch)
    early, late = frame(1, 0, True), frame(2, 0, True)
    early["centers"] = torch.full(
        (10, 2), -500.0
    )  # far outside any frame's points, drawn at no frame's end
    late["centers"] = torch.full(
        (10, 2), 100.0
    )  # the last frame's centers: the axes widen to hold them
    plots.composite_gif(
        [{"name": "proxy", "frames": [early, late]}],
        [str(k) for k in range(10)],
        "t",
        tmp_path / "a.gif",
        tmp_path / "a.png",
    )
    early_limits, late_limits = calls[0]["limits"], calls[1]["limits"]
    assert (
        early_limits[0] < -500 and early_limits[2] < -500
    )  # the early frame's centers are inside its axes
    assert late_limits[1] > 100 and late_limits[3] > 100 and late_limits[0] > -500
    assert [c["title"] for c in calls] == ["proxy: acc 0.100", "proxy: acc 0.200"]


def test_every_frame_of_a_gif_shows_each_class_in_its_own_exact_color():
    """One palette for all frames, holding the class colors exactly: with a palette per frame two classes
    shared one color in a frame, and a class changed color from frame to frame."""
    import io

    import numpy as np
    from PIL import Image

    exact = plots._exact_colors()[:20]  # the class colors, as markers and as points
    rng = np.random.default_rng(0)
    images = []
    for k in range(
        3
    ):  # a busy background of many colors, the classes as small squares (fewer in frame 0)
        a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        for c, color in enumerate(exact):
            a[2 + 3 * c : 4 + 3 * c, 2 : 4 + 4 * k] = color
        images.append(a)
    gif = Image.open(io.BytesIO(plots.gif_bytes(images, 100)))
    assert gif.n_frames == 3
    for k in range(3):
        gif.seek(k)
        shown = np.asarray(gif.convert("RGB"))
        for c, color in enumerate(exact):
            assert tuple(shown[2 + 3 * c, 2]) == color, (k, c, tuple(shown[2 + 3 * c, 2]), color)
