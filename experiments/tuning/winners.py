"""After a search: each study's best point, reproduced over seeds through the grid's runs into the ledger,
and the study's summary (RESULTS/tune/STUDY.json) that the report reads."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.engine.config import RunConfig
from experiments.engine.device import device_name
from experiments.engine.io import atomic_write_json
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import is_done, mark_tuned
from experiments.runners.backends import Stop, record_outcome, train_run
from experiments.tuning.space import describe_space
from experiments.tuning.study import base_config, center_rule_of, common_identity
from experiments.tuning.trial import trial_config


# ---- reproductions, summary ---------------------------------------------------------------------------------
def reproduction_configs(spec, studies: dict) -> dict:
    """``{key: [configs]}``: each study's best point, on the training images with the validation images added
    back, at a constant lr, its last epoch tested once (protocol ``last``), over --reproductions seeds."""
    out = {}
    for key, study in studies.items():
        best = best_trial(study)
        if best is None:
            continue
        cfg = trial_config(base_config(spec, key), best.params)
        out[key] = [
            RunConfig.from_dict(
                {
                    **cfg.to_dict(),
                    "train_size": spec.train_size + spec.val_size,
                    "test_size": spec.test_size,
                    "protocol": "last",
                    "seed": seed,
                }
            )
            for seed in range(spec.reproductions)
        ]
    return out


def best_trial(study):
    """The finished trial of the highest score (the first of equals); None when none scored above 0."""
    from optuna.trial import TrialState

    finished = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value > 0
    ]
    return max(finished, key=lambda t: (t.value, -t.number)) if finished else None


def write_summary(spec, studies: dict, reproductions: dict, wall_s: float) -> Path:
    """RESULTS/tune/STUDY.json: the study's identity (the code the search ran by included), every trial, each
    best point and its reproductions (a study stopped before they were trained keeps the previous ones)."""
    from optuna.trial import TrialState

    path = Path(spec.results) / "tune" / f"{spec.study}.json"
    previous = json.loads(path.read_text()) if path.exists() else None
    before = {
        (e["dataset"], e["feat_dim"], e["loss"]): e["reproductions"]
        for e in (previous or {}).get("studies", [])
    }
    entries = []
    for key, study in studies.items():
        trials = [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "epochs_done": t.user_attrs.get("epochs_done"),
                "wall_s": t.user_attrs.get("wall_s"),
                "diverged_epoch": t.user_attrs.get("diverged_epoch"),
                "retry_of": t.user_attrs.get("retry_of"),
            }
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING
        ]
        best = best_trial(study)
        entries.append(
            {
                "dataset": key[0],
                "feat_dim": key[1],
                "loss": key[2],
                "space": describe_space(
                    key[2], center_rule_of(spec, key[2]), spec.fixed.get(key[2])
                ),
                "trials": trials,
                "best": None
                if best is None
                else {"number": best.number, "value": best.value, "params": best.params},
                "search_code": (study.user_attrs.get("identity") or {}).get("code"),
                "reproductions": [c.run_id for c in reproductions[key]]
                if key in reproductions
                else before.get(key, []),
            }
        )
    searched = next(iter(studies.values())).user_attrs.get("identity") or {}
    atomic_write_json(
        path,
        {
            "study": spec.study,
            "identity": {**common_identity(spec), "trial_code": searched.get("trial_code")},
            "trials_per_loss": spec.trials,
            "reproductions": spec.reproductions,
            "test_size": spec.test_size,
            "wall_s": round((previous or {}).get("wall_s", 0) + wall_s, 1),
            "command": spec.command,
            "studies": entries,
        },
    )
    return path


def reproduce(spec, studies: dict, backend, stop: Stop, device) -> dict:
    """Train each study's best point over the seeds (the grid's runs: claims, ledger) and mark their rows."""
    plan = reproduction_configs(spec, studies)
    configs = [c for cs in plan.values() for c in cs]
    todo = [
        c for c in configs if not is_done(spec.results, c.run_id, code_fingerprint(c.loss, c.model))
    ]
    print(f"tune: reproducing the best points: {len(configs)} runs, {len(todo)} to train")
    settings = spec.run_settings()
    for outcome in backend.run(todo, settings, stop, lambda _: None, task=train_run):
        if outcome.stopped is None and outcome.skipped is None and not outcome.recorded:
            record_outcome(settings, outcome, device_name(device))
    mark_tuned(
        spec.results, {c.run_id for c in configs}, spec.study
    )  # and retires its earlier reproductions
    return plan
