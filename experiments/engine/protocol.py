"""The protocols: which split chooses a run's reported epoch, which split each picture and curve shows, and
how a table names the accuracy it reports. The trainer, the ledger's report and the pictures all read them
here, so that a picture is named by the split it shows.

- ``reference`` (the study's): the lr schedule and the best epoch are chosen on the test split, evaluated
  after every epoch; the per-epoch frames and curves show the test split.
- ``fair``: a fixed stratified 10% validation split of the training set drives the schedule and selects the
  epoch; the test split is evaluated once, on the selected model; frames and curves show the validation split.
- ``last``: no held-out split at all, a constant lr, the last epoch's model tested once; per epoch only the
  fixed training subset is embedded (unaugmented) for the frames of 2-D runs, and the curves show the
  accuracy of the augmented training batches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    """``selection``: the split that drives the schedule and selects the epoch (None: none, the last epoch);
    ``shown``: the split the per-epoch frames and curves show (``test``, ``val`` or ``train``), which names
    the pictures; ``frames_from``: the data the trainer embeds for those frames (``train_eval`` is the fixed
    training subset); ``val_fraction``: the share of the training split held out as validation; ``label``:
    how a table names the accuracy it reports of such a run."""

    name: str
    selection: str | None
    shown: str
    frames_from: str
    val_fraction: float
    label: str

    @property
    def tests_once(self) -> bool:
        """Whether the test split is evaluated once, at the end (never to choose anything)."""
        return self.selection != "test"

    def picture_split(self, feat_dim: int) -> str:
        """The split a run's feature picture shows: the frames' split for 2-D runs (gifs over training), the
        test split for wider ones (the final features)."""
        return self.shown if feat_dim == 2 else "test"


PROTOCOLS = {
    "reference": Protocol(
        "reference", "test", "test", "test", 0.0, "best epoch, chosen on the test split"
    ),
    "fair": Protocol(
        "fair", "val", "val", "val", 0.1, "epoch selected on the validation split, tested once"
    ),
    "last": Protocol("last", None, "train", "train_eval", 0.0, "last epoch, tested once"),
}


def protocol_of(name: str | None) -> Protocol:
    """The protocol of that name; an empty name (a row from before protocols) is ``reference``."""
    try:
        return PROTOCOLS[name or "reference"]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}") from None
