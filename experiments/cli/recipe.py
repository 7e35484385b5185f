"""The flags the commands share, and their translation into typed objects.

The recipe as flags (``add_recipe_arguments``: one flag per field of ``RunConfig`` that has one, from its
definition in experiments/engine/config.py, and one per loss option, from losses/options.py), the values
they give (``recipe_values``, ``sweep_values``, ``config_from_args``), the offline flag, where runs train
(``add_backend_arguments``, ``backend_from_args``) and the settings every run of a command shares
(``run_settings``). Only the commands read an argparse Namespace: the packages take what these return.
Torch-free: a command parses, checks and refuses its flags before it loads torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from centersuite.losses import LOSSES, has_class_parameters, loss_options, option_definitions
from centersuite.models import MODELS, model_recipe
from experiments.cli.types import (
    add_device_flag,
    class_indices,
    non_negative_int,
    positive_int,
    user_path,
)
from experiments.datasets.sources import OFFLINE_ENV
from experiments.datasets.specs import default_data_root, get_spec
from experiments.engine.config import DEFAULTS, RECIPE, RunConfig
from experiments.runners import BACKENDS
from experiments.runners.sweep import (
    Sweep,
    SweepError,
    check_sweep,
    parse_set,
    read_fields,
    run_config,
)

# Every option of every registered loss gets a flag, from its one definition (losses/options.py).
LOSS_OPTIONS = option_definitions()
LOSS_OPTION_FLAGS = {name: option.flag for name, option in LOSS_OPTIONS.items()}
DATASET_HELP = (
    "mnist, fashion-mnist, cifar-10 (see `./suite data --help`), or synthetic: a generated "
    "10-class toy set (16x16 images, a bright 4x4 patch whose position is the class, 2000 train / 500 "
    "test), for tests and smoke runs, nothing to fetch"
)
KNOWN_CLASSES_HELP = (
    "open-set recognition: train and select on these classes only (e.g. 0-5 or 0,2,4-6); the test "
    "images of the others are the unknowns (default: every class)"
)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_type(option):
    """An argparse type from an option's definition (its parse, with argparse's message)."""

    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None

    parse.__name__ = option.name
    return parse


def model_defaults(name: str) -> str:
    return (
        ", ".join(f"{m} {model_recipe(m)[name]:g}" for m in MODELS if name in model_recipe(m))
        or "none"
    )


def add_recipe_fields(
    parser: argparse.ArgumentParser,
    names: list[str],
    sweep: bool = False,
    choices: dict[str, tuple] | None = None,
) -> None:
    """The flags of the recipe fields ``names`` (those of them that have one), from their metadata;
    ``choices``: a field's choices where a command takes fewer than the recipe has."""
    values = " (several: one group each)" if sweep else ""
    for name, meta in RECIPE.items():
        if name not in names or not meta["flag"]:
            continue
        several = sweep and meta["sweep"]
        default = DEFAULTS[name]
        text = meta["help"]
        if meta["model_default"]:
            text += f"; a model with its own recipe has its own default: {model_defaults(name)}"
            shown, default = f" (default: {DEFAULTS[name]:g})", None
        else:
            shown = ""
            default = [default] if several else default
        kwargs = {"type": meta["parse"]} if meta["parse"] else {}
        if meta["choices"]:
            kwargs["choices"] = list((choices or {}).get(name, meta["choices"]))
        parser.add_argument(
            flag_of(name),
            default=default,
            nargs="+" if several else None,
            help=text + (values if several else "") + shown,
            **kwargs,
        )


def add_recipe_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The recipe as options (its defaults the study's); ``sweep``: the sweepable fields and the loss options
    take several values (the grid's axes)."""
    values = " (several: one group each)" if sweep else ""
    add_recipe_fields(parser, list(RECIPE), sweep)
    for name, option in LOSS_OPTIONS.items():
        takers = ", ".join(n for n in LOSSES if name in loss_options(n))
        if option.is_switch:
            parser.add_argument(
                option.flag,
                action="store_const",
                const=[True] if sweep else True,
                default=None,
                dest=name,
                help=f"loss option: {option.help} (losses: {takers}; default: off)",
            )
        else:
            parser.add_argument(
                option.flag,
                type=option_type(option),
                default=None,
                dest=name,
                nargs="+" if sweep else None,
                help=f"loss option: {option.help} (losses: {takers}; default: {option.default:g})"
                + values,
            )
    parser.add_argument(
        "--no-graph",
        action="store_true",
        help="eager steps on CUDA instead of one replayed CUDA graph per step",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="CPU: torch.compile the model's forward (about 40 s to compile on 2 cores, one warning "
        "line and eager steps if it fails); not the default: on a 2-core AVX2 CPU the bench "
        "measured it slower than eager channels_last. Run `bench --device cpu` on yours",
    )
    parser.add_argument(
        "--data-root",
        type=user_path,
        default=default_data_root(),
        help="where the datasets live (env SUITE_DATA); missing files are fetched only into "
        "the default root, a root you name is only verified",
    )
    add_offline_flag(parser)
    parser.add_argument(
        "--out", type=user_path, default=Path("runs"), help="where run directories go"
    )
    add_device_flag(parser, "auto (SUITE_DEVICE if set, else CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (one line per epoch is still printed)",
    )


def recipe_values(args, sweep: bool = False, names: list[str] | None = None) -> dict:
    """Every recipe field's value from the flags (``sweep``: a list for a sweepable one; ``names``: only
    those fields), a model's own lr and weight decay where they were not given, the OOD file as an
    absolute path."""
    out, own = {}, model_recipe(args.model)
    for name, meta in RECIPE.items():
        if not meta["flag"] or names is not None and name not in names:
            continue
        value = getattr(args, name)
        if meta["model_default"] and value is None:
            value = own.get(name, DEFAULTS[name])
            value = [value] if sweep and meta["sweep"] else value
        out[name] = value
    if out.get("ood_images"):
        out["ood_images"] = str(user_path(out["ood_images"]).resolve())
    return out


def given_options(args) -> dict:
    """The loss options given on the command line (each a list in the grid)."""
    return {k: getattr(args, k) for k in LOSS_OPTION_FLAGS if getattr(args, k, None) is not None}


def sweep_values(args, losses: list[str]) -> tuple[dict, Sweep]:
    """The grid's recipe (each field's single value) and its sweep (the swept fields' and options' values, and
    ``--set``); SweepError names what cannot be swept."""
    values = recipe_values(args, sweep=True)
    scoped = tuple(parse_set(text) for text in args.set)
    sweep = Sweep(
        recipe={k: v for k, v in values.items() if isinstance(v, list)},
        options=given_options(args),
        scoped=scoped,
    )
    check_sweep(sweep, losses)
    return {k: v for k, v in values.items() if not isinstance(v, list)}, sweep


def config_from_args(
    args, dataset: str, loss: str, feat_dim: int, seed: int, known_classes: str = ""
) -> RunConfig:
    """The config of one run from a command's single-valued flags (experiments/runners/sweep.py: ``run_config``)."""
    return run_config(
        recipe_values(args), dataset, loss, feat_dim, seed, known_classes, given_options(args)
    )


def warn_single_class_batches(batch_size: int, losses: list[str]) -> None:
    """A loss with a term over pairs of different labels gets 0 from a batch of one sample."""
    paired = [n for n in losses if LOSSES.entry(n).pairs_across_classes]
    if batch_size == 1 and paired:
        print(
            f"warning: with --batch-size 1 the term over pairs of classes of {', '.join(paired)} is always 0 "
            "(a batch needs samples of several classes)",
            file=sys.stderr,
        )


def size_problem(cfg: RunConfig) -> str | None:
    """Why a run's subset sizes cannot be what its row would record: larger than the dataset's split."""
    spec = get_spec(cfg.dataset)
    for flag, size, split in (
        ("--train-size", cfg.train_size, spec.train_size),
        ("--test-size", cfg.test_size, spec.test_size),
    ):
        if size is not None and size > split:
            return (
                f"{flag} {size} is larger than {cfg.dataset}'s split of {split:,} images; give at most {split}, "
                "or leave it out for the whole split"
            )
    return None


def split_problem(dataset: str, train_size, test_size, known_classes: str) -> str | None:
    """What the flags ask of a dataset that it does not have, before torch loads: a subset larger than its
    split, or known classes that are not a proper subset of its classes (open-set needs an unknown one)."""
    if problem := size_problem(
        RunConfig(dataset=dataset, train_size=train_size, test_size=test_size)
    ):
        return problem
    if known_classes:
        n = get_spec(dataset).num_classes
        classes = class_indices(known_classes)
        if max(classes) >= n or len(classes) >= n:
            return (
                f"--known-classes {known_classes}: {dataset} has classes 0..{n - 1}; give a proper "
                "subset of them (open-set recognition needs a class left unknown)"
            )
    return None


def run_problem(cfg: RunConfig) -> str | None:
    """Why a planned run cannot train as its config says, in one line (None when it can): a library its loss
    needs is missing, its center rule does not fit its loss, or a subset is larger than the split. Loads the
    loss's class (torch)."""
    from centersuite.losses import build_loss, missing_library
    from centersuite.losses.center_rules import rule_problem

    if (library := missing_library(cfg.loss)) is not None:
        return (
            f"{cfg.loss}: this loss needs the package {library}, which this Python lacks: pip install {library} "
            "(requirements.txt pins it; ./suite slot --pack carries its wheel to a GPU machine); every other loss "
            "runs without it"
        )
    try:
        loss = build_loss(
            cfg.loss, get_spec(cfg.dataset).num_classes, cfg.feat_dim, **cfg.loss_options
        )
    except ValueError as e:  # a bad option value
        return f"{cfg.loss}: {e}"
    return rule_problem(cfg.center_rule, cfg.loss, loss) or size_problem(cfg)


def unread_center_flags(recipe: dict, sweep: Sweep | None, losses: list[str]) -> str | None:
    """A --center-lr or --center-alpha other than its default that no run reads (the center lr is read under
    ``separate``, the alpha under ``wen``, by losses with class centers or proxies), in one line."""
    for name, rule in (("center_lr", "separate"), ("center_alpha", "wen")):
        values = (sweep.recipe.get(name) if sweep and name in sweep.recipe else None) or [
            recipe[name]
        ]
        if values != [DEFAULTS[name]] and not any(
            name in read_fields(loss, recipe["center_rule"]) for loss in losses
        ):
            return (
                f"{flag_of(name)} is read by no run here: only under --center-rule {rule}, by a loss with class "
                f"centers or proxies; add --center-rule {rule}, or leave {flag_of(name)} out"
            )
    return None


def center_rule_problem(rule: str, losses: list[str]) -> str | None:
    """A center rule other than ``joint`` names losses none of which trains class centers or proxies."""
    if rule == DEFAULTS["center_rule"] or any(has_class_parameters(loss) for loss in losses):
        return None
    why = (
        "the loss trains no class centers or proxies"
        if len(losses) == 1
        else "none of them trains class centers or proxies"
    )
    return (
        f"--center-rule {rule} does not apply to --loss{'es' if len(losses) > 1 else ''} {' '.join(losses)}: "
        f"{why}; leave --center-rule out"
    )


def recipe_problem(recipe: dict, sweep: Sweep | None, losses: list[str]) -> str | None:
    """Every refusal the flags alone decide, torch-free: a center rule or a center lr/alpha no run reads."""
    return center_rule_problem(recipe["center_rule"], losses) or unread_center_flags(
        recipe, sweep, losses
    )


class _OfflineFlag(argparse.Action):
    """``--offline``: sets SUITE_OFFLINE=1 for this process and every process it starts."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[OFFLINE_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_offline_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action=_OfflineFlag,
        help=f"try no network source: a missing dataset file fails at once, naming the command that "
        f"brings it (also {OFFLINE_ENV}=1)",
    )


def add_backend_arguments(parser) -> None:
    """Where the work runs: the same flags for the grid and the tuner."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where runs train (or the tuner's workers run): local (this machine), ray (a Ray "
        "cluster), slurm (submitit job arrays); on a cluster --out must be on a filesystem every "
        "worker sees",
    )
    parser.add_argument(
        "--cpus-per-run",
        type=positive_int,
        help="CPU threads of each run (default: this machine's split between the local runs; 1 for "
        "a Ray task or SLURM job)",
    )
    parser.add_argument(
        "--ray-address",
        help="ray: 'auto' or host:port of a cluster started with `ray start` "
        "(default: start a local Ray instance)",
    )
    parser.add_argument("--slurm-partition", help="slurm: the partition (default: the cluster's)")
    parser.add_argument(
        "--slurm-time", type=positive_int, default=240, help="slurm: minutes per job"
    )
    parser.add_argument(
        "--slurm-gpus-per-task", type=non_negative_int, default=1, help="slurm: GPUs per job"
    )
    parser.add_argument(
        "--slurm-parallelism",
        type=positive_int,
        default=16,
        help="slurm: jobs of the array running at once",
    )


def backend_from_args(args, device, runs_per_gpu: int | None = None):
    """The backend the command's flags name (``add_backend_arguments``); ``runs_per_gpu``: the jobs that share
    a GPU (default: the grid's ``--runs-per-gpu``; the tuner gives its worker count)."""
    from experiments.runners.backends import build_backend

    return build_backend(
        args.backend,
        device,
        args.runs_per_gpu if runs_per_gpu is None else runs_per_gpu,
        args.cpus_per_run,
        args.ray_address,
        args.slurm_partition,
        args.slurm_time,
        args.slurm_gpus_per_task,
        args.slurm_parallelism,
    )


def run_settings(args, results: Path):
    """The settings every run of a command shares, from its flags (``add_recipe_arguments``)."""
    from experiments.runners.backends import RunSettings

    return RunSettings(
        out=Path(args.out),
        results=Path(results),
        data_root=Path(args.data_root),
        device=args.device,
        progress=not args.no_progress,
        graph=not getattr(args, "no_graph", False),
        compile=getattr(args, "compile", False),
        reuse_stale=getattr(args, "reuse_stale", False),
    )


__all__ = [
    "chosen_device",
    "DATASET_HELP",
    "KNOWN_CLASSES_HELP",
    "LOSS_OPTION_FLAGS",
    "SweepError",
    "add_backend_arguments",
    "add_offline_flag",
    "add_recipe_arguments",
    "backend_from_args",
    "config_from_args",
    "recipe_problem",
    "recipe_values",
    "run_problem",
    "run_settings",
    "size_problem",
    "sweep_values",
    "warn_single_class_batches",
]


def chosen_device(name: str):
    """The ``torch.device`` of ``--device`` (``engine.device.resolve_device``); where it cannot be had (CUDA
    asked for on a machine without it), the command's one error line and exit 2 instead of a traceback."""
    from experiments.engine.device import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        why = (
            f" (--device auto reads SUITE_DEVICE={os.environ['SUITE_DEVICE']})"
            if name == "auto"
            else ""
        )
        print(f"error: {e}{why}; nothing was run", file=sys.stderr)
        raise SystemExit(2) from None
