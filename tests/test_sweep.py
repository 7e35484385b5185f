"""Grid axes beyond datasets, losses and seeds; a loss added from outside losses/ through grid and report."""

import pytest

from centersuite.losses import LOSSES, build_loss, loss_options
from experiments import grid, report
from experiments.ledger.rows import read_rows
from experiments.report import compare
from experiments.runners.sweep import SweepError, described, parse_set, plan
from tests.conftest import says
from tests.example_loss import ENTRY

TINY = [
    "--datasets",
    "synthetic",
    "--feat-dims",
    "2",
    "--seeds",
    "0",
    "--epochs",
    "1",
    "--train-size",
    "256",
    "--test-size",
    "100",
    "--batch-size",
    "64",
    "--no-progress",
    "--runs-per-gpu",
    "1",
]


def dirs(tmp_path):
    return ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]


@pytest.mark.slow
def test_swept_loss_options_form_one_group_each_with_its_own_rows_and_pictures(tmp_path):
    small = ["--train-size", "128", "--test-size", "50", "--batch-size", "32"]
    assert (
        grid.main(
            TINY
            + small
            + dirs(tmp_path)
            + ["--losses", "standalone", "--weight-inter", "0.01", "0.1", "1"]
        )
        == 0
    )
    rows = read_rows(tmp_path / "results" / "runs.csv")
    assert sorted(r["loss_options"] for r in rows) == [
        f'{{"weight_inter": {v}, "weight_intra": 1.0}}' for v in ("0.01", "0.1", "1.0")
    ]
    assert len({r["group_id"] for r in rows}) == 3
    imgs = tmp_path / "results" / "imgs"
    assert sorted(p.name for p in imgs.iterdir() if p.name.startswith("standalone")) == [
        "standalone-synthetic-feat=2",
        "standalone-synthetic-feat=2-weight_inter=0.01",
        "standalone-synthetic-feat=2-weight_inter=1",
    ]
    table = (tmp_path / "results" / "table.md").read_text()
    for departs in (
        "epochs=1, batch_size=32, train_size=128, test_size=50 |",
        "test_size=50, weight_inter=0.01 |",
        "test_size=50, weight_inter=1.0 |",
    ):
        assert departs in table


def test_sweeps_multiply_a_dry_run_lists_them_and_set_scopes_to_one_loss(tmp_path, capsys):
    args = (
        TINY
        + dirs(tmp_path)
        + [
            "--losses",
            "standalone",
            "centers-only",
            "cent",
            "--lr",
            "0.01",
            "0.1",
            "--weight-inter",
            "0.01",
            "0.1",
            "--set",
            "centers-only.weight_inter=1",
            "--weight-cent",
            "0.5",
            "--dry-run",
        ]
    )
    assert grid.main(args) == 0
    out = capsys.readouterr().out
    # standalone: 2 lr x 2 weight_inter; centers-only: 2 lr x 1 (--set wins); cent: 2 lr x 1 weight_cent
    says(out, "8 runs planned", "dry run")
    lines = out.splitlines()
    assert (
        sum(
            line.startswith("standalone-") and "lr=0.1" in line and "weight_inter=0.01" in line
            for line in lines
        )
        == 1
    )
    assert (
        sum(line.startswith("centers-only-") and "weight_inter=1.0" in line for line in lines) == 2
    )
    assert sum(line.startswith("cent-") and "weight_cent=0.5" in line for line in lines) == 2
    assert not (tmp_path / "results" / "runs.csv").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("standalone.weight_inter", "write LOSS.OPTION=VALUE"),
        ("nope.weight_inter=1", "unknown loss 'nope'"),
        ("cent.weight_inter=1", "loss cent takes no option 'weight_inter'; it takes: weight_cent"),
        ("standalone.weight_inter=0.1,x", "weight_inter: 'x' is not a number"),
        ("standalone.weight_inter=-1", "must be a finite number, 0 or more"),
    ],
)
def test_a_bad_set_is_refused_in_one_line(text, message):
    with pytest.raises(SweepError, match=message):
        parse_set(text)


def test_a_flag_no_chosen_loss_takes_is_refused(capsys):
    with pytest.raises(SystemExit):
        grid.parse_args(["--losses", "xent", "--weight-inter", "0.1"])
    assert "--weight-inter applies to none of --losses xent" in capsys.readouterr().err


def test_a_center_rule_applies_only_to_losses_with_class_centers_or_proxies(capsys):
    from experiments import train

    planned = plan(
        grid.grid_spec(
            grid.parse_args(
                TINY + ["--losses", "xent", "contrastive", "cent", "--center-rule", "separate"]
            )
        )
    )
    plain = plan(grid.grid_spec(grid.parse_args(TINY + ["--losses", "xent", "contrastive"])))
    assert {c.loss: c.center_rule for c in planned} == {
        "xent": "joint",
        "contrastive": "joint",
        "cent": "separate",
    }
    assert [c.run_id for c in planned[:2]] == [
        c.run_id for c in plain
    ]  # no run id for a rule the run ignores
    for parse, argv, message in (
        (
            grid.parse_args,
            TINY + ["--losses", "xent", "contrastive", "--center-rule", "wen"],
            "--center-rule wen does not apply to --losses xent contrastive: none of them trains class centers",
        ),
        (
            train.parse_args,
            ["--loss", "supcon", "--center-rule", "separate"],
            "--center-rule separate does not apply to --loss supcon: the loss trains no class centers",
        ),
    ):
        with pytest.raises(SystemExit):
            parse(argv)
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (
        train.main(
            [
                "--dataset",
                "synthetic",
                "--loss",
                "arcface",
                "--center-rule",
                "wen",
                "--out",
                "/nowhere",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(
        "error: --center-rule wen does not fit the loss arcface:"
    )


def test_a_center_lr_no_run_reads_is_refused_and_one_that_is_read_names_its_runs(capsys):
    from experiments import train

    for parse, argv in (
        (grid.parse_args, TINY + ["--losses", "xent", "cent", "--center-lr", "0.1", "0.5"]),
        (
            train.parse_args,
            ["--loss", "cent", "--center-alpha", "0.2", "--center-rule", "separate"],
        ),
    ):
        with pytest.raises(SystemExit):
            parse(argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is read by no run here" in err
    planned = plan(
        grid.grid_spec(
            grid.parse_args(
                TINY
                + ["--losses", "cent", "--center-rule", "separate", "--center-lr", "0.1", "0.5"]
            )
        )
    )
    assert [described(c)[-2:] for c in planned] == [
        ["center_rule=separate", "center_lr=0.1"],
        ["test_size=100", "center_rule=separate"],
    ]


def test_every_option_is_defined_once_with_its_default_and_search_range():
    for name in LOSSES:
        loss = build_loss(name, 10, 2)
        for option in LOSSES.entry(name).options:
            assert getattr(loss, option.name) == option.default == loss_options(name)[option.name]
            if option.search is not None:
                low, high = option.search
                assert 0 < low < high and (not option.log or low > 0)
    assert (
        "weight_inter log-uniform over [0.001, 1]"
        in LOSSES.entry("standalone").options[1].describe_search()
    )


@pytest.mark.slow
def test_a_loss_defined_outside_losses_runs_through_the_grid_and_the_report(tmp_path, monkeypatch):
    monkeypatch.setitem(LOSSES, "hinge-to-center", ENTRY)
    assert (
        grid.main(
            TINY
            + dirs(tmp_path)
            + [
                "--losses",
                "hinge-to-center",
                "xent",
                "--epochs",
                "3",
                "--feat-dims",
                "8",
                "--lr",
                "0.05",
            ]
        )
        == 0
    )
    rows = {r["loss"]: r for r in read_rows(tmp_path / "results" / "runs.csv")}
    assert rows["hinge-to-center"]["status"] == "finished"
    assert rows["hinge-to-center"]["loss_options"] == '{"hinge_weight": 0.5}'
    assert (
        float(rows["hinge-to-center"]["final_test_acc_class_mean"]) > 0.9
    )  # its features learn the toy set
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| hinge-to-center | synthetic | 8 |" in table and "stale" not in table
    assert (
        "| hinge-to-center | synthetic | 8 | epochs=3, batch_size=64, lr=0.05, train_size=256, test_size=100 |"
        in compare.against_xent(report.read_ledger(tmp_path / "results" / "runs.csv"))
    )
    assert (
        tmp_path / "results" / "imgs" / "hinge-to-center-synthetic-feat=8-lr=0.05" / "test.png"
    ).exists()
    assert (
        report.main(["--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs")]) == 0
    )
