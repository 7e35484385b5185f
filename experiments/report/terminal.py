"""The grid's closing table for a terminal: one line per group of runs, fitted to the terminal's width (the
markdown with every column stays in the ledger's table.md)."""

from __future__ import annotations

import shutil

import pandas as pd

from experiments.report.cells import fmt_ci, runs_text
from experiments.report.rows import run_groups

HEADERS = ("loss", "dataset", "d", "test acc (last)", "runs", "departs from the reference in")


def terminal_table(df: pd.DataFrame, width: int | None = None) -> str:
    """Every group: loss, dataset, feat_dim, last-epoch test accuracy (mean ± 95% interval), runs, and what
    it departs in, cut with an ellipsis so that no line is wider than ``width`` (default: the terminal's)."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    lines = [
        (
            str(first["loss"]),
            str(first["dataset"]),
            str(first["feat_dim"]),
            fmt_ci(g.loc[g["status"] == "finished", "final_test_acc"]),
            runs_text(g),
            first["departures"] or "— (reference recipe)",
        )
        for g in run_groups(df)
        for first in [g.iloc[0]]
    ]
    rows = [HEADERS, *lines]
    widths = [max(len(r[k]) for r in rows) for k in range(len(HEADERS) - 1)]
    out = []
    for r in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  "
        room = max(width - len(head), 1)
        last = r[-1] if len(r[-1]) <= room else r[-1][: max(room - 1, 0)] + "…"
        out.append((head + last)[:width].rstrip())
    return "\n".join(out)
