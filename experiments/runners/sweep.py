"""What a grid trains, as typed objects: its axes (``GridSpec``), its sweep (several values of a recipe field,
``--lr 0.01 0.1``, or of a loss option, ``--weight-inter 0.01 0.1 1`` for every loss that takes it,
``--set standalone.weight_inter=0.01,0.1`` for one loss only: their Cartesian product, each point its own
group of runs), and the run configs they make (``plan``). Torch-free."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from centersuite.losses import LOSSES, has_class_parameters, loss_options, option_definitions
from experiments.engine.config import DEFAULTS, SWEEPABLE, RunConfig

LOSS_OPTIONS = option_definitions()


class SweepError(ValueError):
    """A sweep that cannot be run; the message says why in one line."""


@dataclass(frozen=True)
class Sweep:
    """``recipe``: values of the SWEEPABLE recipe fields (each field's list, one value when not swept);
    ``options``: values of loss options given for every loss that takes them; ``scoped``: ``(loss, option,
    values)`` given for one loss only (``--set``, which wins for its loss)."""

    recipe: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    scoped: tuple = ()


@dataclass(frozen=True)
class GridSpec:
    """A grid: seeds x datasets x known classes x feat_dims x losses x sweep points, over ``recipe`` (the value
    of every recipe field that is not swept)."""

    datasets: list[str]
    losses: list[str]
    feat_dims: list[int]
    seeds: list[int]
    known_classes: list[str] = field(default_factory=lambda: [""])
    recipe: dict = field(default_factory=dict)
    sweep: Sweep = field(default_factory=Sweep)


def parse_set(text: str) -> tuple[str, str, list]:
    """``LOSS.OPTION=V1,V2,...`` as ``(loss, option, values)``."""
    target, sep, values = text.partition("=")
    loss, dot, option = target.strip().rpartition(".")
    if not sep or not dot or not values.strip():
        raise SweepError(
            f"--set {text!r}: write LOSS.OPTION=VALUE[,VALUE...], e.g. standalone.weight_inter=0.01,0.1"
        )
    option = option.replace("-", "_")
    if loss not in LOSSES:
        raise SweepError(f"--set {text!r}: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    if option not in loss_options(loss):
        raise SweepError(
            f"--set {text!r}: loss {loss} takes no option {option!r}; it takes: "
            f"{', '.join(loss_options(loss)) or 'none'}"
        )
    try:
        return loss, option, [LOSS_OPTIONS[option].parse(v.strip()) for v in values.split(",")]
    except ValueError as e:
        raise SweepError(f"--set {text!r}: {e}") from None


def check_sweep(sweep: Sweep, losses: list[str]) -> None:
    """A loss option given for the grid must be taken by one of its losses; a --set must name one of them."""
    for name in sweep.options:
        if not any(name in loss_options(loss) for loss in losses):
            takers = ", ".join(n for n in LOSSES if name in loss_options(n))
            raise SweepError(
                f"{LOSS_OPTIONS[name].flag} applies to none of --losses {' '.join(losses)} (it is for: "
                f"{takers})"
            )
    for loss, option, _ in sweep.scoped:
        if loss not in losses:
            raise SweepError(
                f"--set {loss}.{option}: {loss} is not among --losses {' '.join(losses)}"
            )


def read_fields(loss: str, center_rule: str) -> set[str]:
    """The sweepable recipe fields a run of ``loss`` under ``center_rule`` reads: lr and weight decay always; the
    center lr under ``separate`` and the center alpha under ``wen``, for a loss with learnable centers."""
    fields = {"lr", "weight_decay"}
    if has_class_parameters(loss):
        fields |= {"joint": {"class_lr_scale"}, "separate": {"center_lr"}, "wen": {"center_alpha"}}[
            center_rule
        ]
    return fields


def sweep_points(sweep: Sweep, loss: str, center_rule: str) -> list[dict]:
    """Every combination of the swept values for ``loss``: dicts of recipe fields and loss options. An axis
    the run does not read (``read_fields``) is no axis for it: the run keeps the field's default."""
    reads = read_fields(loss, center_rule)
    axes = {
        name: list(dict.fromkeys(sweep.recipe.get(name, [DEFAULTS[name]])))
        if name in reads
        else [DEFAULTS[name]]
        for name in SWEEPABLE
    }
    for name, values in sweep.options.items():
        if name in loss_options(loss):
            axes[name] = list(dict.fromkeys(values))
    for target, option, values in sweep.scoped:
        if target == loss:
            axes[option] = list(dict.fromkeys(values))
    return [dict(zip(axes, point)) for point in itertools.product(*axes.values())]


def run_config(
    recipe: dict,
    dataset: str,
    loss: str,
    feat_dim: int,
    seed: int,
    known_classes: str = "",
    options: dict | None = None,
) -> RunConfig:
    """The config of one run: ``recipe`` (recipe fields; loss options among them are the run's where its loss
    takes them). A center rule, lr or alpha the run does not read keeps its default, so that the run's id never
    differs by a value the run ignores (``read_fields``)."""
    options = {k: v for k, v in {**recipe, **(options or {})}.items() if k in loss_options(loss)}
    values = {k: v for k, v in recipe.items() if k in DEFAULTS}
    if not has_class_parameters(
        loss, options
    ):  # no rule acts on a loss without class centers or proxies
        values["center_rule"] = DEFAULTS["center_rule"]
    reads = read_fields(loss, values.get("center_rule", DEFAULTS["center_rule"]))
    for name in ("center_lr", "center_alpha", "class_lr_scale"):
        if name not in reads:
            values[name] = DEFAULTS[name]
    return RunConfig(
        dataset=dataset,
        loss=loss,
        feat_dim=feat_dim,
        seed=seed,
        known_classes=known_classes,
        loss_options=options,
        **{k: v for k, v in values.items() if k != "known_classes"},
    )


def plan(spec: GridSpec) -> list[RunConfig]:
    """seeds x datasets x known classes x feat_dims x losses x sweep points: every cell of the first seed
    before any cell of the next, so a grid cut short holds whole tables rather than many seeds of a few cells.
    One run per id: an axis a run ignores makes no copy."""
    configs = [
        run_config({**spec.recipe, **point}, dataset, loss, feat_dim, seed, known)
        for seed in spec.seeds
        for dataset in spec.datasets
        for known in spec.known_classes
        for feat_dim in spec.feat_dims
        for loss in spec.losses
        for point in sweep_points(
            spec.sweep, loss, spec.recipe.get("center_rule", DEFAULTS["center_rule"])
        )
    ]
    return list({c.run_id: c for c in configs}.values())


def described(cfg: RunConfig) -> list[str]:
    """``field=value`` for what makes a run other than the reference recipe (``RunConfig.departures``), with the
    center lr or alpha where its center rule reads them and they are not the default: runs that differ only
    there are told apart in a plan and a table."""
    extra = [
        f"{f}={getattr(cfg, f)}"
        for f in ("center_lr", "center_alpha")
        if f in read_fields(cfg.loss, cfg.center_rule) and getattr(cfg, f) != DEFAULTS[f]
    ]
    return cfg.departures() + extra
