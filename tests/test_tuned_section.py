"""The README's tuned section (experiments/report/tuned.py) says what was done, every sentence with its
numbers: the search's code, every trial (the failed ones too), and how many times the test split has scored
the study's reproductions, earlier code's included."""

import json
import re

import pandas as pd

from experiments.report import tuned
from tests.conftest import says


def trial(number, state, value=0.5, epochs_done=3, diverged_epoch=None):
    return {
        "number": number,
        "state": state,
        "value": value if state == "COMPLETE" else None,
        "params": {"lr": 0.01 * (number + 1)},
        "epochs_done": epochs_done,
        "wall_s": 60,
        "diverged_epoch": diverged_epoch,
        "retry_of": None,
    }


def summary(trials, losses=("xent", "cent"), **identity):
    return {
        "study": "s",
        "command": "python -m experiments.tune --study s",
        "trials_per_loss": 3,
        "reproductions": 2,
        "test_size": None,
        "wall_s": 600.0,
        "identity": {
            "epochs": 3,
            "train_size": 100,
            "val_size": 50,
            "seed": 0,
            "startup_trials": 10,
            "pruner": "median",
            "trial_seeds": 1,
            **identity,
        },
        "studies": [
            {
                "dataset": "synthetic",
                "feat_dim": 2,
                "loss": loss,
                "space": "lr log-uniform over [0.001, 0.1]",
                "trials": trials,
                "best": {"number": 0, "value": 0.5, "params": {"lr": 0.01}},
                "reproductions": [f"{loss}-{s}" for s in range(2)],
            }
            for loss in losses
        ],
    }


def current_rows(losses=("xent", "cent")):
    return pd.DataFrame(
        [
            {
                "run_id": f"{loss}-{s}",
                "status": "finished",
                "seed": s,
                "final_test_acc": 0.8 + 0.01 * s,
                "wall_s": 30.0,
                "device": "cpu",
                "code_version": "abc123",
                "stale": False,
            }
            for loss in losses
            for s in range(2)
        ]
    )


def section(tmp_path, study, runs_csv=None):
    (tmp_path / "tune").mkdir(exist_ok=True)
    (tmp_path / "tune" / "s.json").write_text(json.dumps(study))
    if runs_csv is not None:
        runs_csv.to_csv(tmp_path / "runs.csv", index=False)
    return tuned.tuned_markdown(
        current_rows(), tmp_path, tmp_path / "imgs", tmp_path, lambda p, b: str(p)
    )


def test_the_budget_names_the_search_code_and_holds_no_unformatted_field(tmp_path):
    trials = [trial(0, "COMPLETE"), trial(1, "COMPLETE")]
    text = tuned.budget_text(summary(trials, trial_code="ef019a1cdc15"), current_rows())
    assert "the search by trial code ef019a1cdc15;" in text
    assert "{" not in text and "}" not in text
    unrecorded = tuned.budget_text(summary(trials), current_rows())
    assert "the search by trial code unrecorded;" in unrecorded and "{" not in unrecorded


def test_the_trial_counts_account_for_every_trial_the_failed_ones_included(tmp_path):
    trials = [
        trial(0, "COMPLETE"),
        trial(1, "FAIL", epochs_done=None),
        trial(2, "COMPLETE", value=0.0, epochs_done=2, diverged_epoch=2),
        trial(3, "PRUNED", epochs_done=1),
    ]
    text = section(tmp_path, summary(trials))
    assert "trials: scored / pruned (epochs saved) / diverged / failed |" in text
    # 2 scored (one of them diverged), 1 pruned after 1 of 3 epochs, 1 failed: 4 trials in all
    [cell] = {c for c in re.findall(r"\| (\d+ / \d+ \(\d+\) / \d+ / \d+) \|", text)}
    assert cell == "2 / 1 (2) / 1 / 1"
    scored, pruned, _, failed = (int(n) for n in re.findall(r"\d+", cell.replace("(2)", "")))
    assert scored + pruned + failed == len(trials)
    waiting = section(tmp_path, summary(trials + [trial(4, "WAITING")]))
    assert "| 2 / 1 (2) / 1 / 1, 1 unfinished |" in waiting


def test_the_section_says_how_many_reproductions_the_test_split_has_scored_earlier_code_included(
    tmp_path,
):
    def row(run_id, superseded_by="", tuned_by="s", final="0.8", status="finished"):
        return {
            "run_id": run_id,
            "status": status,
            "final_test_acc": final,
            "best_test_acc": "",
            "tuned_by": tuned_by,
            "superseded_by": superseded_by,
        }

    ids = [f"{loss}-{s}" for loss in ("xent", "cent") for s in range(2)]
    runs = pd.DataFrame(
        [row(i) for i in ids]  # 4 current
        + [row(i, superseded_by="study s run again") for i in ids]  # one earlier version: 4 more
        + [row(i, superseded_by="study s run again") for i in ids[:2]]  # and an older one: 2 more
        + [row("xent-9", status="failed", final="")]  # never scored: not counted
        + [row("other-0", tuned_by="other")]  # another study's
        + [row("plain-0", tuned_by="")]  # no study's
    )
    text = section(tmp_path, summary([trial(0, "COMPLETE")]), runs)
    says(text, "scored 10 reproductions", "4 current", "6 by earlier code")
    assert "tested once on" not in text
    only_current = section(tmp_path, summary([trial(0, "COMPLETE")]), runs.iloc[:4])
    says(only_current, "scored 4 reproductions", "4 current", "none by earlier code")
    none = section(tmp_path, summary([trial(0, "COMPLETE")]), runs.iloc[0:0])
    assert "no reproduction of this study has been tested yet" in none


def test_reproductions_by_uncommitted_code_enter_no_mean_and_no_pair(tmp_path):
    """Which code made a ``-dirty`` row's numbers cannot be named: the README showed such reproductions' mean."""
    rows = current_rows()
    rows.loc[rows["run_id"].str.startswith("cent"), "code_version"] = "abc123-dirty"
    rows.loc[rows["run_id"].str.startswith("cent"), "final_test_acc"] = 0.1
    study = summary([trial(0, "COMPLETE")])
    md = tuned.study_markdown(study, rows, tmp_path / "imgs", tmp_path, lambda p, b: str(p))
    [cent] = [line for line in md.splitlines() if line.startswith("| cent |")]
    [xent] = [line for line in md.splitlines() if line.startswith("| xent |")]
    assert "0.1" not in cent.split("|")[6] and "2 by uncommitted code left out" in cent, cent
    assert "0.8050" in xent, xent  # the mean of the committed code's two runs
    assert "abc123-dirty" in tuned.budget_text(study, rows)  # the work done is still told
