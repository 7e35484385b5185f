"""Feature pictures: 2-D scatter frames, gifs over epochs, PCA of wide features, the side-by-side
composites (line charts: experiments/curves.py). Output is deterministic, so regenerating changes no
byte."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

COLORS = plt.get_cmap("tab10").colors  # one per class
MAX_TRAIN_POINTS = 2000  # train frames subsample to keep gifs small


def fixed_limits(
    arrays: list[np.ndarray], margin: float = 0.05
) -> tuple[float, float, float, float] | None:
    """Axis limits covering the 0.5-99.5 percentiles of all frames, so a gif does not jump; None when no frame
    holds a finite point (a run that diverged at once)."""
    points = np.concatenate([a[np.isfinite(a).all(1)] for a in arrays])
    if not len(points):
        return None
    lo, hi = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    pad = (hi - lo) * margin + 1e-6
    return lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]


def scatter_figure(
    features,
    labels,
    class_names,
    title,
    centers=None,
    limits=None,
    axis_labels=("feature 1", "feature 2"),
):
    """One run's scatter, 640 x 520 px, the legend beside the points."""
    fig, ax = plt.subplots(figsize=(8.0, 6.5), dpi=80)
    _panel(
        ax,
        np.asarray(features),
        np.asarray(labels),
        class_names,
        centers,
        limits,
        title,
        axis_labels=axis_labels,
    )
    ax.legend(
        fontsize=8,
        markerscale=3,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0,
        frameon=False,
    )
    fig.tight_layout()
    return fig


def frame_limits(features: np.ndarray, centers=None):
    """Axes that fit one frame: the 0.5-99.5 percentiles of its points, widened to hold its centers."""
    c = np.zeros((0, 2)) if centers is None else np.asarray(centers, dtype=float)
    return covering(fixed_limits([features]), c)


def figure_to_array(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return iio.imread(buf.getvalue())[..., :3]


def _exact_colors() -> list[tuple[int, int, int]]:
    """The classes' colors as legend markers and as points (alpha 0.6 on white), white and black."""
    rgb = [np.asarray(c) for c in COLORS]
    rgb += [0.6 * c + 0.4 for c in rgb]
    return [tuple(round(255 * v) for v in c) for c in rgb] + [(255, 255, 255), (0, 0, 0)]


def gif_bytes(images: list[np.ndarray], duration_ms: int) -> bytes:
    """A looping GIF of ``images`` (H x W x 3 uint8) whose frames share one palette, the class colors in it
    exactly (a palette per frame gave two classes one color, and a class other colors frame to frame)."""
    from PIL import Image

    fixed = _exact_colors()
    strip = np.concatenate(images, axis=0)
    learned = Image.fromarray(strip).quantize(256 - len(fixed), method=Image.Quantize.MEDIANCUT)
    palette = np.asarray(fixed + np.reshape(learned.getpalette(), (-1, 3)).tolist())[:256]
    # each distinct color to its nearest palette entry, here (Pillow's own lookup rounds colors)
    colors, where = np.unique(strip.reshape(-1, 3), axis=0, return_inverse=True)
    nearest = (
        ((colors[:, None, :].astype(int) - palette[None]) ** 2).sum(-1).argmin(1).astype(np.uint8)
    )
    indices = nearest[where.ravel()].reshape(strip.shape[:2])
    frames = [Image.fromarray(part, "P") for part in np.split(indices, len(images))]
    for frame in frames:
        frame.putpalette(palette.astype(np.uint8).ravel().tolist())
    buf = io.BytesIO()
    frames[0].save(
        buf, "GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0
    )
    return buf.getvalue()


def subsample(features: np.ndarray, labels: np.ndarray, n: int = MAX_TRAIN_POINTS):
    keep = np.random.default_rng(0).permutation(len(labels))[:n]
    return features[keep], labels[keep]


def write_if_changed(path: Path, data: bytes) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


def feature_gifs(
    frame_files: list[Path], class_names, out_dir: Path, title: str, held_out: str = "test"
) -> None:
    """``train.gif`` and ``{held_out}.gif`` from the per-epoch feature files of one feat_dim-2 run
    (``held_out``: the split its frames hold, experiments/engine/protocol.py: test under the reference protocol,
    val under fair, train under last, which makes the one ``train.gif``)."""
    frames = [torch.load(f) for f in frame_files]
    # under protocol last the frames' held-out slot holds the fixed training subset: one gif, train.gif
    pairs = [("train", "test")] if held_out == "train" else [("train", "train"), (held_out, "test")]
    for split, key in pairs:
        feats = [f[f"{key}_features"].float().numpy() for f in frames]
        labels = [f[f"{key}_labels"].numpy() for f in frames]
        if not any(
            len(a) for a in feats
        ):  # a run that embedded no train subset per epoch has no train gif
            continue
        if split == "train":
            feats, labels = map(list, zip(*(subsample(a, b) for a, b in zip(feats, labels))))
        images = [  # each frame on axes that fit its own points and centers
            figure_to_array(
                scatter_figure(
                    a,
                    b,
                    class_names,
                    f"{title} {split}, {training_point(f['epoch'])}, {held_out} acc {f['test_acc']:.3f}",
                    centers=None if f["centers"] is None else f["centers"].numpy(),
                    limits=frame_limits(a, f["centers"]),
                )
            )
            for a, b, f in zip(feats, labels, frames)
        ]
        write_if_changed(
            out_dir / f"{split}.gif",
            gif_bytes(images, 200),
        )


def pca_2d(features: np.ndarray, basis_of: np.ndarray | None = None) -> np.ndarray:
    """Project on the top two principal axes of ``basis_of`` (default: the features);
    the sign of each axis is fixed so the picture is deterministic."""
    return pca_with_variance(features, basis_of)[0]


def pca_with_variance(features: np.ndarray, basis_of: np.ndarray | None = None):
    """``(projection (n, 2), share of the variance of each of the two axes)``: ``pca_2d`` and how much of the
    variance of ``basis_of`` its axes hold (the axis labels of a PCA picture)."""
    ref = features if basis_of is None else basis_of
    ref = ref[np.isfinite(ref).all(1)]  # a diverged model's NaN features have no direction
    if ref.shape[1] < 2 or not len(ref):  # one feature (or none finite): the axis, and 0 beside it
        out = np.zeros((len(features), 2), dtype=features.dtype)
        out[:, : min(1, features.shape[1])] = features[:, :1] - (ref.mean(0)[:1] if len(ref) else 0)
        return out, (1.0, 0.0)
    mean = ref.mean(0)
    _, s, vt = np.linalg.svd(ref - mean, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2, :1] + 1e-12)
    shares = (s**2 / max(float((s**2).sum()), 1e-30))[:2]
    return (features - mean) @ axes.T, tuple(float(x) for x in shares)


def pc_labels(shares) -> tuple[str, str]:
    """``PC 1 (62% of variance)``, ``PC 2 (21% of variance)``."""
    return tuple(f"PC {k} ({100 * share:.0f}% of variance)" for k, share in enumerate(shares, 1))


def embedding_pngs(final_file: Path, class_names, out_dir: Path, title: str) -> None:
    """PCA (fit on the train features) of the final train subset and test features: ``train.png``, ``test.png``."""
    f = torch.load(final_file)
    train, test = f["train_features"].float().numpy(), f["test_features"].float().numpy()
    for split, feats, labels in (
        ("train", train, f["train_labels"].numpy()),
        ("test", test, f["test_labels"].numpy()),
    ):
        if split == "train":
            feats, labels = subsample(feats, labels)
        projected, shares = pca_with_variance(feats, basis_of=train)
        fig = scatter_figure(
            projected,
            labels,
            class_names,
            f"{title} {split} (PCA of the train features), test acc {f['test_acc']:.3f}",
            axis_labels=pc_labels(shares),
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        write_if_changed(out_dir / f"{split}.png", buf.getvalue())


MAX_FRAMES = 40  # a README gif: at most this many frames, chosen evenly (the first and last kept)
GIF_FRAME_MS = 400


def even_subset(n: int, most: int = MAX_FRAMES) -> list[int]:
    """Indices of at most ``most`` of ``n`` items, evenly spread, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def training_point(epoch: float) -> str:
    """A frame's point of training: ``epoch 3``, or ``1/8 of epoch 1`` for a frame within the first epoch."""
    if float(epoch) >= 1 and float(epoch) == int(epoch):
        return f"epoch {int(epoch)}"
    return f"{Fraction(float(epoch)).limit_denominator(64)} of epoch 1"


def outside(features: np.ndarray, limits) -> int:
    """How many finite points fall outside ``limits`` (they are not drawn)."""
    if limits is None:
        return 0
    x, y = features[:, 0], features[:, 1]
    finite = np.isfinite(features).all(1)
    return int(
        (finite & ((x < limits[0]) | (x > limits[1]) | (y < limits[2]) | (y > limits[3]))).sum()
    )


def covering(limits, features: np.ndarray, margin: float = 0.02):
    """``limits`` widened so that every finite point of ``features`` is inside."""
    finite = features[np.isfinite(features).all(1)]
    if limits is None or not len(finite):
        return limits
    lo, hi = finite.min(0), finite.max(0)
    pad = (hi - lo) * margin + 1e-6
    return (
        min(limits[0], lo[0] - pad[0]),
        max(limits[1], hi[0] + pad[0]),
        min(limits[2], lo[1] - pad[1]),
        max(limits[3], hi[1] + pad[1]),
    )


def _panel(
    ax,
    features,
    labels,
    class_names,
    centers,
    limits,
    title,
    legend=False,
    axis_labels=("feature 1", "feature 2"),
):
    """One scatter of 2-D features coloured by class, the centers marked X, on ``limits`` when given."""
    for k, name in enumerate(class_names):
        pts = features[labels == k]
        ax.scatter(
            pts[:, 0], pts[:, 1], s=2, color=COLORS[k % 10], label=name, alpha=0.6, linewidths=0
        )
    if centers is not None:
        c = np.asarray(centers)
        ax.scatter(
            c[:, 0],
            c[:, 1],
            s=60,
            c=[COLORS[k % 10] for k in range(len(c))],
            marker="X",
            edgecolors="black",
            linewidths=0.8,
        )
    if limits is not None:
        ax.set_xlim(limits[0], limits[1])
        ax.set_ylim(limits[2], limits[3])
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(axis_labels[0], fontsize=8)
    ax.set_ylabel(axis_labels[1], fontsize=8)
    ax.tick_params(labelsize=7)
    if legend:
        ax.legend(fontsize=6, markerscale=3, loc="upper right", framealpha=0.7)
    ax.set_aspect("auto")


def _composite_figure(n_panels: int, class_names):
    # panels of 486 px (5.4 in at 90 dpi) at least
    fig, axes = plt.subplots(1, n_panels, figsize=(5.4 * n_panels, 5.9), dpi=90, squeeze=False)
    _class_legend(fig, class_names)
    return fig, axes[0]


def _class_legend(fig, class_names) -> None:
    """One legend of the class colours for a figure of several panels, along its bottom edge."""
    handles = [
        matplotlib.lines.Line2D(
            [], [], marker="o", linestyle="", color=COLORS[k % 10], markersize=4
        )
        for k in range(len(class_names))
    ]
    fig.legend(
        handles,
        class_names,
        loc="lower center",
        ncol=min(len(class_names), 10),
        fontsize=7,
        frameon=False,
        handletextpad=0.1,
        columnspacing=0.8,
    )


def frame_panel(ax, name: str, frame: dict, class_names, fontsize: float = 9) -> None:
    """One compact 2-D frame (``test_features``, ``test_labels``, ``centers`` or None, ``test_acc``) in ``ax``,
    titled ``name: acc 0.xyz``: its axes fit the frame's points (0.5-99.5 percentiles) and centers, and a
    point outside them is counted in the title."""
    features = frame["test_features"].float().numpy()
    centers = None if frame["centers"] is None else frame["centers"].float().numpy()
    lim = frame_limits(features, centers)
    hidden = [
        f"{n} {what}{'' if n == 1 else 's'} outside"
        for n, what in (
            (outside(features, lim), "point"),
            (0 if centers is None else outside(centers, lim), "center"),
        )
        if n
    ]
    _panel(
        ax,
        features,
        frame["test_labels"].numpy(),
        class_names,
        centers,
        lim,
        f"{name}: acc {frame['test_acc']:.3f}" + (f" ({', '.join(hidden)})" if hidden else ""),
    )
    ax.title.set_fontsize(fontsize)


def composite_gif(
    panels: list[dict], class_names, title: str, gif_path: Path, png_path: Path
) -> None:
    """Losses side by side over training: ``panels[i] = {"name", "frames"}``, each frame a dict with
    ``epoch``, ``test_acc``, ``test_features`` (n, 2), ``test_labels`` and ``centers`` (or None); every
    panel holds the same points of training. Each panel keeps its axes over the frames (fixed limits);
    the last frame is also written as a PNG."""
    count = min(len(p["frames"]) for p in panels)
    chosen = even_subset(count)
    images = []
    for i in chosen:
        fig, axes = _composite_figure(len(panels), class_names)
        for ax, panel in zip(axes, panels):
            frame_panel(ax, panel["name"], panel["frames"][i], class_names)
        fig.suptitle(
            f"{title}, {training_point(panels[0]['frames'][i]['epoch'])}; each panel on its own scale, fit to "
            "this frame",
            fontsize=10,
        )
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        if i == chosen[-1]:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
            write_if_changed(png_path, buf.getvalue())
        images.append(figure_to_array(fig))
    write_if_changed(
        gif_path,
        gif_bytes(images, GIF_FRAME_MS),
    )


def small_multiples_png(
    panels: list[dict], class_names, title: str, path: Path, columns: int = 6
) -> None:
    """One frame of each of many runs as a grid of small panels, ``columns`` a row, in the order given:
    ``panels[i] = {"name", "frame"}`` (a compact 2-D frame, as ``frame_panel`` draws it)."""
    rows = -(-len(panels) // columns)
    width = min(columns, len(panels))
    # panels of 288 px (3.2 in at 90 dpi): 22 losses fit a README's width in 4 rows
    fig, axes = plt.subplots(
        rows, width, figsize=(3.2 * width, 3.2 * rows + 0.6), dpi=90, squeeze=False
    )
    for ax, panel in zip(axes.flat, panels):
        frame_panel(ax, panel["name"], panel["frame"], class_names, fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    _class_legend(fig, class_names)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.5 / (3.2 * rows + 0.6), 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_if_changed(path, buf.getvalue())


def project_2d(features: np.ndarray, method: str) -> np.ndarray:
    """PCA (deterministic signs), or t-SNE (scikit-learn, seed 0) of wide features."""
    if method == "pca":
        return pca_2d(features)
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(features)


def composite_projection_png(
    panels: list[dict], class_names, title: str, method: str, path: Path
) -> None:
    """Wide features of several losses side by side, each projected to 2-D by the same method:
    ``panels[i] = {"name", "features" (n, d), "labels"}``."""
    fig, axes = _composite_figure(len(panels), class_names)
    for ax, panel in zip(axes, panels):
        if method == "pca":
            projected, shares = pca_with_variance(panel["features"])
            labels = pc_labels(shares)
        else:
            projected, labels = project_2d(panel["features"], method), ("t-SNE 1", "t-SNE 2")
        _panel(
            ax,
            projected,
            panel["labels"],
            class_names,
            None,
            None,
            panel["name"],
            axis_labels=labels,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_if_changed(path, buf.getvalue())
