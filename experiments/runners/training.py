"""Train a planned grid: the runs not yet recorded, through a backend, within a time budget, each recorded in
the ledger as it ends. ``run_grid`` is what the grid command and the GPU slot call."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from experiments.engine.device import device_name
from experiments.ledger.rows import read_rows
from experiments.runners.backends import RunSettings, record_outcome
from experiments.runners.plan import Budget, estimate_seconds, recorded_runs
from experiments.text import plural


@dataclass
class GridOutcome:
    """How a grid ended: ``planned`` runs, ``recorded_before`` (already in the ledger), ``trained`` here,
    ``elsewhere`` (held or recorded by another runner), ``left`` (not recorded: stopped or not started),
    ``failed`` (run ids recorded as failed), ``terminated`` (SIGTERM), ``interrupted`` (Ctrl-C)."""

    planned: int = 0
    recorded_before: int = 0
    trained: int = 0
    elsewhere: int = 0
    left: int = 0
    failed: list[str] = field(default_factory=list)
    terminated: bool = False
    interrupted: bool = False


def run_grid(
    configs: list,
    settings: RunSettings,
    backend,
    device,
    max_minutes: float | None = None,
    fill_budget: bool = False,
) -> GridOutcome:
    """Train every config of ``configs`` that the ledger (``settings.results``) does not hold yet. With
    ``max_minutes`` no run starts that its estimate says cannot finish in time (``fill_budget``: start them
    anyway; they stop after an epoch, checkpointed) and running runs stop after their epoch when it ends;
    SIGTERM does the same. A Ctrl-C stops it after the running epochs (``interrupted``)."""
    done, stale = recorded_runs(read_rows(settings.results / "runs.csv"), settings.reuse_stale)
    todo = [c for c in configs if c.run_id not in done]
    outcome = GridOutcome(
        planned=len(configs), recorded_before=len(configs) - len(todo), left=len(todo)
    )
    retrain = sum(c.run_id in stale for c in todo)
    print(
        f"grid: {plural(len(configs), 'run')}, {outcome.recorded_before} already recorded, {len(todo)} to train "
        + (
            f"({retrain} of them recorded by other code: retrained from scratch, --reuse-stale keeps them) "
            if retrain
            else ""
        )
        + f"(ledger {settings.results})"
    )
    budget = Budget(max_minutes, settings.out)
    previous_sigterm = signal.signal(signal.SIGTERM, budget.on_sigterm)
    here = device_name(device)

    def estimate(
        cfg,
    ) -> float | None:  # the ledger is re-read: runs finished meanwhile inform the estimate
        if fill_budget:
            return None
        return estimate_seconds(
            cfg, settings.out / cfg.run_id, read_rows(settings.results / "runs.csv"), here
        )

    bar = tqdm(
        total=len(todo),
        desc="grid",
        unit=" run",
        disable=not settings.progress or not todo,  # no bar when nothing is left to train
        dynamic_ncols=True,
    )
    try:
        for ended in backend.run(todo, settings, budget.stop, estimate):
            if ended.skipped is not None:
                print(f"run {ended.cfg.run_id}: {ended.skipped}")
                outcome.elsewhere += 1
                outcome.left -= 1
            elif ended.stopped is None:
                if not ended.recorded:  # a worker that died, or a job the cluster lost
                    record_outcome(settings, ended, here)
                outcome.left -= 1
                outcome.trained += 1
                if ended.error is not None or (ended.result or {}).get("status") == "failed":
                    outcome.failed.append(ended.cfg.run_id)
            bar.set_postfix_str(ended.cfg.run_id)
            bar.update()
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous_sigterm)
        budget.close()
        outcome.terminated = budget.terminated
    if outcome.interrupted:
        print(
            f"interrupted: {plural(len(todo) - outcome.left, 'run')} recorded, {outcome.left} left (each keeps its last "
            "finished epoch); the same command resumes them",
            file=sys.stderr,
        )
        return outcome
    if outcome.elsewhere:
        print(
            f"grid: {plural(outcome.elsewhere, 'run')} held or recorded by another runner on this folder (not "
            "trained here)"
        )
    if outcome.left:
        why = "SIGTERM" if budget.terminated else "time budget"
        print(
            f"grid: stopped by the {why} with {outcome.left} runs left (checkpointed or not started); the same "
            "command resumes them"
        )
    return outcome
