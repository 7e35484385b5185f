"""The slot, there: wheels, the Python, the options, the data, the bundle, the self-check, the grid within the
budget, the export and the summary, whatever happens (a bad option, Ctrl-C, SIGTERM, a failed step)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from experiments import check_env
from experiments.slot import option_problem
from experiments.slot.console import Log, Tee
from experiments.slot.export import export
from experiments.slot.pack import carried, install_wheels
from experiments.slot.self_check import self_check
from experiments.slot.summary import cells, departures, measured, next_commands, summary_text


class Terminated(Exception):
    """SIGTERM outside the grid (the grid turns it into a stop after the current epoch)."""


def on_sigterm(*_):
    raise Terminated()


def run_slot(args, argv: list[str], t0: float) -> int:
    """The slot, from ``t0`` (epoch seconds: when the command started) to at most ``--minutes`` after it."""
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "slot.log").write_text("")
    except OSError as e:
        print(
            f"error: --out {args.out}: cannot write there ({e.strerror or type(e).__name__}); give another "
            "folder; nothing was run",
            file=sys.stderr,
        )
        return 2
    deadline = t0 + 60 * args.minutes
    log = Log(t0, args.out / "slot.log")
    problems: list[str] = []
    summary = {
        "device": "not resolved",
        "minutes": args.minutes,
        "self_check": {"verdict": "not run", "reason": ""},
        "steps": "none",
        "grid_exit": None,
        "departs": departures(args),
        "problems": problems,
        "bundle": [],
        "next": [],
        "exit_code": 0,
    }
    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary["exit_code"] = slot_steps(args, deadline, log, problems, summary)
    except KeyboardInterrupt:
        problems.append("interrupted (Ctrl-C) outside the grid; what was trained is exported")
        summary["exit_code"] = 130
    except Terminated:
        problems.append("SIGTERM outside the grid; what was trained is exported")
        summary["exit_code"] = 143
    finally:  # the export and the summary are not interrupted: a second signal waits until they are written
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        if summary["exit_code"] not in (2,) and summary.get("ready"):
            export(args, log, problems, summary)
        summary.pop("ready", None)
        cells_state = summary.get("cells", {}).get("per_seed", {})
        all_done = bool(cells_state) and all(
            c["done"] == c["planned"] for c in cells_state.values()
        )
        summary["next"] = next_commands(
            args, argv, summary["bundle"], all_done, summary["exit_code"] == 2
        )
        if problems and summary["exit_code"] == 0:
            summary["exit_code"] = 1
        summary["used_s"] = round(time.time() - t0, 1)
        text = summary_text(summary)
        print(text, flush=True)
        (args.out / "summary.txt").write_text(text + "\n")
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        signal.signal(signal.SIGTERM, previous_sigterm)
        signal.signal(signal.SIGINT, previous_sigint)
    return summary["exit_code"]


def refuse(problem: str, log: Log, problems: list[str]) -> int:
    """A problem that stops the slot before anything runs: one line on stderr, in the log and the summary."""
    problems.append(problem)
    print(f"error: {problem}", file=sys.stderr)
    with open(log.path, "a") as f:
        f.write(f"error: {problem}\n")
    return 2


def slot_steps(args, deadline: float, log: Log, problems: list[str], summary: dict) -> int:
    """Wheels, the Python, the options, the data, the bundle, the self-check, the grid; the exit code."""
    use_carry = carried(args.carry, log, problems)
    if use_carry:
        install_wheels(args.carry, log, problems)
    missing = check_env.problems(tests=False)
    if missing:
        return refuse(
            f"{sys.executable} lacks what the suite needs: {'; '.join(missing)}; carry the wheels "
            "(`./suite slot --pack`) or use another Python; nothing was run",
            log,
            problems,
        )
    if (problem := option_problem(args)) is not None:
        return refuse(problem + "; nothing was run", log, problems)
    os.environ["SUITE_OFFLINE"] = (
        "1"  # a slot's machine has no network: a missing file fails at once
    )
    import torch

    from experiments import report
    from experiments.datasets.sources import Source, ensure, from_debian_dir
    from experiments.datasets.specs import DataError, default_data_root
    from experiments.engine.device import device_name, resolve_device
    from experiments.ledger.rows import epochs_on_disk, read_rows
    from experiments.runners.backends import RunSettings, build_backend
    from experiments.runners.bundle import BundleError, import_bundle
    from experiments.runners.plan import slowest_epoch_seconds
    from experiments.runners.sweep import plan
    from experiments.runners.training import run_grid

    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        return refuse(
            f"--device {args.device}: {str(e).splitlines()[0]}; nothing was run", log, problems
        )
    summary["device"] = device_name(device)
    root = args.data_root or default_data_root()
    outputs = report.Outputs.for_ledger(args.results)
    log(
        f"slot: {args.minutes:g} min on {summary['device']} (torch {torch.__version__}); writing into {args.out}"
    )
    summary["ready"] = True  # from here on, what is trained is exported
    usable = [d for d in args.datasets if d == "synthetic"]
    for name in [d for d in args.datasets if d != "synthetic"]:
        folder = args.carry / "data" / name
        sources = [
            Source(
                f"files in {folder}", lambda spec, r, _s, d=folder: from_debian_dir(spec, r, 0, d)
            )
        ]
        try:
            ensure(name, root, sources=sources if use_carry else [], log=lambda *_: None)
            log(f"data: {name} verified in {root}")
            usable.append(name)
        except DataError as e:
            problems.append(f"data: {e}")
            log(problems[-1])
    if not usable:
        problems.append(
            "data: no dataset can be used (the lines above say why); nothing was trained"
        )
        log(problems[-1])
        return 1
    parts = (
        sorted(args.carry.glob("grid*.tar"), key=lambda p: (len(p.name), p.name))
        if use_carry
        else []
    )
    if parts:
        try:
            counts = import_bundle(parts, outputs.results, outputs.imgs, args.runs, log=log)
            log("bundle: imported " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        except BundleError as e:
            problems.append(f"bundle: {e}; the ledger of the checkout was used")
            log(problems[-1])
    check = summary["self_check"] = self_check(
        args, usable[0], device, min(115.0, 0.25 * (deadline - time.time())), log
    )
    graph = device.type == "cuda" and check["verdict"] == "pass"
    summary["steps"] = (
        "CUDA-graph steps"
        if graph
        else "eager steps (--no-graph: the self-check did not pass)"
        if device.type == "cuda"
        else "eager steps (CPU)"
    )
    planned = plan(grid_spec(args, usable))  # only what it could make present
    before = {c.run_id: epochs_on_disk(args.runs / c.run_id) for c in planned}
    export_s = min(60.0, max(8.0, 0.05 * 60 * args.minutes))
    epoch_s = slowest_epoch_seconds(
        planned, read_rows(args.results / "runs.csv"), summary["device"]
    ) or check_epoch_seconds(planned, check)
    seconds = (
        deadline - time.time() - export_s - 1.2 * epoch_s
    )  # the epoch in flight at the deadline finishes
    summary["budget_s"] = {
        "grid": round(max(seconds, 0), 1),
        "export": export_s,
        "epoch": round(epoch_s, 1),
    }
    summary["cells"] = cells(planned, outputs.results, args.runs)
    if seconds < 5:
        line = (
            f"grid: no time left for training ({max(seconds, 0):.0f} s after the export's {export_s:.0f} s and "
            f"an epoch's {epoch_s:.0f} s); none started"
        )
        if any(c["done"] < c["planned"] for c in summary["cells"]["per_seed"].values()):
            problems.append(
                line + "; give the slot more --minutes"
            )  # cells left and none trained: no success
        log(line)
        return 0
    log(
        f"grid: {seconds / 60:.1f} min with {summary['steps']} (an epoch estimated at {epoch_s:.0f} s)"
    )
    code = 0
    settings = RunSettings(
        out=args.runs,
        results=outputs.results,
        data_root=root,
        device=args.device,
        progress=False,
        graph=graph,
    )
    try:
        with Tee(args.out / "slot.log"):
            ended = run_grid(
                planned,
                settings,
                build_backend("local", device, args.runs_per_gpu),
                device,
                max_minutes=max(seconds, 1) / 60,
                fill_budget=True,
            )
        summary["grid_exit"] = 130 if ended.interrupted else 0
    except Exception as e:  # the slot still exports what was trained and says why the grid stopped
        ended = None
        summary["grid_exit"], code = f"{type(e).__name__}", 1
        problems.append(
            f"grid: stopped by {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )
    if ended is not None and ended.interrupted:
        code = 130
        problems.append(
            "interrupted (Ctrl-C) during training; the running runs kept their last epoch"
        )
    elif ended is not None and ended.terminated:
        code = 143
        problems.append(
            "SIGTERM during training; the running runs stopped after their epoch, checkpointed"
        )
    for run_id in ended.failed if ended is not None else []:
        problems.append(
            f"run {run_id} failed (its row and slot.log say why); the next slot trains it again"
        )
    summary["measured"] = measured(planned, before, args.runs)
    summary["cells"] = cells(planned, outputs.results, args.runs)
    summary["planned"] = [c.run_id for c in planned]
    return code


def grid_spec(args, datasets: list[str]):
    """The slot's grid: the paper grid on ``datasets`` (those it made present), with the options that make it
    smaller (tests)."""
    from experiments.runners.presets import preset_recipe
    from experiments.runners.sweep import GridSpec

    recipe = preset_recipe(
        "paper", epochs=args.epochs, train_size=args.train_size, test_size=args.test_size
    )
    return GridSpec(
        datasets=datasets,
        losses=args.losses,
        feat_dims=args.feat_dims,
        seeds=args.seeds,
        recipe=recipe,
    )


def check_epoch_seconds(planned, check: dict) -> float:
    """Seconds of the largest planned epoch from the self-check's steps per second (training only, so doubled
    for the evaluation); 0 when the self-check measured none."""
    from experiments.datasets.specs import get_spec

    rate = check.get("graph_img_s") or check.get("eager_img_s")
    if not rate:
        return 0.0
    return 2 * max((c.train_size or get_spec(c.dataset).train_size) for c in planned) / rate
