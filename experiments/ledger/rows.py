"""The recorded results: ``results/runs.csv`` (one row per run) and
``results/epochs.csv`` (one row per run and epoch, for learning curves).
Both are rewritten atomically, keyed by run id and code fingerprint, under a
file lock (``.ledger.lock`` beside them), so any number of processes may
record at once and no row is ever lost or doubled.

A run recorded again by other code (another fingerprint, see
experiments/ledger/fingerprint.py) does not erase its old row: the old row stays,
its ``superseded_by`` naming the fingerprint of the newer one, and the
report leaves it out."""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from centersuite.eval.ood import METRICS as OOD_METRICS
from centersuite.eval.ood import SCORES as OOD_SCORES
from centersuite.losses import LOSSES, loss_options
from experiments.engine.config import ADDED_LATER, RunConfig, options_added_later
from experiments.engine.io import atomic_write_csv
from experiments.ledger.fingerprint import code_fingerprint

# the config's columns: the ledger's first order, then every field of RunConfig added since (derived)
FIRST_COLUMNS = ["dataset", "loss", "feat_dim", "seed", "model", "loss_options"]
CONFIG_COLUMNS = FIRST_COLUMNS + [f.name for f in fields(RunConfig) if f.name not in FIRST_COLUMNS]
ACCURACIES = [
    f"{split}_acc{rule}"
    for split in ("test", "val")
    for rule in ("", "_argmax", "_center", "_class_mean")
]
RUN_COLUMNS = (
    [
        "run_id",
        "group_id",
        "status",
        "error",
        "headline_rule",
        *CONFIG_COLUMNS,
        "train_images",
        "test_images",
        "epochs_done",
        "diverged_epoch",
        "best_epoch",
        "selected_epoch",
    ]
    + [f"{w}_{m}" for m in [*ACCURACIES, "train_acc"] for w in ("final", "best")]
    + ["final_knn1_acc", "final_map_at_r", "final_intra_inter_ratio", "final_center_gap", "health"]
    + ["ood_dataset"]
    + [f"final_ood_{s}_{m}" for s in OOD_SCORES for m in OOD_METRICS]
    + [
        "wall_s",
        "device",
        "resolved_precision",
        "torch_version",
        "code_version",
        "code_fingerprint",
        "superseded_by",
        "tuned_by",
        "recorded_at",
    ]
)
EPOCH_COLUMNS = [
    "run_id",
    "group_id",
    "code_fingerprint",
    "epoch",
    "lr",
    *ACCURACIES,
    "train_acc",
    "feature_norm",
    "center_gap",
    "center_shift",
    "seconds",
]


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def epochs_on_disk(run_dir: Path) -> int:
    """Epochs a run directory has checkpointed (rows of its metrics.csv)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return sum(1 for _ in csv.DictReader(f))
    except OSError:
        return 0


# what the trainer's resume reads from a checkpoint (engine/records.py: resume_if_interrupted)
CHECKPOINT_KEYS = frozenset(
    {
        "epoch",
        "model",
        "loss",
        "optimizer",
        "center_rule",
        "scheduler",
        "scaler",
        "best_state",
        "history",
        "generators",
    }
)


def checkpoint_problem(run_dir: Path, fingerprint: str) -> str | None:
    """Why the checkpoint a run would resume from cannot be read (truncated or corrupt: a full disk, a copy cut
    short), naming the file and the fix; None when there is none to resume or it loads. A checkpoint of other
    code, or of a finished run, is never resumed (the trainer sets such a directory aside, or returns the
    result), so it is not read."""
    import torch

    from experiments.engine.records import run_fingerprint

    run_dir = Path(run_dir)
    path = run_dir / "checkpoint.pt"
    trained_by = run_fingerprint(run_dir)
    if not path.exists() or trained_by not in (None, fingerprint):
        return None
    if (run_dir / "result.json").exists():
        return None
    fix = f"delete the folder {run_dir} (or move it aside) to train the run afresh"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises OSError, RuntimeError, EOFError or pickle's errors
        why = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else ""
        return f"the checkpoint {path} cannot be read ({type(e).__name__}: {why}); it is truncated or corrupt: {fix}"
    if not isinstance(state, dict):
        return f"the checkpoint {path} is no checkpoint of this suite's runs (it holds a {type(state).__name__}): {fix}"
    if lacks := sorted(CHECKPOINT_KEYS - set(state)):
        return f"the checkpoint {path} is no checkpoint of this suite's runs (it lacks {', '.join(lacks)}): {fix}"
    return None


def group_id(config: dict) -> str:
    """The run id without the seed: runs that differ only by seed share it."""
    return RunConfig.from_dict({**config, "seed": 0}).run_id.replace("-s0-", "-")


INT_FIELDS = tuple(f.name for f in fields(RunConfig) if str(f.type).startswith("int"))
FLOAT_FIELDS = tuple(f.name for f in fields(RunConfig) if str(f.type).startswith("float"))


def config_of(row: dict) -> RunConfig | None:
    """The run's config from its ledger row (None for a loss this version no longer has)."""
    if row["loss"] not in LOSSES:
        return None
    known = loss_options(row["loss"])
    d = {
        k: v
        for k, v in row.items()
        if k in RunConfig.__dataclass_fields__
        and k != "loss_options"
        and not (k in ADDED_LATER and v in ("", None))
    }  # a column added later is empty in older rows: its default
    for k in INT_FIELDS:
        if k in d:
            d[k] = int(float(d[k])) if d[k] not in ("", None) else None
    for k in FLOAT_FIELDS:
        if k in d:
            d[k] = float(d[k])
    if d.get("precision") == "auto":  # rows from before fp32 was the default everywhere
        d["precision"] = row.get("resolved_precision") or "fp32"
    options = {k: v for k, v in json.loads(row["loss_options"] or "{}").items() if k in known}
    # an option the row lacks was added later: the row ran with the loss's value from before
    return RunConfig.from_dict(
        {**d, "loss_options": {**options_added_later(row["loss"]), **options}}
    )


def row_from_result(result: dict) -> dict:
    config = result["config"]
    row = {k: result.get(k) for k in RUN_COLUMNS if k in result}
    row.update({k: config[k] for k in CONFIG_COLUMNS})
    row["loss_options"] = json.dumps(config["loss_options"], sort_keys=True)
    row["group_id"] = group_id(config)
    row["resolved_precision"] = result.get("precision")
    row["recorded_at"] = now()
    return row


def failed_row(config: dict, run_id: str, error: str, device: str) -> dict:
    return {
        **{k: config[k] for k in CONFIG_COLUMNS},
        "loss_options": json.dumps(config["loss_options"]),
        "run_id": run_id,
        "group_id": group_id(config),
        "status": "failed",
        "error": error[:300],
        "device": device,
        "code_fingerprint": code_fingerprint(config["loss"], config["model"]),
        "recorded_at": now(),
    }


def now() -> str:
    """The time a row is recorded: ISO 8601 in UTC, with its offset (a bundle merged across time zones keeps
    the order of what was recorded)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def recorded(row: dict) -> datetime:
    """A row's time of recording, comparable whatever zone wrote it; rows from before the offset was written
    hold the local time of the machine that recorded them, read as this machine's local time."""
    when = datetime.fromisoformat(row.get("recorded_at") or "1970-01-01T00:00:00+00:00")
    return when if when.tzinfo is not None else when.astimezone()


def key(row: dict) -> tuple[str, str]:
    """What identifies a row: the run and the code that recorded it."""
    return row["run_id"], row.get("code_fingerprint") or ""


RETIRED = "study "  # superseded_by of a tuning study's reproduction that a later run of the study replaced


def mark_superseded(runs: list[dict]) -> list[dict]:
    """Per run id, the most recently recorded row is current; every row of it with another fingerprint
    gets ``superseded_by`` that row's fingerprint (a row is never dropped). A row a study retired stays so."""
    latest = {}
    for row in runs:
        if row["run_id"] not in latest or recorded(row) >= recorded(latest[row["run_id"]]):
            latest[row["run_id"]] = row
    for row in runs:
        current = latest[row["run_id"]]
        if (row.get("superseded_by") or "").startswith(RETIRED):
            continue
        row["superseded_by"] = (
            "" if key(row) == key(current) else (current.get("code_fingerprint") or "unknown")
        )
    return runs


def start_ledger(results_dir: Path) -> None:
    """Write an empty ledger (the two CSVs with their columns) where there is none yet."""
    with ledger_lock(results_dir):
        for name, columns in (("epochs.csv", EPOCH_COLUMNS), ("runs.csv", RUN_COLUMNS)):
            if not (Path(results_dir) / name).exists():
                atomic_write_csv(Path(results_dir) / name, [], columns)


def ledger_lock(results_dir: Path) -> FileLock:
    """The lock every read-modify-write of a ledger holds."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(results_dir) / ".ledger.lock"))


def record(results_dir: Path, row: dict, epoch_rows: list[dict]) -> None:
    """Add or replace the run's rows in runs.csv and epochs.csv."""
    runs_path, epochs_path = Path(results_dir) / "runs.csv", Path(results_dir) / "epochs.csv"
    with ledger_lock(results_dir):
        runs = mark_superseded([r for r in read_rows(runs_path) if key(r) != key(row)] + [row])
        epochs = [r for r in read_rows(epochs_path) if key(r) != key(row)]
        epochs += [
            {
                **e,
                "run_id": row["run_id"],
                "group_id": row["group_id"],
                "code_fingerprint": row.get("code_fingerprint") or "",
            }
            for e in epoch_rows
        ]
        atomic_write_csv(epochs_path, epochs, EPOCH_COLUMNS)
        atomic_write_csv(
            runs_path, runs, RUN_COLUMNS
        )  # last: a row in runs.csv means the run is done


def mark_tuned(results_dir: Path, run_ids: set[str], study: str) -> None:
    """Name the tuning study in the ``tuned_by`` column of the current rows of ``run_ids`` (the runs that
    reproduce its winners now); its earlier reproductions that are not among them (another protocol, other
    winners) are retired: ``superseded_by`` says by which study, and the report leaves them out."""
    runs_path = Path(results_dir) / "runs.csv"
    with ledger_lock(results_dir):
        runs = read_rows(runs_path)
        for row in runs:
            if row["run_id"] in run_ids and not row.get("superseded_by"):
                row["tuned_by"] = study
            elif (
                row.get("tuned_by") == study
                and row["run_id"] not in run_ids
                and not row.get("superseded_by")
            ):
                row["superseded_by"] = f"{RETIRED}{study} run again"
        atomic_write_csv(runs_path, runs, RUN_COLUMNS)


def is_done(results_dir: Path, run_id: str, fingerprint: str | None) -> bool:
    """Whether the run is recorded finished or diverged by the code of ``fingerprint`` (None: by any code)."""
    return any(
        r["run_id"] == run_id
        and r["status"] in DONE
        and fingerprint in (None, r.get("code_fingerprint"))
        for r in read_rows(Path(results_dir) / "runs.csv")
    )


DONE = ("finished", "diverged")


def merge(results_dir: Path, incoming: list[dict], incoming_epochs: list[dict]) -> tuple[int, int]:
    """Merge another ledger's rows into this one, keyed by run id and fingerprint: a row recorded here
    as finished or diverged is kept; otherwise the incoming row (and its epochs) replaces it. Rows of
    one run by other code are kept, the older superseded. ``(added, replaced)``."""
    runs_path, epochs_path = Path(results_dir) / "runs.csv", Path(results_dir) / "epochs.csv"
    with ledger_lock(results_dir):
        runs = {key(r): r for r in read_rows(runs_path)}
        taken, added = set(), 0
        for row in incoming:
            here = runs.get(key(row))
            if here is not None and (
                here["status"] in DONE
                or (row["status"] not in DONE and recorded(row) < recorded(here))
            ):
                continue
            added += here is None
            runs[key(row)] = row
            taken.add(key(row))
        epochs = [e for e in read_rows(epochs_path) if key(e) not in taken]
        epochs += [e for e in incoming_epochs if key(e) in taken]
        atomic_write_csv(epochs_path, epochs, EPOCH_COLUMNS)
        atomic_write_csv(runs_path, mark_superseded(list(runs.values())), RUN_COLUMNS)
        return added, len(taken) - added
