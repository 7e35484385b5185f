"""What a grid trains and when it stops: runs recorded already (by this code or other), the datasets that
can be used, a time budget, and an estimate of the seconds a run still needs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from centersuite.losses import LOSSES
from centersuite.models import MODELS
from experiments.datasets.sources import prepare
from experiments.datasets.specs import DataError
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import DONE, config_of, epochs_on_disk
from experiments.runners.backends import Stop


def recorded_runs(rows: list[dict], reuse_stale: bool) -> tuple[set[str], set[str]]:
    """``(done, stale)`` run ids: recorded finished or diverged by the code as it is now (by any code under
    ``reuse_stale``), and recorded only by other code."""
    current = {
        (r["loss"], r["model"]): code_fingerprint(r["loss"], r["model"])
        for r in rows
        if r["loss"] in LOSSES and r["model"] in MODELS
    }
    done, stale = set(), set()
    for r in rows:
        if r["status"] not in DONE or r.get("superseded_by"):
            continue
        fresh = r.get("code_fingerprint") == current.get((r["loss"], r["model"]))
        (done if fresh or reuse_stale else stale).add(r["run_id"])
    return done, stale - done


def stale_configs(rows: list[dict]) -> list:
    """The configs of the ledger's current rows recorded by other code (for --retrain-stale), but for a tuning
    study's reproductions: ``tune --refresh`` trains those again, with the study."""
    _, stale = recorded_runs(rows, reuse_stale=False)
    configs = {
        r["run_id"]: config_of(r) for r in rows if r["run_id"] in stale and not r.get("tuned_by")
    }
    return [c for c in configs.values() if c is not None]


def ready_datasets(names: list[str], root: Path) -> list[str]:
    """The datasets that can be trained on; each other one is named with its real reason."""
    ready = []
    for name in names:
        try:
            prepare(name, root)
            ready.append(name)
        except DataError as e:
            print(f"skipping {e}", file=sys.stderr)
    return ready


class Budget:
    """When the runs are told to stop: ``--max-minutes`` from now, or at once on SIGTERM (what SLURM and
    preemption send). The stop file lives in the run folder, which every worker sees."""

    def __init__(self, max_minutes: float | None, out: Path):
        deadline = time.time() + 60 * max_minutes if max_minutes else None
        self.stop = Stop(Path(out) / f".stop-{os.getpid()}-{time.time_ns()}", deadline)
        self.terminated = False

    def on_sigterm(self, *_):
        self.terminated = True
        self.stop.file.touch()
        print(
            "grid: SIGTERM: running runs stop after their current epoch",
            file=sys.stderr,
            flush=True,
        )

    def close(self):
        self.stop.file.unlink(missing_ok=True)


def kind_of(cfg) -> tuple:
    """What an epoch's cost depends on: the dataset, the feature dimension, the model and the subset sizes."""
    return cfg.dataset, int(cfg.feat_dim), cfg.model, cfg.train_size, cfg.test_size


def epoch_seconds(rows: list[dict], device: str) -> dict[tuple, list[float]]:
    """Seconds per epoch of the finished runs recorded on ``device``, by their kind (``kind_of``)."""
    out: dict[tuple, list[float]] = {}
    for r in rows:
        if (
            r["status"] != "finished"
            or r.get("device") != device
            or not r.get("wall_s")
            or int(r.get("epochs_done") or 0) <= 0
        ):
            continue
        sizes = [int(r[k]) if r.get(k) else None for k in ("train_size", "test_size")]
        kind = (r["dataset"], int(r["feat_dim"]), r.get("model") or "resnet", *sizes)
        out.setdefault(kind, []).append(float(r["wall_s"]) / int(r["epochs_done"]))
    return out


def epochs_to_resume(cfg, run_dir: Path) -> int:
    """Epochs of ``cfg`` a grid or train resumes from ``run_dir``: those it checkpointed, or 0 where the code
    that trained them is not the code as it is now (the trainer sets such a directory aside and starts afresh,
    engine/records.py)."""
    from experiments.engine.records import run_fingerprint

    trained_by = run_fingerprint(run_dir)
    if trained_by is not None and trained_by != code_fingerprint(cfg.loss, cfg.model):
        return 0
    return epochs_on_disk(run_dir)


def estimate_seconds(cfg, run_dir: Path, rows: list[dict], device: str) -> float | None:
    """Seconds left for ``cfg``: its epochs to go times the median seconds per epoch of the finished runs of its
    kind on this device (None when there is none yet)."""
    rates = sorted(epoch_seconds(rows, device).get(kind_of(cfg), []))
    if not rates:
        return None
    return rates[len(rates) // 2] * (cfg.epochs - epochs_to_resume(cfg, run_dir))


def slowest_epoch_seconds(configs: list, rows: list[dict], device: str) -> float | None:
    """The longest epoch recorded on ``device`` of any kind among ``configs`` (what a budget must leave for the
    epoch in flight); None when none of their kinds has a finished run here."""
    known = epoch_seconds(rows, device)
    seen = [max(known[kind]) for kind in {kind_of(c) for c in configs} if kind in known]
    return max(seen) if seen else None


# What a CPU thread does when no run of a kind is recorded on this device yet (measured by the bench on one
# thread of a 2-core AVX-512 machine: the reference ResNet trains about 350 and embeds about 1,000 Fashion-MNIST
# images a second; LeNet++ about two thirds of that; 16 x 16 images cost a third of 28 x 28 ones, 32 x 32 color
# images four times as much). An estimate, said as one: the ledger's own runs replace it as soon as they exist.
TRAIN_IMAGES_PER_THREAD_S = {"resnet": 350.0, "lenet++": 230.0}
EMBED_SPEEDUP = 3.0  # an image embedded (forward, no gradient) costs about a third of one trained
RUN_OVERHEAD_S = 20.0  # loading the data, building the model, the first batches


def images_of(cfg) -> tuple[int, int]:
    """``(trained, embedded)`` images of the whole run: its epochs' training batches, and every evaluation's
    images (per epoch, as its protocol evaluates, and the final one: test split, training subset, OOD set)."""
    from experiments.datasets.specs import get_spec
    from experiments.engine.protocol import protocol_of

    spec = get_spec(cfg.dataset)
    train = cfg.train_size or spec.train_size
    test = cfg.test_size or spec.test_size
    protocol = protocol_of(cfg.protocol)
    per_epoch = {"test": test, "val": round(train * protocol.val_fraction), None: 0}[
        protocol.selection
    ]
    per_epoch += min(cfg.eval_train_size, train) if protocol.selection or cfg.feat_dim == 2 else 0
    final = test + min(10000, train) + test
    return cfg.epochs * train, cfg.epochs * per_epoch + final


def rate_seconds(cfg, threads: int) -> float:
    """The seconds a whole run of ``cfg`` takes on ``threads`` CPU threads, from the measured rates above."""
    from experiments.datasets.specs import get_spec

    spec = get_spec(cfg.dataset)
    pixels = spec.in_channels * spec.image_size**2 / 784
    rate = TRAIN_IMAGES_PER_THREAD_S.get(cfg.model, 300.0) * max(threads, 1) ** 0.8 / pixels
    trained, embedded = images_of(cfg)
    return RUN_OVERHEAD_S + trained / rate + embedded / (EMBED_SPEEDUP * rate)


def grid_estimate(
    configs, rows: list[dict], out: Path, device: str, threads: int, runs_at_once: int
):
    """``(seconds, how)``: the wall time of training ``configs`` here, ``runs_at_once`` side by side: each run's
    epochs to go times its kind's recorded seconds per epoch on this device, else (a CPU) the measured rates;
    None where neither exists (a GPU with no run of the kind recorded yet)."""
    total, measured, rated = 0.0, 0, 0
    for cfg in configs:
        seconds = estimate_seconds(cfg, out / cfg.run_id, rows, device)
        if seconds is not None:
            measured += 1
        elif device.startswith("cpu"):
            done = epochs_to_resume(cfg, out / cfg.run_id)
            seconds = rate_seconds(cfg, threads) * (cfg.epochs - done) / cfg.epochs
            rated += 1
        else:
            return None, "no run of these kinds is recorded on this device yet"
        total += seconds
    parts = [f"{measured} from the runs recorded here"] if measured else []
    parts += [f"{rated} from a CPU thread's measured rate"] if rated else []
    return total / max(1, runs_at_once), ", ".join(parts)
