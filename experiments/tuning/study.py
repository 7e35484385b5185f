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

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from experiments.datasets.specs import get_spec
from experiments.engine.config import RunConfig
from experiments.engine.device import device_name, resolve_device
from experiments.engine.io import atomic_write_json
from experiments.ledger.claims import Claim
from experiments.ledger.fingerprint import code_fingerprint, modules_fingerprint
from experiments.ledger.rows import is_done, mark_tuned
from experiments.runners.backends import Outcome, RunSettings, Stop, record_outcome, train_run
from experiments.tuning.space import N_STARTUP, describe_space, search_space, suggest
from experiments.tuning.trial import TrialData, TrialStopped, objective, run_trial, trial_config
from centersuite.losses import LOSSES
from centersuite.losses import has_class_parameters
from centersuite.models import model_recipe



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

    def run_settings(self) -> RunSettings:
        """The reproductions train as the grid's runs do by default (CUDA-graph steps, no compile)."""
        return RunSettings(out=self.out, results=self.results, data_root=self.data_root, device=self.device,
                           progress=self.progress)


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
    return spec.center_rule if has_class_parameters(loss, options=spec.fixed.get(loss)) else RunConfig.center_rule


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
    embedded = RunConfig.eval_train_size if classifies_by_class_means(loss, feat_dim, spec.fixed.get(loss)) else 0
    return RunConfig(dataset=dataset, loss=loss, feat_dim=feat_dim, model=spec.model, epochs=spec.epochs,
                     train_size=spec.train_size, center_rule=center_rule_of(spec, loss), protocol="fair",
                     eval_train_size=embedded,
                     loss_options=spec.fixed.get(loss, {}), lr_patience=max(RunConfig.lr_patience, spec.epochs),
                     weight_decay=model_recipe(spec.model).get("weight_decay", RunConfig.weight_decay),
                     precise_bn=spec.precise_bn)


def common_identity(spec) -> dict:
    """What every study of one name shares; a study of that name with anything else is refused."""
    return {"losses": list(spec.losses), "datasets": list(spec.datasets), "feat_dims": list(spec.feat_dims),
            "model": spec.model, "center_rule": spec.center_rule, "epochs": spec.epochs,
            "train_size": spec.train_size, "val_size": spec.val_size, "pruner": spec.pruner, "seed": spec.seed,
            "trial_seeds": spec.trial_seeds, "precise_bn": spec.precise_bn, "startup_trials": N_STARTUP,
            "trial_code": modules_fingerprint("experiments.tuning.trial", "experiments.tuning.space")}


def identity(spec, key) -> dict:
    loss = key[2]
    return {**common_identity(spec), "space": describe_space(loss, center_rule_of(spec, loss), spec.fixed.get(loss)),
            "recipe": base_config(spec, key).to_dict() | {"dataset": key[0]},
            "code": code_fingerprint(loss, spec.model)}


class StudyMismatch(ValueError):
    """A study of this name exists with another identity."""


def differences(old: dict, new: dict) -> str:
    return ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def make_sampler(spec, trials_before: int = 0, worker: int = 0):
    """The TPE sampler of a process that opens a study holding ``trials_before`` trials, as worker ``worker``:
    seeded with --seed for the first worker of a new study, otherwise with a seed drawn from all three, so
    that a resumed study or a second worker does not draw the first worker's points again."""
    import numpy as np
    import optuna
    seed = spec.seed if (trials_before, worker) == (0, 0) else \
        int(np.random.SeedSequence([spec.seed, trials_before, worker]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP)


def make_pruner(spec):
    import optuna
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.epochs)
    return optuna.pruners.NopPruner()


CODE_KEYS = ("code", "trial_code")  # the code a search ran by: --refresh reproduces its winners by other code


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
                raise StudyMismatch(f"--refresh: no study {study_name(spec, key)!r} in {journal_path(spec)} to "
                                    "refresh; run it first without --refresh") from None
            theirs = without_code(study.user_attrs.get("identity") or {})
            if theirs != without_code(identity(spec, key)):
                raise StudyMismatch(f"--refresh: study {study.study_name!r} was searched with "
                                    f"{differences(theirs, without_code(identity(spec, key)))}; give its own options")
            studies[key] = study
        return studies
    if create:
        ours = common_identity(spec)
        for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
            theirs = summary.user_attrs.get("identity")
            if summary.study_name.startswith(f"{spec.study}/") and theirs is not None:
                common = {k: theirs.get(k) for k in ours}
                if common != ours:
                    raise StudyMismatch(f"study {spec.study!r} exists in {journal_path(spec)} with "
                                        f"{differences(common, ours)}; give another --study")
    studies = {}
    for key in study_keys(spec):
        study = optuna.create_study(storage=store, study_name=study_name(spec, key), direction="maximize",
                                    sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
        if create:
            theirs, ours = study.user_attrs.get("identity"), identity(spec, key)
            if theirs is None:
                study.set_user_attr("identity", ours)
            elif theirs != ours:
                raise StudyMismatch(f"study {study.study_name!r} exists with {differences(theirs, ours)}; "
                                    "give another --study")
        studies[key] = study
    return studies


def counted(study) -> int:
    """Trials that count toward the budget: finished, pruned or running (a failed one was enqueued again)."""
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def ask_lock(spec) -> FileLock:
    """Held while a trial is asked for (so that the budget is exact) and while dead trials are recovered."""
    return FileLock(str(journal_path(spec).with_suffix(".ask.lock")))  # not .journal.lock: Optuna's own


def claim_of(spec, study, number: int) -> Claim:
    return Claim(spec.out, f"tune-{study.study_name.replace('/', '-')}-{number}")


def recover_dead_trials(spec, studies: dict, log=print) -> int:
    """Mark every running trial whose worker is gone (no live claim) failed and enqueue its point again."""
    from optuna.trial import TrialState
    recovered = 0
    with ask_lock(spec):
        for study in studies.values():
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                claim = claim_of(spec, study, trial.number)
                if not claim.take():
                    continue  # a live worker runs it
                try:
                    study.tell(trial.number, state=TrialState.FAIL)
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                    recovered += 1
                    log(f"tune: {study.study_name} trial {trial.number}: its worker is gone; failed, and its point "
                        "enqueued again")
                finally:
                    claim.release()
    return recovered


# ---- a worker ---------------------------------------------------------------------------------------------
def next_trial(spec, studies: dict):
    """``(key, study, trial, its claim)`` of the loss with the fewest trials counted, or None when every loss
    has its --trials (the losses advance together, so a stopped study leaves them level)."""
    with ask_lock(spec):
        key = min(studies, key=lambda k: counted(studies[k]))
        study = studies[key]
        if counted(study) >= spec.trials:
            return None
        trial = study.ask()
        claim = claim_of(spec, study, trial.number)
        claim.take()
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return key, study, trial, claim


def log_hparams(spec, key, trial_number: int, params: dict, value: float, state: str) -> None:
    """The trial's point and score in TensorBoard's hparams view (``tensorboard --logdir OUT/tune/STUDY``)."""
    from torch.utils.tensorboard import SummaryWriter
    dataset, feat_dim, loss = key
    with SummaryWriter(str(Path(spec.out) / "tune" / spec.study / "hparams")) as writer:
        writer.add_hparams({"loss": loss, "dataset": dataset, "feat_dim": feat_dim, **params},
                           {"hparam/best_val_acc": value}, run_name=f"{loss}-{dataset}-d{feat_dim}-trial{trial_number}")
        writer.add_text("state", state)


def run_one_trial(spec, key, study, trial, data, device, stop: Stop) -> str:
    """Train and score one trial; tell the study. Returns a line for the log."""
    import optuna
    from optuna.trial import TrialState
    params = suggest(trial, search_space(key[2], center_rule_of(spec, key[2]), spec.fixed.get(key[2])))
    cfg = trial_config(base_config(spec, key), params)
    point = " ".join(f"{k}={v:.3g}" for k, v in params.items())
    head = f"{study.study_name} trial {trial.number}"
    t0 = time.perf_counter()
    try:
        results = run_trial(trial, cfg, data, device, Path(spec.out) / "tune" / spec.study, stop,
                            seeds=spec.trial_seeds, progress=spec.progress, log=tqdm.write)
    except optuna.TrialPruned:
        epochs = len(study.get_trials(deepcopy=False)[trial.number].intermediate_values)
        trial.set_user_attr("epochs_done", epochs)
        trial.set_user_attr("wall_s", round(time.perf_counter() - t0, 2))
        study.tell(trial, state=TrialState.PRUNED)
        log_hparams(spec, key, trial.number, params, 0.0, "pruned")
        return f"{head}: {point}: pruned after epoch {epochs}"
    except BaseException:  # stopped, interrupted or failed: its point is trained again next time
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
        raise
    value = objective(results)
    if value != value:  # NaN: no rule classified the validation split; every trial would end the same way
        study.tell(trial, state=TrialState.FAIL)
        raise ValueError(f"{head}: its validation accuracy is NaN (no rule classified the validation split), so "
                         "the study cannot rank its points; nothing more is tried")
    diverged = next((r for r in results if r["status"] == "diverged"), None)
    trial.set_user_attr("epochs_done", results[0]["epochs_done"])
    trial.set_user_attr("wall_s", round(sum(r["wall_s"] for r in results), 2))
    trial.set_user_attr("diverged_epoch", None if diverged is None else diverged["diverged_epoch"])
    study.tell(trial, value)
    log_hparams(spec, key, trial.number, params, value, "diverged" if diverged else "finished")
    status = f"diverged at epoch {diverged['diverged_epoch']}: 0" if diverged else f"{value:.4f}"
    seeds = f", mean of {len(results)} seeds" if spec.trial_seeds > 1 else ""
    return f"{head}: {point}: last-epoch val acc {status}{seeds} ({sum(r['wall_s'] for r in results):.0f} s)"


def work(job: WorkerJob, spec, threads: int | None, stop: Stop, estimate_s=None) -> Outcome:
    """A worker: trials until every loss has --trials, or until told to stop (then its running trial stops
    after its current epoch and is enqueued again; the same command resumes it from its checkpoint)."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(spec.device)
    studies = open_studies(spec)
    for study in studies.values():
        study.sampler = make_sampler(spec, len(study.trials), job.index)
    data = {}
    done = 0
    try:
        while not stop():
            picked = next_trial(spec, studies)
            if picked is None:
                break
            key, study, trial, claim = picked
            try:
                if key[0] not in data:
                    data.clear()
                    data[key[0]] = TrialData(get_spec(key[0]), spec.data_root, device, spec.train_size, spec.val_size)
                tqdm.write(run_one_trial(spec, key, study, trial, data[key[0]], device, stop))
                done += 1
            finally:
                claim.release()
    except TrialStopped:
        pass
    except KeyboardInterrupt:
        raise
    except Exception as e:
        return Outcome(job, error=f"{type(e).__name__}: {e}")
    return Outcome(job, result={"trials": done})


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
        out[key] = [RunConfig.from_dict({**cfg.to_dict(), "train_size": spec.train_size + spec.val_size,
                                         "test_size": spec.test_size, "protocol": "last", "seed": seed})
                    for seed in range(spec.reproductions)]
    return out


def best_trial(study):
    """The finished trial of the highest score (the first of equals); None when none scored above 0."""
    from optuna.trial import TrialState
    finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value > 0]
    return max(finished, key=lambda t: (t.value, -t.number)) if finished else None


def write_summary(spec, studies: dict, reproductions: dict, wall_s: float) -> Path:
    """RESULTS/tune/STUDY.json: the study's identity (the code the search ran by included), every trial, each
    best point and its reproductions (a study stopped before they were trained keeps the previous ones)."""
    from optuna.trial import TrialState
    path = Path(spec.results) / "tune" / f"{spec.study}.json"
    previous = json.loads(path.read_text()) if path.exists() else None
    before = {(e["dataset"], e["feat_dim"], e["loss"]): e["reproductions"] for e in (previous or {}).get("studies", [])}
    entries = []
    for key, study in studies.items():
        trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                   "epochs_done": t.user_attrs.get("epochs_done"), "wall_s": t.user_attrs.get("wall_s"),
                   "diverged_epoch": t.user_attrs.get("diverged_epoch"), "retry_of": t.user_attrs.get("retry_of")}
                  for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        best = best_trial(study)
        entries.append({"dataset": key[0], "feat_dim": key[1], "loss": key[2],
                        "space": describe_space(key[2], center_rule_of(spec, key[2]), spec.fixed.get(key[2])),
                        "trials": trials, "best": None if best is None else
                        {"number": best.number, "value": best.value, "params": best.params},
                        "search_code": (study.user_attrs.get("identity") or {}).get("code"),
                        "reproductions": [c.run_id for c in reproductions[key]] if key in reproductions
                        else before.get(key, [])})
    searched = next(iter(studies.values())).user_attrs.get("identity") or {}
    atomic_write_json(path, {
        "study": spec.study, "identity": {**common_identity(spec), "trial_code": searched.get("trial_code")},
        "trials_per_loss": spec.trials,
        "reproductions": spec.reproductions, "test_size": spec.test_size,
        "wall_s": round((previous or {}).get("wall_s", 0) + wall_s, 1),
        "command": spec.command, "studies": entries})
    return path


def running(study) -> bool:
    from optuna.trial import TrialState
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def reproduce(spec, studies: dict, backend, stop: Stop, device) -> dict:
    """Train each study's best point over the seeds (the grid's runs: claims, ledger) and mark their rows."""
    plan = reproduction_configs(spec, studies)
    configs = [c for cs in plan.values() for c in cs]
    todo = [c for c in configs if not is_done(spec.results, c.run_id, code_fingerprint(c.loss, c.model))]
    print(f"tune: reproducing the best points: {len(configs)} runs, {len(todo)} to train")
    settings = spec.run_settings()
    for outcome in backend.run(todo, settings, stop, lambda _: None, task=train_run):
        if outcome.stopped is None and outcome.skipped is None and not outcome.recorded:
            record_outcome(settings, outcome, device_name(device))
    mark_tuned(spec.results, {c.run_id for c in configs}, spec.study)  # and retires its earlier reproductions
    return plan
