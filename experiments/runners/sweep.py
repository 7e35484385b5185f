"""The grid's sweep axes: several values of a recipe field (``--lr 0.01 0.1``) or of a loss option
(``--weight-inter 0.01 0.1 1``, for every loss that takes it; ``--set standalone.weight_inter=0.01,0.1``
for one loss only) form their Cartesian product; each point is its own group of runs."""
from __future__ import annotations

import itertools

from experiments.engine.config import SWEEPABLE, RunConfig
from centersuite.losses import LOSSES, loss_options, option_definitions
from centersuite.losses import has_class_parameters

LOSS_OPTIONS = option_definitions()


class SweepError(ValueError):
    """A sweep that cannot be run; the message says why in one line."""


def parse_set(text: str) -> tuple[str, str, list]:
    """``LOSS.OPTION=V1,V2,...`` as ``(loss, option, values)``."""
    target, sep, values = text.partition("=")
    loss, dot, option = target.strip().rpartition(".")
    if not sep or not dot or not values.strip():
        raise SweepError(f"--set {text!r}: write LOSS.OPTION=VALUE[,VALUE...], e.g. standalone.weight_inter=0.01,0.1")
    option = option.replace("-", "_")
    if loss not in LOSSES:
        raise SweepError(f"--set {text!r}: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    if option not in loss_options(loss):
        raise SweepError(f"--set {text!r}: loss {loss} takes no option {option!r}; it takes: "
                         f"{', '.join(loss_options(loss)) or 'none'}")
    try:
        return loss, option, [LOSS_OPTIONS[option].parse(v.strip()) for v in values.split(",")]
    except ValueError as e:
        raise SweepError(f"--set {text!r}: {e}") from None


def check_flags(args, losses: list[str], scoped: list[tuple[str, str, list]]) -> None:
    """A loss option given for the grid must be taken by one of its losses; a --set must name one of them."""
    for name, option in LOSS_OPTIONS.items():
        if getattr(args, name) is not None and not any(name in loss_options(loss) for loss in losses):
            takers = ", ".join(n for n in LOSSES if name in loss_options(n))
            raise SweepError(f"{option.flag} applies to none of --losses {' '.join(losses)} (it is for: {takers})")
    for loss, option, _ in scoped:
        if loss not in losses:
            raise SweepError(f"--set {loss}.{option}: {loss} is not among --losses {' '.join(losses)}")


def read_fields(loss: str, center_rule: str) -> set[str]:
    """The sweepable recipe fields a run of ``loss`` under ``center_rule`` reads: lr and weight decay always; the
    center lr under ``separate`` and the center alpha under ``wen``, for a loss with learnable centers."""
    fields = {"lr", "weight_decay"}
    if has_class_parameters(loss):
        fields |= {"separate": {"center_lr"}, "wen": {"center_alpha"}}.get(center_rule, set())
    return fields


def sweep_points(args, loss: str, scoped: list[tuple[str, str, list]]) -> list[dict]:
    """Every combination of the swept values for ``loss``: dicts of recipe fields and loss options. An axis
    the run does not read (``read_fields``) is no axis for it: the run keeps the field's default."""
    reads = read_fields(loss, args.center_rule)
    axes = {field: list(dict.fromkeys(getattr(args, field))) if field in reads else [getattr(RunConfig, field)]
            for field in SWEEPABLE}
    for name in loss_options(loss):
        if getattr(args, name, None) is not None:  # a loss registered after the flags were made has none
            axes[name] = list(dict.fromkeys(getattr(args, name)))
    for target, option, values in scoped:
        if target == loss:
            axes[option] = list(dict.fromkeys(values))
    return [dict(zip(axes, point)) for point in itertools.product(*axes.values())]


def described(cfg: RunConfig) -> list[str]:
    """``field=value`` for what makes a run other than the reference recipe (``RunConfig.departures``), with the
    center lr or alpha where its center rule reads them and they are not the default: runs that differ only
    there are told apart in a plan and a table."""
    extra = [f"{f}={getattr(cfg, f)}" for f in ("center_lr", "center_alpha")
             if f in read_fields(cfg.loss, cfg.center_rule) and getattr(cfg, f) != getattr(RunConfig, f)]
    return cfg.departures() + extra
