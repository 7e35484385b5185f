"""What a slot says when it ends: what departed from the paper grid, the cells recorded per seed, the speed
measured, the summary's text and the exact commands for the next slot."""

from __future__ import annotations

import shlex
from pathlib import Path

from experiments.slot import PAPER, datasets_option, ledger_options


def departures(args) -> list[str]:
    """The options that make this grid other than the paper's (its runs are no cells of the paper table)."""
    out = [
        f"{flag} {' '.join(map(str, value))}"
        for flag, key in (
            ("--datasets", "datasets"),
            ("--feat-dims", "feat_dims"),
            ("--losses", "losses"),
        )
        if (value := getattr(args, key)) != PAPER[key]
    ]
    return out + [
        f"{flag} {value}"
        for flag, value in (
            ("--epochs", args.epochs),
            ("--train-size", args.train_size),
            ("--test-size", args.test_size),
        )
        if value is not None
    ]


def measured(configs, before: dict, runs: Path) -> dict:
    """s/epoch and training img/s (an epoch's images over its seconds, evaluation included) of the epochs the
    run folder gained during the slot (by any runner on it), medians over them."""
    import csv

    from experiments.datasets.specs import get_spec

    per_epoch, rates = [], []
    for cfg in configs:
        try:
            with open(runs / cfg.run_id / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))[before.get(cfg.run_id, 0) :]
        except OSError:
            continue
        images = cfg.train_size or get_spec(cfg.dataset).train_size
        for row in rows:
            per_epoch.append(float(row["seconds"]))
            rates.append(images // cfg.batch_size * cfg.batch_size / float(row["seconds"]))
    median = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
    return {
        "epochs_trained": len(per_epoch),
        "s_per_epoch": median(per_epoch),
        "img_s_per_run": median(rates),
    }


def cells(configs, results: Path, runs: Path) -> dict:
    """Per seed: cells recorded (finished or diverged by the code as it is now) of the planned ones; the epochs
    done of every planned run that is unfinished in the run folder."""
    from experiments.ledger.fingerprint import code_fingerprint
    from experiments.ledger.rows import epochs_on_disk, is_done
    from experiments.runners.bundle import unfinished_runs

    out = {"per_seed": {}, "unfinished": {}}
    epochs = {c.run_id: c.epochs for c in configs}
    for cfg in configs:
        seed = out["per_seed"].setdefault(str(cfg.seed), {"done": 0, "planned": 0})
        seed["planned"] += 1
        seed["done"] += is_done(results, cfg.run_id, code_fingerprint(cfg.loss, cfg.model))
    for run_id in unfinished_runs(runs):
        if run_id in epochs:
            out["unfinished"][run_id] = f"{epochs_on_disk(runs / run_id)}/{epochs[run_id]}"
    return out


def summary_text(s: dict) -> str:
    check, speed = s["self_check"], s.get("measured") or {}
    rates = ", ".join(
        f"{mode} {check[f'{mode}_img_s']:,.0f} img/s"
        for mode in ("graph", "eager")
        if check.get(f"{mode}_img_s")
    )
    lines = [
        f"slot on {s['device']}: {s['minutes']:g} min budget, {s['used_s'] / 60:.1f} min used, exit code "
        f"{s['exit_code']}",
        f"  self-check: {check['verdict'].upper()}: {check['reason']}"
        + (f" ({rates})" if rates else ""),
        f"  grid: {s['steps']}, "
        + (f"exit code {s['grid_exit']}" if s["grid_exit"] is not None else "not run")
        + (f"; departs from the paper grid in {', '.join(s['departs'])}" if s["departs"] else ""),
    ]
    lines += [f"  problem: {p}" for p in s["problems"]]
    if s.get("cells"):
        lines += [
            "  cells recorded: "
            + "; ".join(
                f"seed {seed} {c['done']}/{c['planned']}"
                for seed, c in s["cells"]["per_seed"].items()
            ),
            "  unfinished (epochs done): "
            + (", ".join(f"{r} {e}" for r, e in s["cells"]["unfinished"].items()) or "none"),
        ]
    lines += [
        f"  left out of the bundle (trains again from scratch): {r} ({e} epochs)"
        for r, e in s.get("left_out", {}).items()
    ]
    if speed:
        lines.append(
            "  measured: "
            + (
                f"{speed['s_per_epoch']:.2f} s/epoch, {speed['img_s_per_run']:,.0f} img/s per run "
                f"(training, epoch incl. evaluation; medians of {speed['epochs_trained']} "
                "epochs in the run folder)"
                if speed["epochs_trained"]
                else "no epoch trained"
            )
        )
    lines.append(f"  bundle: {' '.join(s['bundle']) or 'none'}")
    lines += [f"  next: {line}" for line in s["next"]]
    return "\n".join(lines)


def next_commands(
    args, argv: list[str], bundle_files: list[str], all_done: bool, refused: bool
) -> list[str]:
    """What to run here with the returned files (into the ledger this slot trained for), then in the next slot:
    the same command, ``--out $OUT``."""
    if refused:
        return ["fix what the problem line names, then run the same command again"]
    names = " ".join(Path(p).name for p in bundle_files)
    ledger = "".join(f" {part}" for part in ledger_options(args))
    lines = [
        f"here, with the returned files: ./suite bundle import {names}{ledger}"
        if names
        else "here: nothing to import (no bundle was written)"
    ]
    if all_done:
        return lines + ["every planned cell is recorded: commit results/, imgs/ and README.md"]
    again, skip = [], False
    for arg in argv:
        if skip:
            again.append("$OUT")
            skip = False
        elif arg == "--out":
            again.append(arg)
            skip = True
        elif arg.startswith("--out="):
            again.append("--out=$OUT")
        else:
            again.append(shlex.quote(arg))
    return lines + [
        f"here: ./suite slot --pack {shlex.quote(str(args.carry))}"
        + "".join(f" {part}" for part in datasets_option(args))
        + ledger,
        "in the next slot: python3 -m experiments.slot " + " ".join(again),
    ]
