"""Carry a grid between machines in one tar file: its ledger, its pictures, its unfinished runs.

    python -m experiments.bundle export grid.tar     # results/, imgs/, and every unfinished run in runs/
    python -m experiments.bundle import grid.tar     # merge into this checkout, then rebuild the report

Made for GPU time that comes in slots (the machine wiped in between, files
carried in and out), cluster walltime, or moving results from a server to a
laptop. Export takes the ledger folder (with its compact frames, from which
the README's pictures are drawn), the pictures, and for each run
directory without a result.json its config, metrics, checkpoint and
per-epoch 2-D frames (finished runs are in the ledger and the pictures). It
refuses a bundle over ``--max-mb`` and never overwrites an existing file
unless ``--force``. Import merges the ledger by run id (a run recorded as
finished is never replaced, nothing is doubled), takes an unfinished run
only when its checkpoint is further along than the one here, writes the
pictures (they are generated), keeps any other file of yours that differs,
and rebuilds the report of that ledger.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from experiments import report
from experiments.cli_types import HelpFormatter, positive_float
from experiments.ledger import epochs_on_disk, merge, read_rows

LEDGER_FILES = ("runs.csv", "epochs.csv")
RUN_FILES = ("config.json", "metrics.csv", "checkpoint.pt")


class BundleError(RuntimeError):
    """The bundle cannot be written or read; the message says why and what to do."""


def unfinished_run_files(runs: Path) -> list[Path]:
    """What an unfinished run needs to continue elsewhere: config, metrics, checkpoint, 2-D frames."""
    files = []
    for run_dir in sorted(p for p in Path(runs).glob("*") if p.is_dir()):
        if (run_dir / "result.json").exists() or not (run_dir / "checkpoint.pt").exists():
            continue
        files += [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
        files += sorted((run_dir / "features").glob("epoch_*.pt"))
    return files


def export(path: Path, results: Path, imgs: Path, runs: Path, max_mb: float, force: bool = False) -> dict:
    """Write the bundle; ``{part: number of files}``."""
    parts = {"results": sorted(p for p in Path(results).rglob("*") if p.is_file() and not p.name.startswith(".")
                               and not p.relative_to(results).parts[0].startswith(".")),
             "imgs": sorted(p for p in Path(imgs).rglob("*") if p.is_file()),
             "runs": unfinished_run_files(runs)}
    roots = {"results": Path(results), "imgs": Path(imgs), "runs": Path(runs)}
    if not any(f.name in LEDGER_FILES for f in parts["results"]):
        raise BundleError(f"{results}: no runs.csv to export (run the grid first, or give --results)")
    size = sum(512 + -(-f.stat().st_size // 512) * 512 for files in parts.values() for f in files) + 10240
    if size > max_mb * 2 ** 20:
        biggest = sorted((f for files in parts.values() for f in files), key=lambda f: -f.stat().st_size)[:3]
        raise BundleError(f"the bundle would be {size / 2 ** 20:.1f} MiB, over the {max_mb:g} MiB cap (largest: "
                          + ", ".join(f"{f} {f.stat().st_size / 2 ** 20:.1f} MiB" for f in biggest)
                          + "); raise --max-mb, or let fewer runs stop unfinished")
    if Path(path).exists() and not force:
        raise BundleError(f"{path} exists; give another file name, or --force to replace it")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for part, files in parts.items():
            for f in files:
                tar.add(f, arcname=f"{part}/{f.relative_to(roots[part]).as_posix()}", recursive=False)
    os.replace(tmp, path)
    return {part: len(files) for part, files in parts.items()}


def import_bundle(path: Path, results: Path, imgs: Path, runs: Path, log=print) -> dict:
    """Merge the bundle into these folders; ``{what: count}``."""
    try:
        tar = tarfile.open(path)
    except (OSError, tarfile.TarError) as e:
        raise BundleError(f"{path}: not a readable bundle ({e}); export it again") from None
    with tar, tempfile.TemporaryDirectory() as tmp:
        tar.extractall(tmp, filter="data")
        tmp = Path(tmp)
        if not (tmp / "results" / "runs.csv").exists():
            raise BundleError(f"{path}: no results/runs.csv inside; is it a bundle made by `experiments.bundle export`?")
        counts = {"runs taken": 0, "runs kept": 0, "pictures": 0, "files kept": 0}
        counts["rows added"], counts["rows replaced"] = merge(
            results, read_rows(tmp / "results" / "runs.csv"), read_rows(tmp / "results" / "epochs.csv"))
        for f in sorted(p for p in (tmp / "results").rglob("*") if p.is_file() and p.name not in LEDGER_FILES):
            name = f.relative_to(tmp / "results")
            target = Path(results) / name
            if f.name == "table.md" or not target.exists() or target.read_bytes() == f.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
            else:
                counts["files kept"] += 1
                log(f"bundle: kept your {target} (the bundle's differs; `tar -xf {path} results/{name.as_posix()}` "
                    "has it)")
        for f in sorted(p for p in (tmp / "imgs").rglob("*") if p.is_file()):
            target = Path(imgs) / f.relative_to(tmp / "imgs")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            counts["pictures"] += 1
        for run_dir in sorted(p for p in (tmp / "runs").glob("*") if p.is_dir()):
            here = Path(runs) / run_dir.name
            ahead = epochs_on_disk(run_dir) > epochs_on_disk(here)
            if (here / "result.json").exists() or not ahead:
                counts["runs kept"] += 1
                continue
            shutil.rmtree(here, ignore_errors=True)
            here.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(run_dir, here)
            counts["runs taken"] += 1
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.bundle", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("command", choices=["export", "import"], help="export: write FILE; import: merge FILE here")
    parser.add_argument("file", type=Path, help="the bundle (a tar file)")
    parser.add_argument("--results", type=Path, default=report.MAIN_LEDGER, help="the ledger folder")
    parser.add_argument("--imgs", type=Path, help="the pictures (default: imgs/ for the main ledger, RESULTS/imgs "
                                                  "otherwise)")
    parser.add_argument("--readme", type=Path, help="import: the README rebuilt (default: README.md for the main "
                                                    "ledger, none otherwise)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the run directories")
    parser.add_argument("--max-mb", type=positive_float, default=16.0,
                        help="export: refuse a bundle larger than this many MiB")
    parser.add_argument("--force", action="store_true", help="export: replace FILE if it exists")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    outputs = report.Outputs.for_ledger(args.results, args.imgs, args.readme)
    try:
        if args.command == "export":
            counts = export(args.file, outputs.results, outputs.imgs, args.runs, args.max_mb, args.force)
            print(f"bundle: {args.file} ({Path(args.file).stat().st_size / 2 ** 20:.1f} MiB): "
                  f"{counts['results']} ledger files, {counts['imgs']} pictures, {counts['runs']} files of "
                  "unfinished runs")
            return 0
        if (problem := outputs.problem()) is not None:
            raise BundleError(problem)
        counts = import_bundle(args.file, outputs.results, outputs.imgs, args.runs)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report.build(outputs, args.runs)
    print("bundle: imported " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; report rebuilt from {outputs.results / 'runs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
