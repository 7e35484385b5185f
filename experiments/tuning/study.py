"""Equal-budget tuning studies: one Optuna study per (dataset, feat_dim, loss), the same budget for each.

Each study searches its loss's space (experiments/tuning/trial.py; the ranges
live with the options in losses/options.py) with a TPE sampler seeded by the
study's seed, its first ``N_STARTUP`` trials at random; every loss gets the
same trials and the same budget per trial. Workers (``work``, mapped by a
backend) load the studies from the journal file and take trials until each
loss has its trials, the losses advancing together. Then each loss's best
point is reproduced over several seeds through the grid's runs
(``reproduce``), and ``write_summary`` writes the study's summary for the
report. The command is experiments/tune.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from centersuite.losses import LOSSES, has_class_parameters
from centersuite.models import model_recipe
from experiments.engine.config import RunConfig
from experiments.ledger.fingerprint import code_fingerprint, modules_fingerprint
from experiments.runners.backends import RunSettings
from experiments.tuning.space import N_STARTUP, describe_space


@dataclass(frozen=True)
class WorkerJob:
    """One worker of a study: a process that loads the studies by name and runs trials until each loss has
    its --trials (what the backends map, in place of a run config)."""

    index: int

    @property
    def run_id(self) -> str:
        return f"tune-worker-{self.index}"


@dataclass(frozen=True)
class TuneSpec:
    """A tuning study: its name, what it compares, its budget, and where it runs and records (what the
    ``tune`` command's flags say; every worker gets it)."""

    study: str
    losses: list[str]
    datasets: list[str]
    feat_dims: list[int]
    model: str
    center_rule: str
    epochs: int
    train_size: int
    val_size: int
    test_size: int | None
    trials: int
    trial_seeds: int
    precise_bn: int
    pruner: str
    seed: int
    reproductions: int
    fixed: dict  # loss -> {option: value} kept out of the search (--set)
    results: Path
    out: Path
    data_root: Path
    device: str = "auto"
    progress: bool = True
    command: str = ""  # the command line that made the study, for the summary
    # the recipe's other fields, from their flags (every one the trial rule leaves: tune.TRIAL_RULE)
    recipe: dict = field(default_factory=dict)

    def run_settings(self) -> RunSettings:
        """The reproductions train as the grid's runs do by default (CUDA-graph steps, no compile)."""
        return RunSettings(
            out=self.out,
            results=self.results,
            data_root=self.data_root,
            device=self.device,
            progress=self.progress,
        )


# ---- the studies -------------------------------------------------------------------------------------------
def journal_path(spec) -> Path:
    return Path(spec.results) / "tune" / f"{spec.study}.journal"


def storage(spec):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = journal_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def study_keys(spec) -> list[tuple[str, int, str]]:
    return [(d, f, loss) for d in spec.datasets for f in spec.feat_dims for loss in spec.losses]


def study_name(spec, key) -> str:
    dataset, feat_dim, loss = key
    return f"{spec.study}/{dataset}/d{feat_dim}/{loss}"


def center_rule_of(spec, loss: str) -> str:
    """The study's center rule for a loss that trains class centers or proxies; the default ``joint`` for one
    that has none (no rule acts on it, and its search space holds no center lr)."""
    return (
        spec.center_rule
        if has_class_parameters(loss, options=spec.fixed.get(loss))
        else RunConfig.center_rule
    )


def classifies_by_class_means(loss: str, feat_dim: int, options: dict | None) -> bool:
    """Whether the loss classifies by the class means of the training features (one that predicts by centers
    and has none: the pair losses), so that its trials must embed training images each epoch."""
    return LOSSES[loss].prediction == "centers" and not has_class_parameters(loss, options)


def base_config(spec, key) -> RunConfig:
    """A trial's recipe: the reference recipe (with the model's own weight decay, see models/), the study's
    budget and precise BN, the fair protocol (the validation split evaluated every epoch), a constant lr (the
    plateau schedule's patience at least the epochs: as the reproductions train, with no schedule). No
    training images are embedded per epoch, except for a loss that classifies by their class means."""
    dataset, feat_dim, loss = key
    embedded = (
        RunConfig.eval_train_size
        if classifies_by_class_means(loss, feat_dim, spec.fixed.get(loss))
        else 0
    )
    return RunConfig(
        **spec.recipe,
        dataset=dataset,
        loss=loss,
        feat_dim=feat_dim,
        model=spec.model,
        epochs=spec.epochs,
        train_size=spec.train_size,
        center_rule=center_rule_of(spec, loss),
        protocol="fair",
        eval_train_size=embedded,
        loss_options=spec.fixed.get(loss, {}),
        lr_patience=max(RunConfig.lr_patience, spec.epochs),
        weight_decay=model_recipe(spec.model).get("weight_decay", RunConfig.weight_decay),
        precise_bn=spec.precise_bn,
    )


def common_identity(spec) -> dict:
    """What every study of one name shares; a study of that name with anything else is refused."""
    return {
        "losses": list(spec.losses),
        "datasets": list(spec.datasets),
        "feat_dims": list(spec.feat_dims),
        "model": spec.model,
        "center_rule": spec.center_rule,
        "epochs": spec.epochs,
        "train_size": spec.train_size,
        "val_size": spec.val_size,
        "pruner": spec.pruner,
        "seed": spec.seed,
        "trial_seeds": spec.trial_seeds,
        "precise_bn": spec.precise_bn,
        "startup_trials": N_STARTUP,
        "trial_code": modules_fingerprint("experiments.tuning.trial", "experiments.tuning.space"),
    }


def identity(spec, key) -> dict:
    loss = key[2]
    return {
        **common_identity(spec),
        "space": describe_space(loss, center_rule_of(spec, loss), spec.fixed.get(loss)),
        "recipe": base_config(spec, key).to_dict() | {"dataset": key[0]},
        "code": code_fingerprint(loss, spec.model),
    }


class StudyMismatch(ValueError):
    """A study of this name exists with another identity."""


def differences(old: dict, new: dict) -> str:
    return ", ".join(
        f"{k} {old.get(k)!r} there, {new.get(k)!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    )


def make_sampler(spec, trials_before: int = 0, worker: int = 0):
    """The TPE sampler of a process that opens a study holding ``trials_before`` trials, as worker ``worker``:
    seeded with --seed for the first worker of a new study, otherwise with a seed drawn from all three, so
    that a resumed study or a second worker does not draw the first worker's points again."""
    import numpy as np
    import optuna

    seed = (
        spec.seed
        if (trials_before, worker) == (0, 0)
        else int(np.random.SeedSequence([spec.seed, trials_before, worker]).generate_state(1)[0])
    )
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP)


def make_pruner(spec):
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.epochs)
    return optuna.pruners.NopPruner()


CODE_KEYS = (
    "code",
    "trial_code",
)  # the code a search ran by: --refresh reproduces its winners by other code


def without_code(identity: dict) -> dict:
    return {k: v for k, v in identity.items() if k not in CODE_KEYS}


def open_studies(spec, create: bool = False, refresh: bool = False) -> dict:
    """``{key: optuna.Study}``; with ``create`` (the driver), made where missing and checked against the
    identity of every study of this name (StudyMismatch names what differs); with ``refresh``, every study
    must exist and match but for the code it was searched by."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage(spec)
    if refresh:
        studies = {}
        for key in study_keys(spec):
            try:
                study = optuna.load_study(study_name=study_name(spec, key), storage=store)
            except KeyError:
                raise StudyMismatch(
                    f"--refresh: no study {study_name(spec, key)!r} in {journal_path(spec)} to "
                    "refresh; run it first without --refresh"
                ) from None
            theirs = without_code(study.user_attrs.get("identity") or {})
            if theirs != without_code(identity(spec, key)):
                raise StudyMismatch(
                    f"--refresh: study {study.study_name!r} was searched with "
                    f"{differences(theirs, without_code(identity(spec, key)))}; give its own options"
                )
            studies[key] = study
        return studies
    if create:
        ours = common_identity(spec)
        for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
            theirs = summary.user_attrs.get("identity")
            if summary.study_name.startswith(f"{spec.study}/") and theirs is not None:
                common = {k: theirs.get(k) for k in ours}
                if common != ours:
                    raise StudyMismatch(
                        f"study {spec.study!r} exists in {journal_path(spec)} with "
                        f"{differences(common, ours)}; give another --study"
                    )
    studies = {}
    for key in study_keys(spec):
        study = optuna.create_study(
            storage=store,
            study_name=study_name(spec, key),
            direction="maximize",
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
            load_if_exists=True,
        )
        if create:
            theirs, ours = study.user_attrs.get("identity"), identity(spec, key)
            if theirs is None:
                study.set_user_attr("identity", ours)
            elif theirs != ours:
                raise StudyMismatch(
                    f"study {study.study_name!r} exists with {differences(theirs, ours)}; "
                    "give another --study"
                )
        studies[key] = study
    return studies


def counted(study) -> int:
    """Trials that count toward the budget: finished, pruned or running (a failed one was enqueued again)."""
    from optuna.trial import TrialState

    return len(
        study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
    )


def running(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))
