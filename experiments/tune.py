"""Equal-budget tuning: each loss at its best, every loss with the same search budget.

    python -m experiments.tune --losses xent cent standalone --datasets fashion-mnist --feat-dims 2 \\
        --trials 20 --epochs 2 --train-size 4096 --val-size 2000

For each loss (and dataset, feat_dim) one Optuna study searches the loss's
space (experiments/trial.py; the ranges live with the options in
losses/options.py): a TPE sampler seeded with --seed whose first 10 trials are
drawn at random, the same --trials trials for every loss and the same budget
per trial (epochs, images). A trial trains on --train-size images and is
scored by its best epoch's validation accuracy (the loss's own prediction
rule; 0 when it diverges) on --val-size images held out of the training
split beside them; it never loads the test split.

Then the winners are reproduced: each loss's best point is trained again from
scratch over --reproductions seeds on the training images with the
validation images added back, for the same epochs, at a constant lr, and its
last epoch is tested once; nothing is chosen on the test split. Their rows
go into the ledger (--results) as groups of their own, marked with the study
(tuned_by), and the report's "Tuned comparison" compares them, paired by seed.

The study lives in RESULTS/tune/STUDY.journal (Optuna's journal file storage:
safe for several processes, on NFS too) and RESULTS/tune/STUDY.json (its
summary, which the report reads). The same command again continues it:
finished trials are kept; a trial whose worker died (its claim is not held) is
marked failed and its point enqueued again, counting once toward --trials.
The same study name with other losses, spaces, budget or code is refused.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from experiments import report
from experiments.backends import Outcome, Stop, add_backend_arguments, build_backend, record_outcome, train_run
from experiments.claims import Claim
from experiments.cli_types import HelpFormatter, non_negative_int, positive_float, positive_int
from experiments.config import RunConfig
from experiments.data import add_offline_flag
from experiments.datasets import SPECS, DataError, default_data_root, get_spec
from experiments.fingerprint import code_fingerprint, modules_fingerprint
from experiments.io import atomic_write_json, unwritable
from experiments.ledger import is_done, mark_tuned, read_rows
from experiments.provenance import device_name, resolve_device
from experiments.sweep import SweepError, parse_set
from experiments.train import DATASET_HELP, model_recipe
from experiments.trial import (TrialData, TrialStopped, describe_space, objective, run_trial, search_space, suggest,
                               trial_config)
from losses import LOSSES
from models import MODELS

N_STARTUP = 10  # TPE's first trials of each study, drawn at random
PRUNERS = ("none", "median", "hyperband")


@dataclass(frozen=True)
class WorkerJob:
    """One worker of a study: a process that loads the studies by name and runs trials until each loss has
    its --trials (what the backends map, in place of a run config)."""
    index: int

    @property
    def run_id(self) -> str:
        return f"tune-worker-{self.index}"


# ---- the studies -------------------------------------------------------------------------------------------
def journal_path(args) -> Path:
    return Path(args.results) / "tune" / f"{args.study}.journal"


def storage(args):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = journal_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def study_keys(args) -> list[tuple[str, int, str]]:
    return [(d, f, loss) for d in args.datasets for f in args.feat_dims for loss in args.losses]


def study_name(args, key) -> str:
    dataset, feat_dim, loss = key
    return f"{args.study}/{dataset}/d{feat_dim}/{loss}"


def base_config(args, key) -> RunConfig:
    """A trial's recipe: the reference recipe (with the model's own weight decay, see models/), the study's
    budget, the fair protocol, a constant lr (the plateau schedule's patience at least the epochs, so that no
    schedule needs a held-out split)."""
    dataset, feat_dim, loss = key
    return RunConfig(dataset=dataset, loss=loss, feat_dim=feat_dim, model=args.model, epochs=args.epochs,
                     train_size=args.train_size, center_rule=args.center_rule, protocol="fair", eval_train_size=0,
                     loss_options=args.fixed.get(loss, {}), lr_patience=max(RunConfig.lr_patience, args.epochs),
                     weight_decay=model_recipe(args.model).get("weight_decay", RunConfig.weight_decay))


def common_identity(args) -> dict:
    """What every study of one name shares; a study of that name with anything else is refused."""
    return {"losses": list(args.losses), "datasets": list(args.datasets), "feat_dims": list(args.feat_dims),
            "model": args.model, "center_rule": args.center_rule, "epochs": args.epochs,
            "train_size": args.train_size, "val_size": args.val_size, "pruner": args.pruner, "seed": args.seed,
            "startup_trials": N_STARTUP, "trial_code": modules_fingerprint("experiments.trial")}


def identity(args, key) -> dict:
    loss = key[2]
    return {**common_identity(args), "space": describe_space(loss, args.center_rule, args.fixed.get(loss)),
            "recipe": base_config(args, key).to_dict() | {"dataset": key[0]},
            "code": code_fingerprint(loss, args.model)}


class StudyMismatch(ValueError):
    """A study of this name exists with another identity."""


def differences(old: dict, new: dict) -> str:
    return ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def make_sampler(args, trials_before: int = 0, worker: int = 0):
    """The TPE sampler of a process that opens a study holding ``trials_before`` trials, as worker ``worker``:
    seeded with --seed for the first worker of a new study, otherwise with a seed drawn from all three, so
    that a resumed study or a second worker does not draw the first worker's points again."""
    import numpy as np
    import optuna
    seed = args.seed if (trials_before, worker) == (0, 0) else \
        int(np.random.SeedSequence([args.seed, trials_before, worker]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP)


def make_pruner(args):
    import optuna
    if args.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs)
    return optuna.pruners.NopPruner()


def open_studies(args, create: bool = False) -> dict:
    """``{key: optuna.Study}``; with ``create`` (the driver), made where missing and checked against the
    identity of every study of this name (StudyMismatch names what differs)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage(args)
    if create:
        ours = common_identity(args)
        for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
            theirs = summary.user_attrs.get("identity")
            if summary.study_name.startswith(f"{args.study}/") and theirs is not None:
                common = {k: theirs.get(k) for k in ours}
                if common != ours:
                    raise StudyMismatch(f"study {args.study!r} exists in {journal_path(args)} with "
                                        f"{differences(common, ours)}; give another --study")
    studies = {}
    for key in study_keys(args):
        study = optuna.create_study(storage=store, study_name=study_name(args, key), direction="maximize",
                                    sampler=make_sampler(args), pruner=make_pruner(args), load_if_exists=True)
        if create:
            theirs, ours = study.user_attrs.get("identity"), identity(args, key)
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


def ask_lock(args) -> FileLock:
    """Held while a trial is asked for (so that the budget is exact) and while dead trials are recovered."""
    return FileLock(str(journal_path(args).with_suffix(".ask.lock")))  # not .journal.lock: Optuna's own


def claim_of(args, study, number: int) -> Claim:
    return Claim(args.out, f"tune-{study.study_name.replace('/', '-')}-{number}")


def recover_dead_trials(args, studies: dict, log=print) -> int:
    """Mark every running trial whose worker is gone (no live claim) failed and enqueue its point again."""
    from optuna.trial import TrialState
    recovered = 0
    with ask_lock(args):
        for study in studies.values():
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                claim = claim_of(args, study, trial.number)
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
def next_trial(args, studies: dict):
    """``(key, study, trial, its claim)`` of the loss with the fewest trials counted, or None when every loss
    has its --trials (the losses advance together, so a stopped study leaves them level)."""
    with ask_lock(args):
        key = min(studies, key=lambda k: counted(studies[k]))
        study = studies[key]
        if counted(study) >= args.trials:
            return None
        trial = study.ask()
        claim = claim_of(args, study, trial.number)
        claim.take()
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return key, study, trial, claim


def log_hparams(args, key, trial_number: int, params: dict, value: float, state: str) -> None:
    """The trial's point and score in TensorBoard's hparams view (``tensorboard --logdir OUT/tune/STUDY``)."""
    from torch.utils.tensorboard import SummaryWriter
    dataset, feat_dim, loss = key
    with SummaryWriter(str(Path(args.out) / "tune" / args.study / "hparams")) as writer:
        writer.add_hparams({"loss": loss, "dataset": dataset, "feat_dim": feat_dim, **params},
                           {"hparam/best_val_acc": value}, run_name=f"{loss}-{dataset}-d{feat_dim}-trial{trial_number}")
        writer.add_text("state", state)


def run_one_trial(args, key, study, trial, data, device, stop: Stop) -> str:
    """Train and score one trial; tell the study. Returns a line for the log."""
    import optuna
    from optuna.trial import TrialState
    params = suggest(trial, search_space(key[2], args.center_rule, args.fixed.get(key[2])))
    cfg = trial_config(base_config(args, key), params)
    point = " ".join(f"{k}={v:.3g}" for k, v in params.items())
    head = f"{study.study_name} trial {trial.number}"
    t0 = time.perf_counter()
    try:
        result = run_trial(trial, cfg, data, device, Path(args.out) / "tune" / args.study / cfg.run_id,
                           stop, progress=not args.no_progress, log=tqdm.write)
    except optuna.TrialPruned:
        epochs = len(study.get_trials(deepcopy=False)[trial.number].intermediate_values)
        trial.set_user_attr("epochs_done", epochs)
        trial.set_user_attr("wall_s", round(time.perf_counter() - t0, 2))
        study.tell(trial, state=TrialState.PRUNED)
        log_hparams(args, key, trial.number, params, 0.0, "pruned")
        return f"{head}: {point}: pruned after epoch {epochs}"
    except BaseException:  # stopped, interrupted or failed: its point is trained again next time
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
        raise
    value = objective(result)
    trial.set_user_attr("epochs_done", result["epochs_done"])
    trial.set_user_attr("wall_s", result["wall_s"])
    trial.set_user_attr("diverged_epoch", result["diverged_epoch"])
    study.tell(trial, value)
    log_hparams(args, key, trial.number, params, value, result["status"])
    status = f"diverged at epoch {result['diverged_epoch']}: 0" if result["status"] == "diverged" else f"{value:.4f}"
    return f"{head}: {point}: best val acc {status} ({result['wall_s']:.0f} s)"


def work(job: WorkerJob, args, threads: int | None, stop: Stop, estimate_s=None) -> Outcome:
    """A worker: trials until every loss has --trials, or until told to stop (then its running trial stops
    after its current epoch and is enqueued again; the same command resumes it from its checkpoint)."""
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(args.device)
    studies = open_studies(args)
    for study in studies.values():
        study.sampler = make_sampler(args, len(study.trials), job.index)
    data = {}
    done = 0
    try:
        while not stop():
            picked = next_trial(args, studies)
            if picked is None:
                break
            key, study, trial, claim = picked
            try:
                if key[0] not in data:
                    data.clear()
                    data[key[0]] = TrialData(get_spec(key[0]), args.data_root, device, args.train_size, args.val_size)
                tqdm.write(run_one_trial(args, key, study, trial, data[key[0]], device, stop))
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
def reproduction_configs(args, studies: dict) -> dict:
    """``{key: [configs]}``: each study's best point, on the training images with the validation images added
    back, tested on the test split, over --reproductions seeds."""
    out = {}
    for key, study in studies.items():
        best = best_trial(study)
        if best is None:
            continue
        cfg = trial_config(base_config(args, key), best.params)
        out[key] = [RunConfig.from_dict({**cfg.to_dict(), "train_size": args.train_size + args.val_size,
                                         "test_size": args.test_size, "protocol": "reference", "seed": seed})
                    for seed in range(args.reproductions)]
    return out


def best_trial(study):
    """The finished trial of the highest score (the first of equals); None when none scored above 0."""
    from optuna.trial import TrialState
    finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value > 0]
    return max(finished, key=lambda t: (t.value, -t.number)) if finished else None


def write_summary(args, studies: dict, reproductions: dict, wall_s: float) -> Path:
    """RESULTS/tune/STUDY.json: the study's identity, every trial, each best point and its reproductions."""
    from optuna.trial import TrialState
    path = Path(args.results) / "tune" / f"{args.study}.json"
    previous = report.tuned.read_summary(path)
    entries = []
    for key, study in studies.items():
        trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                   "epochs_done": t.user_attrs.get("epochs_done"), "wall_s": t.user_attrs.get("wall_s"),
                   "retry_of": t.user_attrs.get("retry_of")}
                  for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
        best = best_trial(study)
        entries.append({"dataset": key[0], "feat_dim": key[1], "loss": key[2],
                        "space": describe_space(key[2], args.center_rule, args.fixed.get(key[2])),
                        "trials": trials, "best": None if best is None else
                        {"number": best.number, "value": best.value, "params": best.params},
                        "reproductions": [c.run_id for c in reproductions.get(key, [])]})
    atomic_write_json(path, {
        "study": args.study, "identity": common_identity(args), "trials_per_loss": args.trials,
        "reproductions": args.reproductions, "test_size": args.test_size,
        "wall_s": round((previous or {}).get("wall_s", 0) + wall_s, 1),
        "command": "python -m experiments.tune " + " ".join(args.argv), "studies": entries})
    return path


# ---- the command ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__,
                                     formatter_class=HelpFormatter, epilog=spaces_epilog())
    parser.add_argument("--study", default="tuned", help="the study's name (RESULTS/tune/NAME.journal)")
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=["xent", "cent", "standalone"],
                        help="the losses compared, each with its own study")
    parser.add_argument("--datasets", nargs="+", choices=list(SPECS), default=["fashion-mnist"], help=DATASET_HELP)
    parser.add_argument("--feat-dims", nargs="+", type=positive_int, default=[2], help="feature dimensions")
    parser.add_argument("--trials", type=positive_int, default=20,
                        help="trials per loss (the same for every loss; a failed trial's point is trained again and "
                             "counted once; more trials later continue the study)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="epochs of every trial and reproduction")
    parser.add_argument("--train-size", type=positive_int, default=4096, help="training images of every trial")
    parser.add_argument("--val-size", type=positive_int, default=2000,
                        help="validation images, held out of the training split beside the training images "
                             "(stratified; the same for every trial and loss); the reproductions train on both")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help="test images of the reproductions (default: the whole split); trials never see any")
    parser.add_argument("--model", choices=list(MODELS), default="resnet", help="the model")
    parser.add_argument("--center-rule", choices=["joint", "separate"], default="joint",
                        help="how centers are updated; separate adds the center lr to every space")
    parser.add_argument("--set", action="append", default=[], metavar="LOSS.OPTION=VALUE",
                        help="fix one option of one loss instead of searching it, e.g. standalone.margin=10; "
                             "repeatable")
    parser.add_argument("--pruner", choices=PRUNERS, default="none",
                        help="stop hopeless trials early on their per-epoch validation accuracy: median (Optuna's "
                             "MedianPruner after 5 trials), hyperband; pruned trials count toward --trials")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help=f"seed of every study's TPE sampler (its first {N_STARTUP} trials random); results "
                             "follow from it only with --workers 1 and no interruption")
    parser.add_argument("--reproductions", type=non_negative_int, default=5,
                        help="seeds each loss's best point is trained again with, then tested")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="trials at once, each worker a process of the backend that loads the study by name; "
                             "with more than 1 the trials' order, so the search, depends on timing")
    add_backend_arguments(parser)
    parser.add_argument("--max-minutes", type=positive_float,
                        help="time budget: no trial or reproduction starts after it, running ones stop after their "
                             "current epoch (enqueued again); the same command continues")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="the ledger folder: the reproductions' rows, and tune/STUDY.journal and .json")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="where run directories go (trials under "
                                                                      "OUT/tune/STUDY/)")
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="where the datasets live (env SUITE_DATA)")
    add_offline_flag(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-report", action="store_true", help="do not rebuild the report at the end")
    return parser


def spaces_epilog() -> str:
    lines = ["search spaces (shared: lr; under --center-rule separate also center_lr):"]
    lines += [f"  {loss}: {describe_space(loss, 'joint')}" for loss in LOSSES]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    args.fixed = {}
    try:
        for text in args.set:
            loss, option, values = parse_set(text)
            if loss not in args.losses:
                raise SweepError(f"--set {text!r}: {loss} is not among --losses {' '.join(args.losses)}")
            if len(values) != 1:
                raise SweepError(f"--set {text!r}: give one value (tuning searches; --set fixes)")
            args.fixed.setdefault(loss, {})[option] = values[0]
    except SweepError as e:
        parser.error(str(e))
    args.runs_per_gpu = args.workers
    args.no_graph, args.compile = False, False  # the reproductions train as the grid's runs do by default
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import optuna  # noqa: F401
    except ImportError:
        print(f"error: tuning needs Optuna, which {sys.executable} lacks: pip install 'optuna>=4.0' (requirements.txt "
              "has it)", file=sys.stderr)
        return 2
    outputs = report.Outputs.for_ledger(args.results)
    for problem in (unwritable(args.out), unwritable(Path(args.results) / "tune"),
                    None if args.no_report else outputs.problem()):
        if problem is not None:
            print(f"error: {problem}; nothing was run", file=sys.stderr)
            return 2
    device = resolve_device(args.device)
    try:
        for dataset in args.datasets:  # the data every trial needs, checked before any trial
            TrialData(get_spec(dataset), args.data_root, torch.device("cpu"), args.train_size, args.val_size)
        studies = open_studies(args, create=True)
    except (DataError, StudyMismatch) as e:
        print(f"error: {e}; nothing was run", file=sys.stderr)
        return 2
    recover_dead_trials(args, studies)
    stop = Stop(Path(args.out) / f".stop-tune-{os.getpid()}-{time.time_ns()}",
                time.time() + 60 * args.max_minutes if args.max_minutes else None)
    previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: stop.file.touch())
    backend = build_backend(args, device)
    t0 = time.time()
    print(f"tune: study {args.study!r}: {len(studies)} studies x {args.trials} trials, {args.epochs} epochs on "
          f"{args.train_size} images, validated on {args.val_size} ({journal_path(args)})")
    reproductions = {}
    try:
        for outcome in backend.run([WorkerJob(i) for i in range(args.workers)], args, stop, lambda _: None, task=work):
            if outcome.error:
                print(f"tune: worker {outcome.cfg.index} failed: {outcome.error}", file=sys.stderr)
        searched = all(counted(s) >= args.trials and not running(s) for s in studies.values())  # live: read from the journal
        if searched and args.reproductions:
            reproductions = reproduce(args, studies, backend, stop, device)
    except KeyboardInterrupt:
        print("tune: interrupted; each running trial is enqueued again and resumes from its last epoch, finished "
              "trials and reproductions are kept: the same command continues", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        stop.file.unlink(missing_ok=True)
        write_summary(args, studies, reproductions, time.time() - t0)
    left = sum(max(0, args.trials - counted(s)) for s in studies.values())
    if left:
        print(f"tune: stopped with {left} trials left; the same command continues the study")
    if not args.no_report:
        report.build(outputs, args.out)
        print(f"report: {outputs.results / 'table.md'}"
              + (f", {outputs.readme} sections updated" if outputs.readme else ""))
    return 0


def running(study) -> bool:
    from optuna.trial import TrialState
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def reproduce(args, studies: dict, backend, stop: Stop, device) -> dict:
    """Train each study's best point over the seeds (the grid's runs: claims, ledger) and mark their rows."""
    plan = reproduction_configs(args, studies)
    configs = [c for cs in plan.values() for c in cs]
    todo = [c for c in configs if not is_done(args.results, c.run_id, code_fingerprint(c.loss, c.model))]
    print(f"tune: reproducing the best points: {len(configs)} runs, {len(todo)} to train")
    for outcome in backend.run(todo, args, stop, lambda _: None, task=train_run):
        if outcome.stopped is None and outcome.skipped is None and not outcome.recorded:
            record_outcome(args, outcome, device_name(device))
    recorded = {r["run_id"] for r in read_rows(Path(args.results) / "runs.csv")}
    mark_tuned(args.results, {c.run_id for c in configs} & recorded, args.study)
    return plan


if __name__ == "__main__":
    sys.exit(main())
