"""Rebuild every table and picture from the recorded rows.

    python -m experiments.report                      # the main ledger: results/, imgs/, README.md
    python -m experiments.report --results my-results # another ledger: its table and pictures go under it
    python -m experiments.report --compare 'loss=standalone,dataset=fashion-mnist,feat_dim=128,protocol=fair' 'loss=xent,dataset=fashion-mnist,feat_dim=128,protocol=fair'

Reads runs.csv and epochs.csv of a ledger (and, for the pictures, the run
directories in runs/) and writes table.md, the learning curves, the feature
gifs and PNGs and, for the main ledger only, the README's sections between
the marker comments (the results, the feature visualisations, and the tuned
comparison of every study in RESULTS/tune/, see experiments/tune.py). Deterministic: running it twice changes nothing.

The README's results section, in order: the CPU study (the main results:
its table in the reference's shape, each loss against xent paired by seed,
the train-test gap), the reference table (runs on the full reference recipe
only), the family table, out-of-distribution detection of those runs, and a
line sending every other run to results/table.md.

Where each thing is made: ``rows`` (the ledger read and grouped), ``cells``
(a number as a table cell), ``study``, ``family``, ``tables`` (the tables),
``figures`` and ``composites`` (the pictures), ``readme`` (the README's
marked sections); this module ties them together and is the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from experiments.report.markers import MARKERS

MAIN_LEDGER = Path("results")
LAZY = {
    "build": "builder",
    "Built": "builder",
    "FRAMES": "composites",
    "read_ledger": "rows",
    "config_of": "rows",
    "tuned": None,
    "main": "command",
    "build_parser": "command",
}


def __getattr__(name: str):
    """The heavy parts (pandas, matplotlib, torch) load when first used: the command parses its flags first."""
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{LAZY[name] or name}")
    return module if LAZY[name] is None else getattr(module, name)


@dataclass(frozen=True)
class Outputs:
    """A ledger and what is generated from it. Only the main ledger writes the README by default."""

    results: Path
    imgs: Path
    readme: Path | None

    @classmethod
    def for_ledger(
        cls, results: Path, imgs: Path | None = None, readme: Path | None = None
    ) -> Outputs:
        main = Path(results).resolve() == MAIN_LEDGER.resolve()
        return cls(
            Path(results),
            imgs or (Path("imgs") if main else Path(results) / "imgs"),
            readme or (Path("README.md") if main else None),
        )

    def problem(self) -> str | None:
        """Why the report could not be written, checked before any training."""
        from experiments.engine.io import unwritable

        for folder in (self.results, self.imgs):
            if (why := unwritable(folder)) is not None:
                return why
        if self.readme is not None:
            if not self.readme.is_file():
                return f"{self.readme}: no such README (give an existing file with --readme)"
            text = self.readme.read_text()
            missing = [
                " ... ".join(pair) for pair in MARKERS.values() if any(m not in text for m in pair)
            ]
            if missing:
                return (
                    f"{self.readme}: it has no {'; no '.join(missing)} markers (the sections the report "
                    "writes between them)"
                )
            twisted = [
                " ... ".join(pair)
                for pair in MARKERS.values()
                if text.count(pair[0]) != 1
                or text.count(pair[1]) != 1
                or text.index(pair[0]) > text.index(pair[1])
            ]
            if twisted:
                return (
                    f"{self.readme}: its {'; '.join(twisted)} markers must each stand once, the start "
                    "before the end (the report writes between them)"
                )
            if (why := unwritable(self.readme.parent)) is not None:
                return why
        return None
