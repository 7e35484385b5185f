"""The slot's self-check step: the graph-pool probe and a short training check, each in its own process on
CUDA, within the seconds the slot's budget gives them."""

from __future__ import annotations

import json
import sys

from experiments.slot.console import Log


def self_check(args, dataset: str, device, seconds: float, log: Log) -> dict:
    """The graph-pool probe and the self-check on ``dataset`` (a name the slot made present) within
    ``seconds`` together, each in its own process on CUDA."""
    from experiments import REPO
    from experiments.datasets.sources import run_limited

    root = args.data_root
    result = {"verdict": "skipped", "reason": ""}
    if device.type != "cuda":
        result["reason"] = "no CUDA device: the graph-pool probe and the graphed steps are skipped"
        log(f"self-check: SKIPPED: {result['reason']}")
        return result
    if seconds < 5:
        result["reason"] = f"only {max(seconds, 0):.0f} s of the budget for it"
        log(f"self-check: SKIPPED: {result['reason']}")
        return result
    limit = min(40.0, seconds / 3)
    done = run_limited([sys.executable, "-m", "experiments.probes.graph_pool"], limit, cwd=REPO)
    lines = (
        []
        if done is None
        else [line for line in done.stdout.splitlines() if line.startswith("graph-pool")]
    )
    result["probe"] = "pass" if done is not None and done.returncode == 0 else "fail"
    log(
        f"self-check: graph-pool probe {result['probe'].upper()}"
        + (
            f": no answer within {limit:.0f} s"
            if done is None
            else "".join(f"; {line}" for line in lines[-1:])
        )
    )
    seconds -= limit
    steps = args.check_steps or 300
    limit = min(
        75.0, seconds
    )  # in its own process, killed at its limit (a broken CUDA context stays there)
    cmd = [
        sys.executable,
        "-m",
        "experiments.probes.self_check",
        "--dataset",
        dataset,
        "--steps",
        str(steps),
        "--device",
        str(device),
    ] + (["--data-root", str(root)] if root else [])
    done = run_limited(cmd, limit, cwd=REPO)
    if done is None:
        result.update(verdict="fail", reason=f"no answer within its {limit:.0f} s")
    else:
        last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1:]
        if last:
            result.update(json.loads(last[0]))
        else:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:]
            result.update(
                verdict="fail",
                reason=f"exit code {done.returncode}: {tail[0][:200] if tail else ''}",
            )
    if result.get("probe") == "fail" and result["verdict"] == "pass":
        result.update(verdict="fail", reason="the graph-pool probe failed; " + result["reason"])
    log(
        f"self-check: {result['verdict'].upper()} on {result.get('dataset', dataset)}: {result['reason']}"
    )
    return result
