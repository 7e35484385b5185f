"""Before a slot, here: the carried folder (datasets, the bundle, the wheels the GPU machine lacks), and,
there, the checks that a folder is one and the install of its wheels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from experiments import check_env
from experiments.slot import MARKER, datasets_option, option_problem
from experiments.slot.console import Log

PART_MB = 15.0  # each bundle file at most this many MiB (a machine that hands back files of 16 MiB at most)
UNFINISHED_MB = (
    14.0  # unfinished runs carried each way at most (the datasets take about 40 MiB of a pack)
)
PYTHON_TAG, PLATFORMS = (
    "3.12",
    ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
)


def carried_requirements() -> list[str]:
    """The requirements of supported.txt marked ``; carried``: the GPU machine's Python lacks them."""
    out = []
    for line in check_env.SUPPORTED.read_text().splitlines():
        line, _, marker = line.split("#")[0].partition(";")
        if line.strip() and marker.strip() == "carried":
            out.append(line.strip())
    return out


def download_wheel(requirement: str, dest: Path) -> None:
    """A wheel for the GPU machine's Python (CPython 3.12, x86-64 Linux), without its dependencies."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_TAG,
        "--implementation",
        "cp",
        *(f"--platform={p}" for p in PLATFORMS),
        "-d",
        str(dest),
        requirement,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(
            f"pip download {requirement} failed: {lines[-1] if lines else done.returncode}"
        )


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def pack(args) -> int:
    """The carried folder: datasets (gzipped), the ledger and the unfinished runs, wheels; its marker says
    whether it is complete, so that a pack cut short is neither used nor mistaken for the user's files."""
    if (problem := option_problem(args)) is not None:
        print(f"error: {problem}; nothing was packed", file=sys.stderr)
        return 2
    from experiments import report
    from experiments.datasets.sources import pack as pack_dataset
    from experiments.datasets.sources import prepare
    from experiments.datasets.specs import DataError, default_data_root, get_spec
    from experiments.runners.bundle import BundleError, export

    dest, root = args.pack, args.data_root or default_data_root()
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        print(
            f"error: {dest} holds files that --pack did not make; give an empty or new folder",
            file=sys.stderr,
        )
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    contents = {"complete": False, "datasets": [], "bundle": [], "wheels": [], "left_out": {}}
    (dest / MARKER).write_text(
        json.dumps(contents) + "\n"
    )  # first: whatever happens next, the folder is ours
    for old in ("data", "wheels", "site"):
        shutil.rmtree(dest / old, ignore_errors=True)
    for old in dest.glob("grid*.tar"):
        old.unlink()
    try:
        for name in [d for d in args.datasets if d != "synthetic"]:
            prepare(name, root)
            pack_dataset(get_spec(name), root, dest / "data")
            contents["datasets"].append(name)
        outputs = report.Outputs.for_ledger(args.results)
        if (
            outputs.results / "runs.csv"
        ).exists():  # the compact frames stay: the checkout carries them
            counts = export(
                dest / "grid.tar",
                outputs.results,
                outputs.imgs,
                args.runs,
                max_mb=args.max_mb,
                force=True,
                part_mb=PART_MB,
                pictures=False,
                leave_out=("frames",),
                unfinished_mb=UNFINISHED_MB,
            )
            contents["bundle"], contents["left_out"] = (
                [p.name for p in counts["files"]],
                counts["left_out"],
            )
        for requirement in carried_requirements():
            download_wheel(requirement, dest / "wheels")
    except (DataError, BundleError) as e:
        print(f"error: {e}; {dest} is incomplete, and a slot will not use it", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(
            f"error: {e}; the GPU machine has no network, so the wheel must travel; {dest} is incomplete",
            file=sys.stderr,
        )
        return 2
    contents["wheels"] = sorted(p.name for p in (dest / "wheels").glob("*.whl"))
    size = folder_mb(dest)
    if size > args.max_mb:
        biggest = sorted(
            (f for f in dest.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size
        )[:3]
        print(
            f"error: {dest} is {size:.1f} MiB, over --max-mb {args.max_mb:g} (largest: "
            + ", ".join(f"{f.name} {f.stat().st_size / 2**20:.1f} MiB" for f in biggest)
            + f"); {dest} is incomplete, and a slot will not use it",
            file=sys.stderr,
        )
        return 2
    contents["complete"] = True
    (dest / MARKER).write_text(json.dumps(contents, indent=2) + "\n")
    print(
        f"slot: packed {dest} ({size:.1f} MiB): datasets {', '.join(contents['datasets']) or 'none'}; bundle "
        f"{' '.join(contents['bundle']) or 'none (no ledger yet)'}; wheels {' '.join(contents['wheels']) or 'none needed'}"
        + "".join(
            f"; unfinished run {r} ({e} epochs) left out: over {UNFINISHED_MB:g} MiB, it trains again from "
            "scratch"
            for r, e in contents["left_out"].items()
        )
    )
    print(
        f"slot: next, on the GPU machine, from a checkout with {dest} copied to the same path: "
        f"python3 -m experiments.slot --minutes 9.5 --out $OUT"
        + (f" --carry {dest}" if dest != Path(".carry") else "")
        + "".join(f" {part}" for part in datasets_option(args))
    )
    return 0


def install_wheels(carry: Path, log: Log, problems: list[str]) -> None:
    """Install the carried wheels into CARRY/site (no network, no dependencies) and put it on the path of this
    process and of every process it starts."""
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        return
    site = (carry / "site").resolve()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--upgrade",
            "--target",
            str(site),
            *map(str, wheels),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        problems.append(f"wheels: install failed ({lines[-1] if lines else done.returncode})")
        log(problems[-1] + "; going on without them")
        return
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p
    )
    import importlib

    importlib.invalidate_caches()
    log(f"wheels: installed {len(wheels)} into {site}")


def carried(carry: Path, log: Log, problems: list[str]) -> bool:
    """Whether ``carry`` is a complete folder made by --pack; every other case is named in a problem."""
    marker = carry / MARKER
    if not marker.exists():
        problems.append(
            f"carry: {carry.resolve()} is not a folder made by `./suite slot --pack` (no {MARKER}): "
            "no bundle imported, and the datasets must already be in the data root"
        )
    elif "complete" not in (made := json.loads(marker.read_text())):
        problems.append(
            f"carry: {carry.resolve()} was made by an older --pack: not used; pack it again"
        )
    elif not made["complete"]:
        problems.append(
            f"carry: {carry.resolve()} is an incomplete pack (its --pack failed): not used"
        )
    else:
        return True
    log(problems[-1])
    return False
