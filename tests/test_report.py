"""The report on a synthetic ledger: the paper-shaped table, departures, paired comparisons, the gap."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from experiments import report
from experiments.engine.config import REFERENCE_RECIPE, RunConfig
from experiments.engine.io import atomic_write_csv
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import CONFIG_COLUMNS, RUN_COLUMNS, group_id
from experiments.report import compare, figures, readme, tables
from tests.conftest import says

T975_DF2 = 4.302653  # scipy.stats.t.ppf(0.975, 2), from a printed table


def ledger_row(
    loss,
    seed=0,
    best=0.99,
    final=0.98,
    train=0.995,
    status="finished",
    dataset="mnist",
    feat_dim=2,
    **cfg,
):
    c = RunConfig(dataset=dataset, loss=loss, feat_dim=feat_dim, seed=seed, **cfg)
    row = {k: ("" if v is None else v) for k, v in c.to_dict().items() if k in CONFIG_COLUMNS}
    row.update(
        loss_options=json.dumps(c.loss_options, sort_keys=True),
        run_id=c.run_id,
        group_id=group_id(c.to_dict()),
        code_fingerprint=code_fingerprint(c.loss, c.model),
        recorded_at="2026-11-28T00:00:00",
        status=status,
        best_test_acc=best,
        final_test_acc=final,
        final_train_acc=train,
        device="NVIDIA H100",
        code_version="abc123",
        resolved_precision=c.precision,
        epochs_done=c.epochs,
        wall_s=100,
    )
    return row


def ledger(tmp_path, rows):
    atomic_write_csv(tmp_path / "runs.csv", rows, RUN_COLUMNS)
    return report.read_ledger(tmp_path / "runs.csv")


def three_seeds(loss, bests, finals, trains=(1.0, 1.0, 1.0), **cfg):
    return [
        ledger_row(loss, seed=s, best=b, final=f, train=t, **cfg)
        for s, (b, f, t) in enumerate(zip(bests, finals, trains))
    ]


def another_value(key: str):
    """A value of the recipe field ``key`` other than its reference value: another of its choices, or a
    number (the reference plus one, or 1 where it has none)."""
    from experiments.engine.config import RECIPE

    meta, reference = RECIPE[key], REFERENCE_RECIPE[key]
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != reference)
    return 1 if reference is None else type(reference)(reference + 1)


def test_the_defaults_are_the_reference_recipe_and_any_departure_is_named():
    assert {k: getattr(RunConfig(), k) for k in REFERENCE_RECIPE} == REFERENCE_RECIPE
    assert RunConfig(loss="cent").departures() == []
    changed = {
        "model": "lenet++",
        "epochs": 99,
        "batch_size": 64,
        "lr": 0.02,
        "momentum": 0.0,
        "weight_decay": 5e-4,
        "lr_factor": 0.5,
        "lr_patience": 5,
        "lr_threshold": 0.01,
        "augment": "none",
        "train_size": 1000,
        "test_size": 1000,
        "precision": "bf16",
        "center_rule": "separate",
        "protocol": "fair",
        "known_classes": "0-5",
        "precise_bn": 2000,
    }
    # a field added later (a new recipe option: one line in engine/config.py) departs by a value made from
    # its definition, so that adding one needs no edit here (docs/architecture.md)
    for key in set(REFERENCE_RECIPE) - set(changed):
        changed[key] = another_value(key)
    for key, value in changed.items():
        assert RunConfig(loss="cent", **{key: value}).departures() == [f"{key}={value}"]
    assert RunConfig(loss="cent", loss_options={"weight_cent": 0.5}).departures() == [
        "weight_cent=0.5"
    ]


def test_paper_table_cells_by_hand(tmp_path):
    rows = (
        three_seeds("xent", [0.990, 0.992, 0.994], [0.989, 0.991, 0.993])
        + [
            ledger_row("xent", seed=3, best="", final="", status="diverged")
        ]  # enters no mean, and is counted
        + [ledger_row("standalone", best=0.995, final=0.994)]
    )
    table = tables.paper_table(ledger(tmp_path, rows))
    half = T975_DF2 * 0.002 / 3**0.5
    assert (
        f"| mnist | 2 | 0.9920 ± {half:.4f} / 0.9910 ± {half:.4f} (0.991), runs 3/4, 1 diverged | — (0.990) | "
        "0.9950 / 0.9940 (0.994), runs 1 |"
    ) in table
    # differences to the reference in points, best / last: xent +0.10 / +0.00, standalone +0.10 / +0.00
    assert "| mnist | 2 | +0.10 / +0.00 | — | +0.10 / +0.00 |" in table
    assert "| fashion-mnist | 128 | — (0.926) | — (0.932) | — (0.922) |" in table


def test_rows_departing_from_the_recipe_get_no_diff_and_stay_out_of_the_paper_table(tmp_path):
    rows = [
        ledger_row("xent", precision="bf16", best=0.5, final=0.5),
        ledger_row("standalone", augment="none", best=0.6, final=0.6),
        ledger_row("cent", center_rule="separate", best=0.7, final=0.7),
        ledger_row("cent", loss_options={"weight_cent": 0.1}, best=0.8, final=0.8, seed=1),
        ledger_row("cent", epochs=3, train_size=2048, test_size=1000, best=0.9, final=0.9),
    ]
    df = ledger(tmp_path, rows)
    assert not df["on_recipe"].any()
    assert tables.paper_table(df).startswith(
        "**No run on the full reference recipe is recorded yet**"
    )
    full = tables.full_table(df, tmp_path)
    for departs, acc in (
        ("precision=bf16", "0.5000"),
        ("augment=none", "0.6000"),
        ("center_rule=separate", "0.7000"),
        ("weight_cent=0.1", "0.8000"),
        ("epochs=3, train_size=2048, test_size=1000", "0.9000"),
    ):
        [line] = [
            line for line in full.splitlines() if f"| {departs} |" in line and f"| {acc} |" in line
        ]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[8:10] == ["", ""], line  # diff best, diff last


def test_every_loss_against_xent_by_hand_with_holm(tmp_path):
    rows = (
        three_seeds("xent", [0.99] * 3, [0.980, 0.982, 0.984])
        + three_seeds("standalone", [0.99] * 3, [0.984, 0.984, 0.990])
        + three_seeds("cent", [0.99] * 3, [0.981, 0.984, 0.985])
        + [ledger_row("center-radius", seed=0, final=0.985)]
        + three_seeds("standalone", [0.99] * 3, [0.9] * 3, epochs=3)
    )  # no xent on its recipe: not shown
    text = compare.against_xent(ledger(tmp_path, rows))
    # standalone: differences 0.004, 0.002, 0.006: mean 0.4 points, sd 0.2, t = 0.4 / (0.2 / sqrt 3) = 3.4641 on
    # 2 df; two-sided p = 1 - t / sqrt(2 + t^2) = 0.074180 (the t distribution with 2 df in closed form).
    # cent: 0.001, 0.002, 0.001: mean 0.1333 points, sd 0.0577, t = 4, p = 1 - 4 / sqrt(18) = 0.057191.
    # Holm over the two tests: 2 x 0.057191 = 0.114382 for the smaller, max(0.114382, 0.074180) for the other.
    half_s, half_c = T975_DF2 * 0.2 / 3**0.5, T975_DF2 * (0.1 / 3**0.5) / 3**0.5
    assert (
        f"| standalone | mnist | 2 | — (reference recipe) | +0.40 ± {half_s:.2f} | 3; xent 3 | 3 | 0.0742 | 0.114 |"
        in text
    )
    assert (
        f"| cent | mnist | 2 | — (reference recipe) | +0.13 ± {half_c:.2f} | 3; xent 3 | 3 | 0.0572 | 0.114 |"
        in text
    )
    assert (
        "| center-radius | mnist | 2 | — (reference recipe) | +0.50 | 1; xent 3 | 1 | — | — |"
        in text
    )
    assert "Holm-corrected over the 2 tests" in text and "epochs=3" not in text
    assert compare.against_xent(ledger(tmp_path, three_seeds("cent", [0.99] * 3, [0.98] * 3))) == ""


def test_compare_any_two_groups(tmp_path):
    rows = (
        three_seeds("xent", [0.99] * 3, [0.980, 0.982, 0.984])
        + three_seeds(
            "standalone", [0.99] * 3, [0.984, 0.984, 0.990], loss_options={"weight_inter": 0.01}
        )
        + three_seeds("standalone", [0.99] * 3, [0.97] * 3)
        + [
            ledger_row("cent", seed=5, final=0.985),
            ledger_row("cent", seed=0, final=0.9, dataset="fashion-mnist"),
        ]
        + three_seeds("xent", [0.9] * 3, [0.9] * 3, epochs=3)
    )
    df = ledger(tmp_path, rows)
    text = compare.compare(df, "loss=standalone,weight_inter=0.01", "loss=xent,epochs=100")
    half = T975_DF2 * 0.2 / 3**0.5
    says(text, f"A is 0.40 ± {half:.2f} points above B", "3 seeds", "p = 0.0742")
    assert "A: standalone on mnist, feat_dim 2 [weight_inter=0.01], seeds [0, 1, 2]" in text
    with pytest.raises(compare.CompareError, match=r"(?s)loss=standalone.*2 groups"):
        compare.compare(df, "loss=standalone", "loss=xent,epochs=100")
    with pytest.raises(compare.CompareError, match="the groups differ also in epochs"):
        compare.compare(df, "loss=standalone,weight_inter=0.01", "loss=xent,epochs=3")
    with pytest.raises(compare.CompareError, match="no pair: the two groups share no seed"):
        compare.compare(df, "loss=cent,dataset=mnist", "loss=xent,epochs=100")
    with pytest.raises(compare.CompareError, match="'colour=red' is not FIELD=VALUE"):
        compare.compare(df, "colour=red", "loss=xent")
    two = compare.compare(
        ledger(tmp_path, rows[:2] + rows[3:5]), "loss=standalone", "loss=xent,epochs=100"
    )
    assert "over 2 seeds" in two and "p =" not in two  # no test under 3 pairs


def test_train_test_gap_by_hand(tmp_path):
    rows = three_seeds("standalone", [0.99] * 3, [0.97, 0.98, 0.99], trains=[0.99, 0.99, 0.99])
    gap = tables.train_test_gap(ledger(tmp_path, rows))
    half = T975_DF2 * 1.0 / 3**0.5  # gaps 2, 1, 0 points: mean 1, sd 1
    assert f"| mnist | 2 | — | — | 1.00 ± {half:.2f} (3) |" in gap


def test_results_section_order_and_the_empty_case(tmp_path):
    rows = three_seeds("xent", [0.99] * 3, [0.98] * 3) + [
        ledger_row("cent", epochs=3, best=0.5, final=0.5)
    ]
    text = readme.results_markdown(
        ledger(tmp_path, rows), pd.DataFrame(), tmp_path, tmp_path, tmp_path
    )
    order = [
        text.index(s)
        for s in (
            "**The CPU study has no run yet**",
            "**Test accuracy on the reference recipe**",
            "**Train-test gap**",
            "Every other run of the ledger (1 run:",
        )
    ]
    assert order == sorted(order) and "against `xent`" not in text  # cent has no xent on its recipe
    empty = readme.results_markdown(
        ledger(tmp_path, [ledger_row("cent", epochs=3)]),
        pd.DataFrame(),
        tmp_path,
        tmp_path,
        tmp_path,
    )
    assert "No run on the full reference recipe" in empty and "against `xent`" not in empty


def test_figure_table_names_hyphenated_losses_and_the_run_shown(tmp_path):
    rows = [
        ledger_row("standalone-log", dataset="fashion-mnist", feat_dim=128, epochs=3),
        ledger_row("center-radius", dataset="fashion-mnist", feat_dim=128, epochs=3),
    ]
    df = ledger(tmp_path, rows)
    made = []
    for row in df.to_dict("records"):
        folder = figures.picture_dir(tmp_path / "imgs", row)
        made.append((row, folder, "png"))
    text = readme.pictures_markdown(made, tmp_path)
    assert re.search(
        r"\| standalone-log \| fashion-mnist \| 128 \| `standalone-log-fashion-mnist-d128-s0-\w+` "
        r"\(epochs=3\) \| — \| "
        r"test: !\[\]\(imgs/standalone-log-fashion-mnist-feat=128/test.png\) \|",
        text,
    )
    assert "| center-radius | fashion-mnist | 128 |" in text and "| center |" not in text


@pytest.mark.parametrize("protocol, split", [("reference", "test"), ("fair", "val")])
def test_frames_are_labelled_by_the_split_they_hold(protocol, split):
    assert figures.picture_split({"protocol": protocol, "feat_dim": 2}) == split
    assert (
        figures.picture_split({"protocol": protocol, "feat_dim": 128}) == "test"
    )  # final features: always test


@pytest.mark.slow
def test_the_report_rebuilds_the_committed_readme_text_unchanged(tmp_path, monkeypatch):
    # from the committed ledger and pictures alone, as on a clean clone (no run directories)
    repo = Path(__file__).resolve().parent.parent
    for name in ("results", "imgs"):
        shutil.copytree(
            repo / name, tmp_path / name, ignore=shutil.ignore_patterns("quick", "bench.csv")
        )
    shutil.copy(repo / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    assert report.main(["--runs", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "README.md").read_text() == (repo / "README.md").read_text()
    assert (tmp_path / "results" / "table.md").read_text() == (
        repo / "results" / "table.md"
    ).read_text()
    # every picture redrawn from the committed frames is byte for byte the committed one
    changed = [
        p.relative_to(tmp_path).as_posix()
        for p in sorted((tmp_path / "imgs").rglob("*"))
        if p.is_file() and p.read_bytes() != (repo / p.relative_to(tmp_path)).read_bytes()
    ]
    assert changed == []
