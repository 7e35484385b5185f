"""TensorBoard event files of one run: per epoch, every loss term, the
accuracies and the lr as scalars; for feat_dim 2 the held-out split's features as an image.

    tensorboard --logdir runs
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from experiments.plots import scatter_figure


class TensorBoardLog:
    def __init__(self, run_dir: Path, first_epoch: int):
        # purge_step drops events of epochs that an interrupted run will redo
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=first_epoch)

    def log_epoch(
        self, row: dict, class_names=None, test_features=None, test_labels=None, centers=None
    ) -> None:
        epoch = row["epoch"]
        for name, value in row.items():
            if name == "epoch":
                continue
            group = (
                "acc"
                if "acc" in name
                else "time"
                if name == "seconds"
                else "lr"
                if name == "lr"
                else "loss"
            )
            self.writer.add_scalar(f"{group}/{name}", value, epoch)
        if (
            test_features is not None
        ):  # the frames' split: test (reference protocol), val (fair), train (last)
            split = "test" if "test_acc" in row else "val" if "val_acc" in row else "train"
            acc = (
                f", acc {row[f'{split}_acc']:.3f}"
                if f"{split}_acc" in row and split != "train"
                else ""
            )
            fig = scatter_figure(
                test_features,
                test_labels,
                class_names,
                f"{split} features, epoch {epoch}{acc}",
                centers=centers,
            )
            self.writer.add_figure(f"features/{split}", fig, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
