"""Equal-budget tuning (experiments/tune.py, experiments/tuning/trial.py) on tiny synthetic data."""

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

optuna = pytest.importorskip(
    "optuna"
)  # in requirements.txt; a GPU machine's own Python may lack it
from optuna.trial import TrialState  # noqa: E402

from centersuite.losses import LOSSES
from experiments import REPO, tune
from experiments.datasets.specs import get_spec
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.trainer import Trainer
from experiments.report import tuned
from experiments.tuning import trial as trial_module
from experiments.tuning.space import CENTER_LR, LR, search_space, suggest
from experiments.tuning.study import storage
from experiments.tuning.trial import NoTestSplit, TrialData, run_trial, trial_config
from tests.conftest import says

TINY = [
    "--datasets",
    "synthetic",
    "--epochs",
    "2",
    "--train-size",
    "256",
    "--val-size",
    "64",
    "--test-size",
    "100",
    "--precise-bn",
    "64",
    "--no-progress",
    "--device",
    "cpu",
]


def dirs(tmp_path):
    return ["--results", str(tmp_path / "results"), "--out", str(tmp_path / "runs")]


def load(tmp_path, study="tuned", loss="xent"):
    store = storage(tune.tune_spec(tune.parse_args(["--study", study] + dirs(tmp_path))))
    return optuna.load_study(study_name=f"{study}/synthetic/d2/{loss}", storage=store)


@pytest.mark.parametrize("center_rule", ["joint", "separate"])
def test_every_loss_space_is_sampled_within_its_bounds(center_rule):
    for loss in LOSSES:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        space = search_space(loss, center_rule)
        seen = []
        for _ in range(40):
            params = suggest(study.ask(), space)
            seen.append(params)
            cfg = trial_config(RunConfig(loss=loss, center_rule=center_rule), params)
            assert cfg.lr == params["lr"] and LR.search[0] <= cfg.lr <= LR.search[1]
            assert ("center_lr" in params) == (center_rule == "separate")
            if center_rule == "separate":
                assert (
                    cfg.center_lr == params["center_lr"]
                    and CENTER_LR.search[0] <= cfg.center_lr <= CENTER_LR.search[1]
                )
            for option in LOSSES.entry(loss).options:
                if option.search is None:  # weight_intra, fixed_centers: kept at the default
                    assert (
                        option.name not in params
                        and cfg.loss_options[option.name] == option.default
                    )
                else:
                    assert option.search[0] <= params[option.name] <= option.search[1]
                    assert params[option.name].is_integer() or not option.integer
                    assert cfg.loss_options[option.name] == params[option.name]
        for name in seen[
            0
        ]:  # a log-uniform draw puts about half its points below the geometric middle
            o = next(o for o in space if o.name == name)
            middle = math.sqrt(o.search[0] * o.search[1]) if o.log else sum(o.search) / 2
            assert 8 <= sum(p[name] < middle for p in seen) <= 32, (loss, name)


def test_a_whole_number_drawn_by_the_tuner_is_the_same_run_as_one_given_on_the_command_line():
    """Optuna's best point holds an int (sphere_margin 2); the command line gives 2.0: one run id, not two."""
    tuned = trial_config(RunConfig(loss="sphereface"), {"lr": 0.02, "sphere_margin": 2})
    given = RunConfig(loss="sphereface", lr=0.02, loss_options={"sphere_margin": 2.0})
    assert tuned.run_id == given.run_id and type(tuned.loss_options["sphere_margin"]) is float


def test_the_stand_in_refuses_every_use():
    stand_in = NoTestSplit("test split")
    for use in (
        len,
        lambda s: s[0],
        lambda s: s.to("cpu"),
        lambda s: list(s),
        bool,
        lambda s: s.shape,
    ):
        with pytest.raises(trial_module.TestSplitTouched, match="test split"):
            use(stand_in)


@pytest.mark.slow
def test_a_trial_trains_and_selects_without_the_test_split(tmp_path):
    data = TrialData(
        get_spec("synthetic"), Path("data"), torch.device("cpu"), train_size=256, val_size=64
    )
    # exactly the 64 asked for, each class giving its share; the rest trains
    assert len(data.val_labels) == 64 and len(data.train_labels) == 256
    assert set(data.val_labels.tolist()) == set(range(10))
    cfg = RunConfig(
        dataset="synthetic",
        loss="cent",
        epochs=2,
        train_size=256,
        protocol="fair",
        eval_train_size=0,
        batch_size=64,
    )
    reported = {}

    class Trial:  # what run_trial asks of an Optuna trial
        def report(self, value, step):
            reported[step] = value

        def should_prune(self):
            return False

    [result] = run_trial(
        Trial(), cfg, data, torch.device("cpu"), tmp_path / "trial", lambda: False, progress=False
    )
    # every epoch, the last included, is reported to the pruner; the score is the last epoch's, as a winner's
    assert result["status"] == "finished" and len(result["val_acc"]) == 2
    assert reported == {1: result["val_acc"][0], 2: result["val_acc"][1]}
    assert trial_module.objective([result]) == result["val_acc"][-1]
    assert not (
        tmp_path / "trial" / cfg.run_id / "features" / "final.pt"
    ).exists()  # no final evaluation
    # the shared trainer's final evaluation would have reached for the test split: the stand-in stops it
    with pytest.raises(trial_module.TestSplitTouched):
        Trainer(
            RunConfig.from_dict({**cfg.to_dict(), "epochs": 1}),
            data,
            tmp_path / "plain",
            RunContext(device=torch.device("cpu"), progress=False),
        ).fit()


@pytest.mark.slow
def test_workers_share_the_budget_and_the_winners_are_reproduced_into_the_ledger(tmp_path):
    args = (
        TINY
        + dirs(tmp_path)
        + [
            "--losses",
            "xent",
            "standalone",
            "--trials",
            "2",
            "--workers",
            "2",
            "--reproductions",
            "2",
        ]
    )
    assert tune.main(args) == 0
    workers, ledger = set(), pd.read_csv(tmp_path / "results" / "runs.csv")
    for loss in ("xent", "standalone"):
        study = load(tmp_path, loss=loss)
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        workers |= {t.user_attrs["worker"] for t in trials}
        best = max(trials, key=lambda t: t.value)
        rows = ledger[ledger["loss"] == loss]
        assert sorted(rows["seed"]) == [0, 1] and set(rows["tuned_by"]) == {"tuned"}
        assert set(rows["status"]) == {"finished"} and set(rows["train_size"]) == {256 + 64}
        assert set(rows["lr"]) == {best.params["lr"]}
        options = [json.loads(o) for o in rows["loss_options"]]
        assert all(
            o.get("weight_inter") == best.params.get("weight_inter", None) or loss == "xent"
            for o in options
        )
    assert len(workers) == 2  # both workers ran trials
    summary = json.loads((tmp_path / "results" / "tune" / "tuned.json").read_text())
    assert {e["loss"]: len(e["reproductions"]) for e in summary["studies"]} == {
        "xent": 2,
        "standalone": 2,
    }
    table = (tmp_path / "results" / "table.md").read_text()
    # the reproductions' mean, or (tests run from a checkout with uncommitted changes) their count left out
    assert "## Tuned comparison" in table and re.search(
        r"\| (0\.\d{4} ± 0\.\d{4}, 2|— \(2 by uncommitted code left out\)) \|", table
    )
    assert (
        set(ledger["protocol"]) == {"last"} and ledger["best_test_acc"].isna().all()
    )  # tested once, no best
    assert (tmp_path / "results" / "imgs" / "tuned" / "tuned-synthetic-d2.png").exists()


# the tuner in a process that kills itself (SIGKILL: nothing runs after it) once trial 1 has reported its first
# epoch: trial 0 finished, trial 1 running with its point drawn; the same moment on any machine, unlike a poll
# of the journal against a clock (a trial that ended between the poll and the kill made the test flaky)
KILLED_AT_TRIAL_1 = """
import os, signal, sys
import optuna.trial
report = optuna.trial.Trial.report
def killing_report(self, value, step):
    report(self, value, step)
    if self.number == 1 and step == 1:
        os.kill(os.getpid(), signal.SIGKILL)
optuna.trial.Trial.report = killing_report
from experiments import tune
sys.exit(tune.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_killed_study_resumes_without_losing_or_repeating_trials(tmp_path):
    args = (
        TINY
        + dirs(tmp_path)
        + [
            "--losses",
            "xent",
            "--trials",
            "3",
            "--reproductions",
            "0",
            "--no-report",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SUITE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AT_TRIAL_1, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    before = load(tmp_path).get_trials()
    finished = {t.number: (t.params, t.value) for t in before if t.state == TrialState.COMPLETE}
    killed = [t for t in before if t.state == TrialState.RUNNING]
    assert list(finished) == [0] and [t.number for t in killed] == [1] and killed[0].params

    assert tune.main(args) == 0  # the same command
    after = load(tmp_path).get_trials()
    assert {t.number: (t.params, t.value) for t in after if t.number in finished} == finished
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # the killed trial counted once
    assert [t.number for t in after if t.state == TrialState.FAIL] == [killed[0].number]
    retry = [t for t in complete if t.user_attrs.get("retry_of") == killed[0].number]
    assert len(retry) == 1 and retry[0].params == killed[0].params
    points = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(points)) == 3  # no point trained twice
    assert tune.main(args) == 0  # once more: nothing to do
    assert len(load(tmp_path).get_trials()) == len(after)


@pytest.mark.slow
def test_a_pair_loss_is_scored_by_class_means_and_a_center_rule_only_reaches_losses_with_centers(
    tmp_path, capsys
):
    args = (
        TINY
        + dirs(tmp_path)
        + [
            "--epochs",
            "1",
            "--trials",
            "1",
            "--reproductions",
            "0",
            "--no-report",
            "--center-rule",
            "separate",
        ]
    )
    assert tune.main(args + ["--losses", "arcface", "cent"]) == 2  # refused before any trial
    assert capsys.readouterr().err.startswith(
        "error: --center-rule separate does not fit the loss arcface"
    )
    assert not (tmp_path / "results" / "tune" / "tuned.journal").exists()
    assert tune.main(args + ["--losses", "contrastive", "cent"]) == 0
    [pair] = load(tmp_path, loss="contrastive").get_trials()
    assert (
        pair.state == TrialState.COMPLETE and 0 < pair.value <= 1
    )  # was NaN: no train features embedded
    assert (
        "center_lr" not in pair.params
        and "center_lr" in load(tmp_path, loss="cent").get_trials()[0].params
    )


@pytest.mark.slow
def test_a_study_of_the_same_name_with_another_budget_or_space_is_refused(tmp_path, capsys):
    base = (
        TINY
        + dirs(tmp_path)
        + ["--losses", "cent", "--trials", "1", "--reproductions", "0", "--no-report"]
    )
    assert tune.main(base) == 0
    for change, what in (
        (["--epochs", "3"], "epochs"),
        (["--val-size", "100"], "val_size"),
        (["--center-rule", "separate"], "center_rule"),
    ):
        capsys.readouterr()
        assert tune.main(base + change) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and what in err and "--study" in err
    assert tune.main(base + ["--study", "other", "--epochs", "3"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "xent.weight_inter=0.1"], "takes no option"),
        (["--set", "standalone.weight_inter=0.1,0.2"], "one value"),
        (["--set", "cent.weight_cent=0.1"], "not among --losses"),
        (["--losses", "nope"], "invalid choice"),
        (["--trials", "0"], "positive whole number"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        tune.main(
            TINY
            + dirs(tmp_path)
            + (["--losses", "standalone", "xent"] if "--losses" not in extra else [])
            + extra
        )
    assert message in capsys.readouterr().err


def test_a_budget_the_data_cannot_hold_or_an_unwritable_folder_is_refused_before_any_trial(
    tmp_path, capsys
):
    assert tune.main(TINY + dirs(tmp_path) + ["--train-size", "1990", "--val-size", "100"]) == 2
    assert "more than its 2000 training images" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")  # a results folder inside a file cannot be made
    assert (
        tune.main(
            TINY
            + ["--results", str(tmp_path / "file" / "results"), "--out", str(tmp_path / "runs")]
        )
        == 2
    )
    assert "cannot write there" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tune").exists()


def test_the_tuned_section_computes_the_paired_difference_by_hand(tmp_path):
    summary = {
        "study": "s",
        "command": "python -m experiments.tune",
        "trials_per_loss": 2,
        "reproductions": 3,
        "test_size": None,
        "wall_s": 600.0,
        "identity": {
            "epochs": 3,
            "train_size": 100,
            "val_size": 50,
            "seed": 0,
            "startup_trials": 10,
            "pruner": "median",
        },
        "studies": [
            {
                "dataset": "synthetic",
                "feat_dim": 2,
                "loss": loss,
                "space": "lr log-uniform over [0.001, 0.1]",
                "trials": [
                    {
                        "number": 0,
                        "state": "COMPLETE",
                        "value": 0.5,
                        "params": {"lr": 0.01},
                        "epochs_done": 3,
                        "wall_s": 60,
                        "diverged_epoch": None,
                    },
                    {
                        "number": 1,
                        "state": "PRUNED",
                        "value": 0.2,
                        "params": {"lr": 0.02},
                        "epochs_done": 1,
                        "wall_s": 20,
                    },
                ],
                "best": {"number": 0, "value": 0.5, "params": {"lr": 0.01}},
                "reproductions": [f"{loss}-{s}" for s in range(3)],
            }
            for loss in ("xent", "standalone")
        ],
    }
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "s.json").write_text(json.dumps(summary))
    accs = {
        "xent": [0.80, 0.82, 0.84],
        "standalone": [0.81, 0.85, 0.86],
    }  # differences 1, 3, 2 points
    df = pd.DataFrame(
        [
            {
                "run_id": f"{loss}-{s}",
                "status": "finished",
                "seed": s,
                "final_test_acc": acc,
                "wall_s": 30.0,
                "device": "cpu",
                "stale": False,
            }
            for loss, a in accs.items()
            for s, acc in enumerate(a)
        ]
    )
    text = tuned.tuned_markdown(df, tmp_path, tmp_path / "imgs", tmp_path, lambda p, b: str(p))
    # mean difference 2 points; t(0.975, 2) = 4.3027; sd of (1, 3, 2) = 1, so ± 4.3027 / sqrt(3) = 2.48
    assert "| +2.00 ± 2.48, 3 |" in text
    assert "0.8200 ± 0.0497, 3 |" in text  # mean 0.82, sd 0.02, 4.3027 * 0.02 / sqrt(3)
    assert "| 1 / 1 (2) / 0 / 0 |" in text  # 1 scored, 1 pruned after 1 of 3 epochs, 0 failed
    says(text, "3 min of trials", "3 min of its current reproductions")  # 2 x (60 + 20) s; 6 x 30 s
    assert (tmp_path / "imgs" / "tuned" / "s-synthetic-d2.png").exists()


def test_a_diverged_reproduction_is_counted_and_removes_its_pair(tmp_path):
    """The committed study's case: one xent reproduction diverges. It enters no mean, and every cell says so."""
    summary = {
        "study": "s",
        "command": "python -m experiments.tune",
        "trials_per_loss": 2,
        "reproductions": 5,
        "test_size": None,
        "wall_s": 600.0,
        "identity": {
            "epochs": 3,
            "train_size": 100,
            "val_size": 50,
            "seed": 0,
            "startup_trials": 10,
            "pruner": "none",
            "trial_seeds": 1,
        },
        "studies": [
            {
                "dataset": "synthetic",
                "feat_dim": 2,
                "loss": loss,
                "space": "lr log-uniform over [0.001, 0.1]",
                "trials": [
                    {
                        "number": 0,
                        "state": "COMPLETE",
                        "value": 0.5,
                        "params": {"lr": 0.01},
                        "epochs_done": 3,
                        "wall_s": 60,
                        "diverged_epoch": None,
                    },
                    {
                        "number": 1,
                        "state": "COMPLETE",
                        "value": 0.0,
                        "params": {"lr": 0.09},
                        "epochs_done": 2,
                        "wall_s": 40,
                        "diverged_epoch": 2,
                    },
                ],
                "best": {"number": 0, "value": 0.5, "params": {"lr": 0.01}},
                "reproductions": [f"{loss}-{s}" for s in range(5)],
            }
            for loss in ("xent", "cent")
        ],
    }
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "s.json").write_text(json.dumps(summary))
    accs = {"xent": [0.60, None, 0.62, 0.58, 0.60], "cent": [0.62, 0.66, 0.63, 0.61, 0.64]}
    df = pd.DataFrame(
        [
            {
                "run_id": f"{loss}-{s}",
                "status": "finished" if acc is not None else "diverged",
                "seed": s,
                "final_test_acc": acc,
                "wall_s": 30.0,
                "device": "cpu",
                "stale": False,
            }
            for loss, a in accs.items()
            for s, acc in enumerate(a)
        ]
    )
    text = tuned.tuned_markdown(df, tmp_path, tmp_path / "imgs", tmp_path, lambda p, b: str(p))
    assert "0.6000 ± 0.0260, 4/5, 1 diverged |" in text  # xent over its 4 finished runs: sd 0.01633
    # pairs of seeds 0, 2, 3, 4: differences 2, 1, 3, 4 points; mean 2.5, sd 1.291, t(0.975, 3) 3.1824 / 2 = 2.05
    assert "| +2.50 ± 2.05, 4 (1 removed: 1 diverged) |" in text
    assert "| 2 / 0 (0) / 1 / 0 |" in text  # the trial that diverged is counted as such


@pytest.mark.slow
def test_refresh_keeps_the_search_and_trains_the_winners_again_by_the_current_code(
    tmp_path, monkeypatch, capsys
):
    from experiments.ledger import fingerprint

    args = (
        TINY
        + dirs(tmp_path)
        + ["--losses", "xent", "--trials", "1", "--reproductions", "1", "--no-report"]
    )
    assert tune.main(args) == 0
    trials = [(t.number, t.params, t.value) for t in load(tmp_path).get_trials()]
    [old] = pd.read_csv(tmp_path / "results" / "runs.csv", dtype=str).to_dict("records")
    original = fingerprint._statements  # the trainer edited: every run's code changes
    monkeypatch.setattr(
        fingerprint,
        "_statements",
        lambda path: original(path) + (("edit",) if path.name == "trainer.py" else ()),
    )
    capsys.readouterr()
    assert (
        tune.main(args) == 2 and "code" in capsys.readouterr().err
    )  # the search's code differs: refused
    assert tune.main(args + ["--refresh"]) == 0
    assert [
        (t.number, t.params, t.value) for t in load(tmp_path).get_trials()
    ] == trials  # the search kept
    rows = pd.read_csv(tmp_path / "results" / "runs.csv", dtype=str, keep_default_na=False).to_dict(
        "records"
    )
    new = [r for r in rows if not r["superseded_by"]]
    assert len(rows) == 2 and len(new) == 1 and new[0]["run_id"] == old["run_id"]
    assert new[0]["code_fingerprint"] != old["code_fingerprint"] and new[0]["tuned_by"] == "tuned"
    assert tune.main(args + ["--epochs", "3", "--refresh"]) == 2  # another budget is no refresh


def test_every_recipe_field_the_trial_rule_leaves_is_a_tune_flag_that_reaches_the_trials(tmp_path):
    """Issue 39: the tuner listed six recipe fields by hand, so a new recipe option could not be set there."""
    from experiments.cli.recipe import flag_of
    from experiments.engine.config import RECIPE
    from experiments.tuning.study import base_config

    flags = {s for a in tune.build_parser()._actions for s in a.option_strings}
    wanted = {flag_of(n) for n, meta in RECIPE.items() if meta["flag"] and n not in tune.TRIAL_RULE}
    assert wanted <= flags, sorted(wanted - flags)
    assert not {flag_of(n) for n in tune.TRIAL_RULE} & flags  # searched or fixed by the rule
    given = {
        "batch_size": 64,
        "momentum": 0.5,
        "augment": "none",
        "class_lr_scale": 3.0,
        "epochs": 3,
    }
    argv = ["--losses", "cent", "--out", str(tmp_path / "runs"), "--results", str(tmp_path)]
    for name, value in given.items():
        argv += [flag_of(name), str(value)]
    spec = tune.tune_spec(tune.parse_args(argv))
    cfg = base_config(spec, ("fashion-mnist", 2, "cent"))
    assert {name: getattr(cfg, name) for name in given} == given
    default = base_config(tune.tune_spec(tune.parse_args(argv[:6])), ("fashion-mnist", 2, "cent"))
    assert (default.epochs, default.train_size, default.precise_bn) == (2, 4096, 2000)
    assert default.batch_size == RunConfig.batch_size


def test_a_refused_study_leaves_no_folder_its_checks_made(tmp_path, capsys):
    """`--results` a file: the tuner refused, but the --out folder its check had made stayed."""
    (tmp_path / "afile").write_text("x")
    argv = TINY + ["--losses", "xent", "--results", str(tmp_path / "afile")]
    assert tune.main(argv + ["--out", str(tmp_path / "new" / "runs")]) == 2
    assert "nothing was run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_sizes_too_large_are_refused_before_the_estimate_asks_for_yes(tmp_path, capsys):
    from experiments import tune

    argv = ["--study", "big", "--datasets", "mnist", "--train-size", "256", "--val-size", "5000000"]
    assert tune.main(argv + ["--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err  # it asked for --yes first, for a study that could never run
    assert err.strip() == (
        "error: mnist: --train-size 256 + --val-size 5000000 is more than its 60000 training images; "
        "lower one of them; nothing was run"
    )
