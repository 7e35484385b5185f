"""Carry a grid between machines in one tar file: its ledger, its pictures, its unfinished runs.

    python -m experiments.bundle export grid.tar     # results/, imgs/, and every unfinished run in runs/
    python -m experiments.bundle import grid.tar     # merge into this checkout, then rebuild the report
    python -m experiments.bundle export grid.tar --part-mb 15   # grid.tar, grid.2.tar ...: 15 MiB at most each

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


def part_paths(path: Path, parts: int) -> list[Path]:
    """``grid.tar``, ``grid.2.tar``, ``grid.3.tar`` ...: the files of a bundle in ``parts`` parts."""
    path = Path(path)
    return [path] + [path.with_name(f"{path.stem}.{k}{path.suffix}") for k in range(2, parts + 1)]


def tar_size(files: list[Path]) -> int:
    """Bytes of an uncompressed tar holding ``files`` (512-byte header and padding each, 10 KiB end)."""
    return sum(512 + -(-f.stat().st_size // 512) * 512 for f in files) + 10240


def split_parts(entries: list[tuple[Path, str]], part_bytes: float) -> list[list[tuple[Path, str]]]:
    """``(file, name in the tar)`` entries in order, cut into consecutive parts of at most ``part_bytes``."""
    parts = [[]]
    for entry in entries:
        if parts[-1] and tar_size([f for f, _ in parts[-1]] + [entry[0]]) > part_bytes:
            parts.append([])
        parts[-1].append(entry)
    return parts


def export(path: Path, results: Path, imgs: Path, runs: Path, max_mb: float, force: bool = False,
           part_mb: float | None = None, pictures: bool = True) -> dict:
    """Write the bundle; ``{part: number of files, "files": the tar files written}``. ``pictures`` False:
    none of ``imgs`` (they are generated: the import rebuilds them). ``part_mb``: cut it into several tar files of
    at most that many MiB each (``grid.tar``, ``grid.2.tar``, ...; a file larger than that is refused), for
    a machine that hands back files of a limited size; ``max_mb`` caps them all together."""
    inside = Path(imgs).resolve()  # a ledger's own imgs/ (RESULTS/imgs) is packed once, as pictures
    parts = {"results": sorted(p for p in Path(results).rglob("*") if p.is_file() and not p.name.startswith(".")
                               and not p.relative_to(results).parts[0].startswith(".")
                               and not p.resolve().is_relative_to(inside)),
             "imgs": sorted(p for p in Path(imgs).rglob("*") if p.is_file()) if pictures else [],
             "runs": unfinished_run_files(runs)}
    roots = {"results": Path(results), "imgs": Path(imgs), "runs": Path(runs)}
    if not any(f.name in LEDGER_FILES for f in parts["results"]):
        raise BundleError(f"{results}: no runs.csv to export (run the grid first, or give --results)")
    everything = [f for files in parts.values() for f in files]
    size = tar_size(everything)
    if size > max_mb * 2 ** 20:
        biggest = sorted(everything, key=lambda f: -f.stat().st_size)[:3]
        raise BundleError(f"the bundle would be {size / 2 ** 20:.1f} MiB, over the {max_mb:g} MiB cap (largest: "
                          + ", ".join(f"{f} {f.stat().st_size / 2 ** 20:.1f} MiB" for f in biggest)
                          + "); raise --max-mb, or let fewer runs stop unfinished")
    entries = [(f, f"{part}/{f.relative_to(roots[part]).as_posix()}") for part, files in parts.items() for f in files]
    if part_mb is not None:
        too_big = [f for f in everything if tar_size([f]) > part_mb * 2 ** 20]
        if too_big:
            raise BundleError(f"{too_big[0]} ({too_big[0].stat().st_size / 2 ** 20:.1f} MiB) does not fit in a part "
                              f"of {part_mb:g} MiB; raise the part size")
        chunks = split_parts(entries, part_mb * 2 ** 20)
    else:
        chunks = [entries]
    paths = part_paths(path, len(chunks))
    existing = [p for p in paths + part_paths(path, len(chunks) + 20)[len(chunks):] if p.exists()]
    if existing and not force:
        raise BundleError(f"{existing[0]} exists; give another file name, or --force to replace it")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for target, chunk in zip(paths, chunks):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with tarfile.open(tmp, "w") as tar:
            for f, name in chunk:
                tar.add(f, arcname=name, recursive=False)
        os.replace(tmp, target)
    for leftover in existing:  # parts of an earlier, longer bundle of the same name (--force)
        if leftover not in paths:
            leftover.unlink()
    return {**{part: len(files) for part, files in parts.items()}, "files": paths}


def import_bundle(paths: Path | list[Path], results: Path, imgs: Path, runs: Path, log=print) -> dict:
    """Merge the bundle (one tar file, or the parts of one) into these folders; ``{what: count}``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(tmp, filter="data")
            except (OSError, tarfile.TarError) as e:
                raise BundleError(f"{path}: not a readable bundle ({e}); export it again") from None
        tmp = Path(tmp)
        path = " ".join(str(p) for p in paths)
        if not (tmp / "results" / "runs.csv").exists():
            raise BundleError(f"{path}: no results/runs.csv inside; is it a bundle made by `experiments.bundle export` "
                              "(all of its parts)?")
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
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="export: the bundle to write (a tar file); import: the bundle, or all of its parts "
                             "(grid.tar grid.2.tar ...)")
    parser.add_argument("--results", type=Path, default=report.MAIN_LEDGER, help="the ledger folder")
    parser.add_argument("--imgs", type=Path, help="the pictures (default: imgs/ for the main ledger, RESULTS/imgs "
                                                  "otherwise)")
    parser.add_argument("--readme", type=Path, help="import: the README rebuilt (default: README.md for the main "
                                                    "ledger, none otherwise)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the run directories")
    parser.add_argument("--max-mb", type=positive_float, default=16.0,
                        help="export: refuse a bundle larger than this many MiB")
    parser.add_argument("--force", action="store_true", help="export: replace FILE if it exists")
    parser.add_argument("--part-mb", type=positive_float,
                        help="export: cut the bundle into tar files of at most this many MiB each (FILE, then "
                             "FILE's stem .2.tar, .3.tar ...), for a machine that hands back files of a limited size")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export" and len(args.files) != 1:
        parser.error("export writes one FILE (its parts are named after it: --part-mb)")
    outputs = report.Outputs.for_ledger(args.results, args.imgs, args.readme)
    try:
        if args.command == "export":
            counts = export(args.files[0], outputs.results, outputs.imgs, args.runs, args.max_mb, args.force,
                            args.part_mb)
            print(f"bundle: {' '.join(str(p) for p in counts['files'])} "
                  f"({sum(p.stat().st_size for p in counts['files']) / 2 ** 20:.1f} MiB): "
                  f"{counts['results']} ledger files, {counts['imgs']} pictures, {counts['runs']} files of "
                  "unfinished runs")
            return 0
        if (problem := outputs.problem()) is not None:
            raise BundleError(problem)
        counts = import_bundle(args.files, outputs.results, outputs.imgs, args.runs)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report.build(outputs, args.runs)
    print("bundle: imported " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; report rebuilt from {outputs.results / 'runs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
