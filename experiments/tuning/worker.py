"""A tuning worker: a process that loads the studies by name and takes trials until each loss has its
``--trials``, the losses advancing together; each running trial holds a claim, so that a dead worker's trial is
found, marked failed and its point enqueued again."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from experiments.datasets.specs import get_spec
from experiments.engine.device import resolve_device
from experiments.ledger.claims import Claim
from experiments.runners.backends import Outcome, Stop
from experiments.tuning.space import search_space, suggest
from experiments.tuning.study import (
    WorkerJob,
    base_config,
    center_rule_of,
    counted,
    journal_path,
    make_sampler,
    open_studies,
)
from experiments.tuning.trial import TrialData, TrialStopped, objective, run_trial, trial_config


def ask_lock(spec) -> FileLock:
    """Held while a trial is asked for (so that the budget is exact) and while dead trials are recovered."""
    return FileLock(
        str(journal_path(spec).with_suffix(".ask.lock"))
    )  # not .journal.lock: Optuna's own


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
                    log(
                        f"tune: {study.study_name} trial {trial.number}: its worker is gone; failed, and its point "
                        "enqueued again"
                    )
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
        writer.add_hparams(
            {"loss": loss, "dataset": dataset, "feat_dim": feat_dim, **params},
            {"hparam/best_val_acc": value},
            run_name=f"{loss}-{dataset}-d{feat_dim}-trial{trial_number}",
        )
        writer.add_text("state", state)


def run_one_trial(spec, key, study, trial, data, device, stop: Stop) -> str:
    """Train and score one trial; tell the study. Returns a line for the log."""
    import optuna
    from optuna.trial import TrialState

    params = suggest(
        trial, search_space(key[2], center_rule_of(spec, key[2]), spec.fixed.get(key[2]))
    )
    cfg = trial_config(base_config(spec, key), params)
    point = " ".join(f"{k}={v:.3g}" for k, v in params.items())
    head = f"{study.study_name} trial {trial.number}"
    t0 = time.perf_counter()
    try:
        results = run_trial(
            trial,
            cfg,
            data,
            device,
            Path(spec.out) / "tune" / spec.study,
            stop,
            seeds=spec.trial_seeds,
            progress=spec.progress,
            log=tqdm.write,
        )
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
    if (
        value != value
    ):  # NaN: no rule classified the validation split; every trial would end the same way
        study.tell(trial, state=TrialState.FAIL)
        raise ValueError(
            f"{head}: its validation accuracy is NaN (no rule classified the validation split), so "
            "the study cannot rank its points; nothing more is tried"
        )
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
                    data[key[0]] = TrialData(
                        get_spec(key[0]), spec.data_root, device, spec.train_size, spec.val_size
                    )
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
