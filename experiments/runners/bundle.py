"""A grid in tar files (a bundle, in one or several parts): its ledger, its pictures, its unfinished runs.

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
pictures (they are generated) and keeps any other file of yours that differs;
the command (experiments/bundle.py) then rebuilds the report of that ledger.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

from experiments.ledger.rows import epochs_on_disk, merge, read_rows

LEDGER_FILES = ("runs.csv", "epochs.csv")
RUN_FILES = ("config.json", "metrics.csv", "checkpoint.pt")
MANIFEST = "bundle/part-{}.json"  # in every part: which part it is, of how many


class BundleError(RuntimeError):
    """The bundle cannot be written or read; the message says why and what to do."""


def unfinished_runs(runs: Path) -> dict[str, list[Path]]:
    """Per unfinished run (a checkpoint, no result.json), what it needs to continue elsewhere: config,
    metrics, checkpoint, 2-D frames."""
    out = {}
    for run_dir in sorted(p for p in Path(runs).glob("*") if p.is_dir()):
        if (run_dir / "result.json").exists() or not (run_dir / "checkpoint.pt").exists():
            continue
        out[run_dir.name] = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
        out[run_dir.name] += sorted((run_dir / "features").glob("epoch_*.pt"))
    return out


def within_cap(runs: Path, cap_mb: float | None) -> tuple[list[Path], dict[str, int]]:
    """The files of the unfinished runs that fit in ``cap_mb`` MiB, the furthest along kept first, and the
    runs left out with their epochs done (they start again where they are next trained from scratch)."""
    kept, left_out, total = [], {}, 0
    found = unfinished_runs(runs)
    for run_id in sorted(found, key=lambda r: -epochs_on_disk(Path(runs) / r)):
        size = tar_size(found[run_id])
        if cap_mb is not None and total + size > cap_mb * 2**20:
            left_out[run_id] = epochs_on_disk(Path(runs) / run_id)
            continue
        kept += found[run_id]
        total += size
    return sorted(kept), left_out


def part_paths(path: Path, parts: int) -> list[Path]:
    """``grid.tar``, ``grid.2.tar``, ``grid.3.tar`` ...: the files of a bundle in ``parts`` parts."""
    path = Path(path)
    return [path] + [path.with_name(f"{path.stem}.{k}{path.suffix}") for k in range(2, parts + 1)]


TAR_HEADER = (
    2048  # a member's ustar header and, for long names or fine times, its pax header (at most)
)


def tar_size(files: list[Path]) -> int:
    """Bytes of an uncompressed tar holding ``files``, at most: headers, padding to 512 bytes, and the end
    blocks rounded up to tarfile's 10 KiB record."""
    body = (
        sum(TAR_HEADER + -(-f.stat().st_size // 512) * 512 for f in files) + 1024 + 2 * TAR_HEADER
    )  # + manifest
    return -(-body // 10240) * 10240


def split_parts(entries: list[tuple[Path, str]], part_bytes: float) -> list[list[tuple[Path, str]]]:
    """``(file, name in the tar)`` entries in order, cut into consecutive parts of at most ``part_bytes``."""
    parts = [[]]
    for entry in entries:
        if parts[-1] and tar_size([f for f, _ in parts[-1]] + [entry[0]]) > part_bytes:
            parts.append([])
        parts[-1].append(entry)
    return parts


def export(
    path: Path,
    results: Path,
    imgs: Path,
    runs: Path,
    max_mb: float,
    force: bool = False,
    part_mb: float | None = None,
    pictures: bool = True,
    leave_out: tuple[str, ...] = (),
    unfinished_mb: float | None = None,
) -> dict:
    """Write the bundle; ``{part: number of files, "files": the tar files written, "left_out": {run id: epochs
    done} of unfinished runs over the cap}``. ``pictures`` False: none of ``imgs`` (they are generated: the
    import rebuilds them); ``leave_out``: folders of the ledger left out (``frames``: the pictures' compact
    frames, when the other side has them). ``part_mb``: cut it into several tar files of at most that many MiB
    each (``grid.tar``, ``grid.2.tar``, ...; a file larger than that is refused), for a machine that hands back
    files of a limited size; ``max_mb`` caps them all together; ``unfinished_mb`` caps the unfinished runs,
    the furthest along first."""
    inside = Path(imgs).resolve()  # a ledger's own imgs/ (RESULTS/imgs) is packed once, as pictures
    unfinished, left_out = within_cap(runs, unfinished_mb)
    parts = {
        "results": sorted(
            p
            for p in Path(results).rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and not p.relative_to(results).parts[0].startswith(".")
            and p.relative_to(results).parts[0] not in leave_out
            and not p.resolve().is_relative_to(inside)
        ),
        "imgs": sorted(p for p in Path(imgs).rglob("*") if p.is_file()) if pictures else [],
        "runs": unfinished,
    }
    roots = {"results": Path(results), "imgs": Path(imgs), "runs": Path(runs)}
    if not any(f.name in LEDGER_FILES for f in parts["results"]):
        raise BundleError(
            f"{results}: no runs.csv to export (run the grid first, or give --results)"
        )
    everything = [f for files in parts.values() for f in files]
    size = tar_size(everything)
    if size > max_mb * 2**20:
        biggest = sorted(everything, key=lambda f: -f.stat().st_size)[:3]
        raise BundleError(
            f"the bundle would be {size / 2**20:.1f} MiB, over the {max_mb:g} MiB cap (largest: "
            + ", ".join(f"{f} {f.stat().st_size / 2**20:.1f} MiB" for f in biggest)
            + "); raise --max-mb, or let fewer runs stop unfinished"
        )
    entries = [
        (f, f"{part}/{f.relative_to(roots[part]).as_posix()}")
        for part, files in parts.items()
        for f in files
    ]
    if part_mb is not None:
        too_big = [f for f in everything if tar_size([f]) > part_mb * 2**20]
        if too_big:
            raise BundleError(
                f"{too_big[0]} ({too_big[0].stat().st_size / 2**20:.1f} MiB) does not fit in a part "
                f"of {part_mb:g} MiB; raise the part size"
            )
        chunks = split_parts(entries, part_mb * 2**20)
    else:
        chunks = [entries]
    paths = part_paths(path, len(chunks))
    existing = [p for p in paths + part_paths(path, len(chunks) + 20)[len(chunks) :] if p.exists()]
    if existing and not force:
        raise BundleError(f"{existing[0]} exists; give another file name, or --force to replace it")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    bundle_id = uuid.uuid4().hex
    for k, (target, chunk) in enumerate(zip(paths, chunks), 1):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with tarfile.open(tmp, "w") as tar:
            manifest = json.dumps({"bundle": bundle_id, "part": k, "parts": len(chunks)}).encode()
            info = tarfile.TarInfo(MANIFEST.format(k))
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
            for f, name in chunk:
                tar.add(f, arcname=name, recursive=False)
        os.replace(tmp, target)
    for leftover in existing:  # parts of an earlier, longer bundle of the same name (--force)
        if leftover not in paths:
            leftover.unlink()
    return {
        **{part: len(files) for part, files in parts.items()},
        "files": paths,
        "left_out": left_out,
    }


def import_bundle(
    paths: Path | list[Path], results: Path, imgs: Path, runs: Path, log=print
) -> dict:
    """Merge the bundle (one tar file, or the parts of one) into these folders; ``{what: count}``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            if not Path(path).is_file():
                what = "a folder" if Path(path).is_dir() else "no such file"
                raise BundleError(f"{path}: {what}; give the path of the bundle's tar file")
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(tmp, filter="data")
            except (OSError, tarfile.TarError) as e:
                why = (
                    "not a tar file, nor a compressed one"
                    if isinstance(e, tarfile.ReadError)
                    else (str(e).strip().splitlines() or [type(e).__name__])[0]
                )
                raise BundleError(
                    f"{path}: not a readable bundle ({why}); export it again"
                ) from None
        tmp = Path(tmp)
        path = " ".join(str(p) for p in paths)
        found = [json.loads(f.read_text()) for f in sorted((tmp / "bundle").glob("part-*.json"))]
        if len({m.get("bundle") for m in found}) > 1:
            raise BundleError(
                f"{path}: parts of different bundles; import the parts of one export together"
            )
        if found:  # a bundle from before parts had manifests has none
            missing = sorted(set(range(1, found[0]["parts"] + 1)) - {m["part"] for m in found})
            if missing:
                raise BundleError(
                    f"{path}: part {', '.join(map(str, missing))} of {found[0]['parts']} is missing; "
                    "import every part of the bundle together"
                )
        if not (tmp / "results" / "runs.csv").exists():
            raise BundleError(
                f"{path}: no results/runs.csv inside; is it a bundle made by `experiments.bundle export` "
                "(all of its parts)?"
            )
        counts = {"runs taken": 0, "runs kept": 0, "pictures": 0, "files kept": 0}
        counts["rows added"], counts["rows replaced"] = merge(
            results,
            read_rows(tmp / "results" / "runs.csv"),
            read_rows(tmp / "results" / "epochs.csv"),
        )
        for f in sorted(
            p for p in (tmp / "results").rglob("*") if p.is_file() and p.name not in LEDGER_FILES
        ):
            name = f.relative_to(tmp / "results")
            target = Path(results) / name
            if f.name == "table.md" or not target.exists() or target.read_bytes() == f.read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
            else:
                counts["files kept"] += 1
                log(
                    f"bundle: kept your {target} (the bundle's differs; `tar -xf {path} results/{name.as_posix()}` "
                    "has it)"
                )
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
