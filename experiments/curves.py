"""Line charts: learning curves over epochs (a band over seeds) and a tuning study's best score so far by
trial. Output is deterministic, so regenerating changes no byte."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np

from experiments.plots import plt, write_if_changed

# one per loss (the registry's order: report/figures.loss_color): tab10's, their light tints, then Dark2's
LINE_COLORS = (
    plt.get_cmap("tab20").colors[::2]
    + plt.get_cmap("tab20").colors[1::2]
    + plt.get_cmap("Dark2").colors
)
LINE_STYLES = ("-", "--", ":", "-.")


def learning_curve_png(
    curves: dict[str, tuple],
    title: str,
    path: Path,
    colors: dict[str, int] | None = None,
    ylabel: str = "accuracy (headline rule)",
) -> None:
    """``curves[label] = (epochs, mean, half_width[, seeds])``: one line per group of runs with a band over
    seeds (the legend names how many), clipped to [0, 1] (an accuracy), and no band for a single seed (half
    width 0). ``colors[label]``: the color index of each line (one color per loss across pictures); lines of
    one color get other styles.
    The legend sits beside the plot and says whether a band is drawn."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4 + 0.12 * max(0, len(curves) - 14)), dpi=90)
    used: dict[int, int] = {}
    banded = False
    for k, (label, (epochs, mean, half, *seeds)) in enumerate(sorted(curves.items())):
        index = (colors or {}).get(label, k) % len(LINE_COLORS)
        label += f" (n={seeds[0]})" if seeds and seeds[0] > 1 else ""  # the seeds its band rests on
        style = LINE_STYLES[used.get(index, 0) % len(LINE_STYLES)]
        used[index] = used.get(index, 0) + 1
        color = LINE_COLORS[index]
        ax.plot(
            epochs,
            mean,
            color=color,
            linestyle=style,
            label=label,
            linewidth=1.2,
            marker="o" if len(epochs) == 1 else None,
            markersize=3,
        )  # a one-epoch line is a point
        if np.any(half > 0):
            banded = True
            ax.fill_between(
                epochs,
                np.clip(mean - half, 0, 1),
                np.clip(mean + half, 0, 1),
                color=color,
                alpha=0.2,
                linewidth=0,
            )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(
        title
        + (
            "\n(bands: 95% t-interval over each line's n seeds, cut at 0 and 1)"
            if banded
            else "\n(one seed each: no interval)"
        ),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    buf = io.BytesIO()
    fig.savefig(
        buf, format="png", metadata={"Software": None}, bbox_inches="tight"
    )  # the legend is outside
    plt.close(fig)
    write_if_changed(path, buf.getvalue())


def best_so_far_png(
    series: dict[str, list[tuple[int, float | None]]],
    title: str,
    path: Path,
    colors: dict[str, int] | None = None,
) -> None:
    """``series[label]``: ``(trial number, score)`` per trial in the order the trials were started (None:
    pruned or failed); one line per label of the best score so far, against the trial numbers the table
    names."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=90)
    for k, (label, trials) in enumerate(series.items()):
        color = LINE_COLORS[(colors or {}).get(label, k) % len(LINE_COLORS)]
        numbers, scores = [n for n, _ in trials], [s for _, s in trials]
        best = np.maximum.accumulate([-np.inf if s is None else s for s in scores])
        shown = np.where(np.isfinite(best), best, np.nan)
        ax.step(numbers, shown, where="post", color=color, label=label, linewidth=1.4)
        ax.scatter(
            numbers, [np.nan if s is None else s for s in scores], s=9, color=color, alpha=0.5
        )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial (its number in the table)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{title}\n(lines: best so far; dots: each trial)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    write_if_changed(path, buf.getvalue())
