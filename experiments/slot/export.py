"""The slot's last step: the compact frames of the README's pictures, then the bundle that carries the
slot's rows, pictures and unfinished runs back."""

from __future__ import annotations

from experiments.slot.console import Log
from experiments.slot.pack import PART_MB, UNFINISHED_MB


def export(args, log: Log, problems: list[str], summary: dict) -> None:
    """The compact frames of the README's pictures, then the bundle into --out; never raises."""
    from experiments import report
    from experiments.ledger.rows import read_rows, start_ledger
    from experiments.report.composites import keep_frames
    from experiments.runners.bundle import BundleError
    from experiments.runners.bundle import export as export_bundle

    outputs = report.Outputs.for_ledger(args.results)
    try:
        start_ledger(
            outputs.results
        )  # a slot whose runs all stopped unfinished still hands them back
        kept = 0
        if read_rows(outputs.results / "runs.csv"):
            kept = keep_frames(
                report.read_ledger(outputs.results / "runs.csv"),
                args.runs,
                outputs.results / "frames",
            )
        counts = export_bundle(
            args.out / "grid.tar",
            outputs.results,
            outputs.imgs,
            args.runs,
            max_mb=4 * PART_MB,
            force=True,
            part_mb=PART_MB,
            pictures=False,
            unfinished_mb=UNFINISHED_MB,
        )
        summary["bundle"], summary["left_out"] = (
            [str(p) for p in counts["files"]],
            counts["left_out"],
        )
        log(
            f"bundle: {' '.join(summary['bundle'])} ({sum(p.stat().st_size for p in counts['files']) / 2**20:.1f} "
            f"MiB; frames of {kept} runs for the README's pictures, {counts['runs']} files of unfinished runs)"
        )
    except (BundleError, OSError) as e:
        problems.append(f"bundle: {e}")
        log(problems[-1])
