"""The README's family table (issue 38) on a fixture ledger of the ``family`` preset, and the OOD table's two
FPR95 conventions and its noise mark: values by hand."""

import math

import imageio.v3 as iio
import torch

from experiments.engine.data import NOISE
from experiments.engine.io import atomic_write_csv
from experiments.ledger.rows import RUN_COLUMNS
from experiments.report import family, read_ledger, tables
from experiments.runners.presets import PRESETS
from tests.conftest import says
from tests.test_composites import frame, record_panels
from tests.test_report import T975_DF2, ledger, ledger_row, three_seeds

T975_DF1 = 12.706205  # scipy.stats.t.ppf(0.975, 1), from a printed table
FLAG_TEXT = "collapsed at epoch 3 (the two nearest class centers 0.01 of the feature norm apart)"


def family_row(loss, seed=0, final=0.5, feat_dim=2, status="finished", **extra):
    row = ledger_row(
        loss,
        seed=seed,
        final=final,
        dataset="fashion-mnist",
        feat_dim=feat_dim,
        status=status,
        **PRESETS["family"]["recipe"],
    )
    row.update(
        final_test_acc="" if status != "finished" else final,
        final_test_acc_center="" if status != "finished" else final - 0.01,
        final_test_acc_class_mean="" if status != "finished" else final - 0.02,
        test_images=10000,
        **extra,
    )
    return row


def fixture(tmp_path):
    rows = [
        *(family_row("xent", s, f) for s, f in enumerate((0.60, 0.62, 0.64))),
        family_row("cent", 0, 0.70),
        family_row("cent", 1, 0.71),
        family_row("cent", 2, 0.75, health=FLAG_TEXT),
        family_row("standalone", 0, 0.50),
        family_row("standalone", 1, 0.55),
        family_row("standalone", 2, status="diverged"),
        family_row("standalone-log", 0, 0.90, code_fingerprint="recorded-by-other-code"),
        family_row("arcface", 0, 0.95, code_version="abc123-dirty"),
        family_row("xent", 0, 0.80, feat_dim=128),
        family_row("cent", 0, 0.83, feat_dim=128),
        # not the preset (another dataset): never in the family table
        ledger_row("xent", dataset="mnist", final=0.99),
    ]
    df = ledger(tmp_path, rows)
    store = tmp_path / "results" / "frames"
    store.mkdir(parents=True)
    by_loss = {
        r["loss"]: r
        for r in rows
        if r["dataset"] == "fashion-mnist" and r["feat_dim"] == 2 and r["seed"] == 0
    }
    for k, loss in enumerate(("xent", "cent")):  # standalone's frames are not in the store
        torch.save(
            {"frames": [frame(e, k, loss != "xent") for e in (1, 2, 3, 4)]},
            store / f"{by_loss[loss]['run_id']}.pt",
        )
    return df, rows, store


def table_lines(text: str, feat_dim: int) -> list[str]:
    block = text.split(f"**fashion-mnist, feat_dim {feat_dim}**", 1)[1]
    return [line for line in block.split("\n\n", 2)[1].splitlines() if line.startswith("| ")][2:]


def test_the_family_table_best_first_with_intervals_pairs_flags_and_what_is_left_out(
    tmp_path, monkeypatch
):
    df, rows, store = fixture(tmp_path)
    calls = record_panels(monkeypatch)
    imgs = tmp_path / "imgs"
    text = family.family_markdown(df, store, imgs, tmp_path)

    two = table_lines(text, 2)
    # standalone-log's one run was recorded by older code: it stays, first, and the section says so
    assert [line.split(" | ")[1] for line in two] == [
        "standalone-log",
        "cent ⚑1",
        "xent",
        "standalone",
    ]
    assert text.startswith(
        "**Recorded by older code.** 1 of the runs of this table was recorded by commit abc123"
    )
    two = two[1:]

    # cent: 0.70, 0.71, 0.75 -> mean 0.72, sd sqrt(0.0007)
    half = T975_DF2 * math.sqrt(0.0007) / math.sqrt(3)
    # its pairs with xent: differences 0.10, 0.09, 0.11 -> +10.00 points, sd 0.01
    diff_half = 100 * T975_DF2 * 0.01 / math.sqrt(3)
    assert two[0] == (
        f"| 2 | cent ⚑1 | argmax of its logits | 0.7200 ± {half:.4f} | 3 | "
        f"{0.71:.4f} ± {half:.4f} | {0.70:.4f} ± {half:.4f} | +10.00 ± {diff_half:.2f} | 3 |"
    )
    assert two[1].startswith("| 3 | xent | argmax of its logits | 0.6200 ± ")
    assert "| (the baseline) | — |" in two[1]
    # standalone: seeds 0 and 1 finished, seed 2 diverged; pairs 0.50-0.60, 0.55-0.62 -> -8.50 points
    s_half = T975_DF1 * math.sqrt(0.00125) / math.sqrt(2)
    d_half = 100 * T975_DF1 * math.sqrt(0.00045) / math.sqrt(2)
    assert two[2] == (
        f"| 4 | standalone | nearest learned center | 0.5250 ± {s_half:.4f} | 2/3, 1 diverged | "
        f"{0.515:.4f} ± {s_half:.4f} | {0.505:.4f} ± {s_half:.4f} | -8.50 ± {d_half:.2f} | "
        "2 (1 removed: 1 diverged) |"
    )

    # feat_dim 128 pairs with its own xent only: one pair, no interval; one seed of three named
    one = table_lines(text, 128)
    assert [line.split(" | ")[1] for line in one] == ["cent", "xent"]
    assert one[0] == (
        "| 1 | cent | argmax of its logits | 0.8300 | 1 (seed 0) | 0.8200 | 0.8100 | +3.00 | 1 |"
    )

    # what has no run yet, per feat_dim, with the command
    says(text, "18 of 22 losses", "feat_dim 2 (standalone-margin, centers-only,")
    says(text, "20 of 22 losses", "feat_dim 128")
    assert "`./suite grid --preset family` trains them" in text

    # the flag: counted, and said below the table with its run
    assert "Flagged: 1 of 12 runs:" in text
    run_id = next(r["run_id"] for r in rows if r["loss"] == "cent" and r["seed"] == 2)
    says(
        text, "⚑1 cent", "seed 2", f"`{run_id}`", "collapsed at epoch 3", "0.01 of the feature norm"
    )

    # the -dirty row: out of the table, and said in one sentence
    assert "| arcface |" not in text
    says(text, "1 of the preset's 13 recorded runs", "left out", "`-dirty`")

    # the split: tested once, nothing chosen on it
    says(text, "chosen on the test split", "tested once", "10,000 images")

    # the small multiples: seed 0's 2-D runs in the table's order, standalone's frames missing
    png = imgs / "family" / "fashion-mnist-feat=2-last.png"
    assert png.exists() and iio.imread(png).shape[0] > 0
    assert [c["title"] for c in calls] == ["cent: acc 0.400", "xent: acc 0.400"]
    assert all(c["points"] == 50 for c in calls)
    assert "![](imgs/family/fashion-mnist-feat=2-last.png)" in text
    standalone = next(r["run_id"] for r in rows if r["loss"] == "standalone" and r["seed"] == 0)
    log = next(r["run_id"] for r in rows if r["loss"] == "standalone-log")
    says(
        text,
        "2 of 4 panels are missing",
        f"standalone-log (`{log}`)",
        f"standalone (`{standalone}`)",
    )


def test_no_family_run_means_no_section(tmp_path):
    df = ledger(tmp_path, [ledger_row("xent", dataset="fashion-mnist")])
    assert family.family_markdown(df, tmp_path / "frames", tmp_path / "imgs", tmp_path) == ""


def test_a_partial_preset_with_every_run_left_out_says_so(tmp_path):
    df = ledger(tmp_path, [family_row("xent", code_version="abc123-dirty")])
    text = family.family_markdown(df, tmp_path / "frames", tmp_path / "imgs", tmp_path)
    says(text, "No run of the preset enters the table", "feat_dim 2**: no run")
    says(text, "1 of the preset's 1 recorded run", "left out")


def test_the_pictures_panels_follow_the_tables_order_not_seed_0s(tmp_path):
    """The small multiples were ordered by seed 0's accuracy alone while the caption says the table's order
    (the mean over seeds): cent is first on seed 0 here, xent first by the mean."""
    rows = [
        *(family_row("xent", s, 0.6) for s in range(3)),
        *(family_row("cent", s, f) for s, f in enumerate((0.9, 0.2, 0.2))),
    ]
    df = ledger(tmp_path, rows)
    pictured = family.picture_rows(df, "fashion-mnist")
    assert [r["loss"] for r in pictured] == ["xent", "cent"]
    assert {r["seed"] for r in pictured} == {0}


def test_keep_family_frames_stores_the_seed_0_2d_runs_whose_directories_are_there(tmp_path):
    df, rows, _ = fixture(tmp_path)
    runs, store = tmp_path / "runs", tmp_path / "store"
    wanted = {
        r["run_id"] for r in rows if r["loss"] in ("xent", "cent", "standalone", "standalone-log")
    }
    for row in rows:
        features = runs / row["run_id"] / "features"
        features.mkdir(parents=True)
        for e in (1, 2):
            f = frame(e, 0, True)
            torch.save(
                {**f, "train_features": f["test_features"], "train_labels": f["test_labels"]},
                features / f"epoch_{e:03d}.pt",
            )
    kept = family.keep_family_frames(df, runs, store)
    chosen = {
        r["run_id"]
        for r in rows
        if r["run_id"] in wanted
        and r["dataset"] == "fashion-mnist"
        and r["feat_dim"] == 2
        and r["seed"] == 0
    }
    assert (
        kept == 4 and {p.stem for p in store.glob("*.pt")} == chosen
    )  # the -dirty arcface run: not


def test_the_ood_table_gives_both_fpr95_conventions_and_marks_noise(tmp_path):
    assert NOISE == "noise"
    xent = three_seeds("xent", (0.99,) * 3, (0.98,) * 3)
    for r, fpr, fpr_ood in zip(xent, (0.5, 0.6, 0.7), (0.2, 0.3, 0.4)):
        r.update(
            ood_dataset="fashion-mnist",
            final_ood_center_auroc=0.9,
            final_ood_center_fpr95=fpr,
            final_ood_center_fpr95_ood=fpr_ood,
        )
    # standalone classifies by the nearest center: its center AUROC is marked *
    standalone = three_seeds("standalone", (0.99,) * 3, (0.98,) * 3)
    for r, ood in zip(standalone, ("noise", "noise", "fashion-mnist")):
        r.update(
            ood_dataset=ood,
            final_ood_center_auroc=0.99,
            final_ood_center_fpr95=0.1,
            final_ood_center_fpr95_ood=0.05,
        )
    atomic_write_csv(tmp_path / "runs.csv", xent + standalone, RUN_COLUMNS)
    text = tables.ood_table(read_ledger(tmp_path / "runs.csv"))
    assert "center FPR95 (ID+) | center FPR95 (OOD+)" in text
    assert "ODIN's" in text and "OpenOOD's" in text
    half = T975_DF2 * 0.1 / math.sqrt(3)  # 0.2, 0.3, 0.4 and 0.5, 0.6, 0.7: sd 0.1
    line = next(x for x in text.splitlines() if x.startswith("| xent |"))
    assert f"| fashion-mnist | 0.900 ± 0.000 | 0.600 ± {half:.3f} | 0.300 ± {half:.3f} |" in line
    assert "†" not in line
    line = next(x for x in text.splitlines() if x.startswith("| standalone |"))
    assert (
        "| fashion-mnist, noise † (2 of 3) | 0.990 ± 0.000* | 0.100 ± 0.000 | 0.050 ± 0.000 |"
        in line
    )
    assert "† Scored against uniform noise, not a real dataset (1 of 2 groups" in text
