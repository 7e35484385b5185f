"""The flags the commands share, and their translation into typed objects.

The reference recipe as flags (``add_recipe_arguments``; the defaults are the
study's, every loss option a flag from its one definition in
losses/options.py) and ``config_from_args`` (a RunConfig from them); the
offline flag; where runs train (``add_backend_arguments``, ``backend_from_args``)
and the settings every run of a command shares (``run_settings``). Only the
commands read an argparse Namespace: the packages take what these return.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments.cli.types import non_negative_float, non_negative_int, positive_float, positive_int
from experiments.datasets.sources import OFFLINE_ENV
from experiments.datasets.specs import default_data_root, get_spec
from centersuite.losses.center_rules import CENTER_RULES, rule_problem
from experiments.engine.config import RunConfig
from experiments.runners.backends import BACKENDS, RunSettings, build_backend
from experiments.runners.sweep import read_fields
from centersuite.losses import LOSSES, build_loss, loss_options, option_definitions
from centersuite.losses import has_class_parameters
from centersuite.models import MODELS, model_recipe

# Every option of every registered loss gets a flag, from its one definition (losses/options.py).
LOSS_OPTIONS = option_definitions()
LOSS_OPTION_FLAGS = {name: option.flag for name, option in LOSS_OPTIONS.items()}
DATASET_HELP = ("mnist, fashion-mnist, cifar-10 (see `./suite data --help`), or synthetic: a generated "
                "10-class toy set (16x16 images, a bright 4x4 patch whose position is the class, 2000 train / 500 "
                "test), for tests and smoke runs, nothing to fetch")


def option_type(option):
    """An argparse type from an option's definition (its parse, with argparse's message)."""
    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    parse.__name__ = option.name
    return parse


def add_recipe_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The reference recipe as options (shared with the grid runner); the defaults are the study's.
    ``sweep``: the SWEEPABLE fields and the loss options take several values (the grid's axes)."""
    d = RunConfig()
    several = {"nargs": "+"} if sweep else {}
    values = " (several: one group each)" if sweep else ""
    parser.add_argument("--model", choices=list(MODELS), default=d.model,
                        help="resnet: the reference pre-activation ResNet; lenet++: the center-loss demo's LeNet++")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs, help="training epochs")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                        help="training batch (the last partial batch is dropped)")
    parser.add_argument("--lr", type=positive_float, default=None, **several,
                        help=f"SGD learning rate (centers too, under joint); a model with its own recipe has its own "
                             f"default: {model_defaults('lr')}{values} (default: {d.lr:g})")
    parser.add_argument("--momentum", type=non_negative_float, default=d.momentum, help="SGD momentum")
    parser.add_argument("--weight-decay", type=non_negative_float, default=None, **several,
                        help=f"SGD weight decay (never on centers); a model with its own recipe has its own default: "
                             f"{model_defaults('weight_decay')}{values} (default: {d.weight_decay:g})")
    parser.add_argument("--lr-factor", type=positive_float, default=d.lr_factor, help="ReduceLROnPlateau factor")
    parser.add_argument("--lr-patience", type=positive_int, default=d.lr_patience, help="ReduceLROnPlateau patience")
    parser.add_argument("--lr-threshold", type=non_negative_float, default=d.lr_threshold,
                        help="ReduceLROnPlateau relative threshold")
    parser.add_argument("--augment", choices=["reference", "none"], default=d.augment,
                        help="reference: the study's per-dataset augmentation on the device; none: no augmentation")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="train on a fixed subset of N samples (default: the whole split)")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help="test on a fixed subset of N samples (default: the whole split)")
    parser.add_argument("--eval-train-size", type=non_negative_int, default=d.eval_train_size,
                        help="training images embedded after each epoch (the class-mean accuracy, the train "
                             "frames of 2-D runs); 0: none. The final evaluation always embeds 10,000")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=d.precision,
                        help="fp32: the reference (TF32 convolutions as PyTorch allows by default); bf16: autocast, "
                             "a named departure; fp16: autocast with a GradScaler")
    parser.add_argument("--protocol", choices=["reference", "fair", "last"], default=d.protocol,
                        help="reference: schedule and best epoch on the test split (the study); fair: on a fixed "
                             "stratified 10%% validation split of the training set, test evaluated once at the end; "
                             "last: no held-out split, a constant lr, the last epoch tested once")
    parser.add_argument("--precise-bn", type=non_negative_int, default=d.precise_bn, metavar="N",
                        help="recompute the BatchNorm statistics on N fixed training images (no augmentation, no "
                             "gradient) before every evaluation, so that they match the weights evaluated; 0: the "
                             "running averages of training, as the reference")
    parser.add_argument("--no-graph", action="store_true",
                        help="eager steps on CUDA instead of one replayed CUDA graph per step")
    parser.add_argument("--compile", action="store_true",
                        help="CPU: torch.compile the model's forward (about 40 s to compile on 2 cores, one warning "
                             "line and eager steps if it fails); not the default: on a 2-core AVX2 CPU the bench "
                             "measured it slower than eager channels_last. Run `bench --device cpu` on yours")
    parser.add_argument("--center-rule", choices=CENTER_RULES, default=d.center_rule,
                        help="how centers are updated: joint (reference), separate, wen")
    parser.add_argument("--center-lr", type=positive_float, default=[d.center_lr] if sweep else d.center_lr,
                        **several, help="lr of the separate rule" + values)
    parser.add_argument("--center-alpha", type=positive_float, default=[d.center_alpha] if sweep else d.center_alpha,
                        **several, help="alpha of the wen rule" + values)
    for name, option in LOSS_OPTIONS.items():
        takers = ", ".join(n for n in LOSSES if name in loss_options(n))
        if option.is_switch:
            parser.add_argument(option.flag, action="store_const", const=[True] if sweep else True, default=None,
                                dest=name, help=f"loss option: {option.help} (losses: {takers}; default: off)")
        else:
            parser.add_argument(option.flag, type=option_type(option), default=None, dest=name, **several,
                                help=f"loss option: {option.help} (losses: {takers}; default: {option.default:g})"
                                     + values)
    parser.add_argument("--ood-images", default=d.ood_images,
                        help="a .npy file of uint8 images of the dataset's shape, scored as out-of-distribution "
                             "(default: the partner dataset, MNIST <-> Fashion-MNIST, or uniform noise)")
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="where the datasets live (env SUITE_DATA); missing files are fetched only into "
                             "the default root, a root you name is only verified")
    add_offline_flag(parser)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="where run directories go")
    parser.add_argument("--device", default="auto", help="auto (SUITE_DEVICE if set, else CUDA if present), cpu, "
                                                         "cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (one line per epoch is still printed)")


def model_defaults(field: str) -> str:
    return ", ".join(f"{m} {model_recipe(m)[field]:g}" for m in MODELS if field in model_recipe(m)) or "none"


def apply_model_recipe(args, sweep: bool = False) -> None:
    """--lr and --weight-decay where not given: the model's own value, else the reference recipe's."""
    d, recipe = RunConfig(), model_recipe(args.model)
    for name in ("lr", "weight_decay"):
        if getattr(args, name) is None:
            value = recipe.get(name, getattr(d, name))
            setattr(args, name, [value] if sweep else value)


def warn_single_class_batches(batch_size: int, losses: list[str]) -> None:
    """A loss with a term over pairs of different labels gets 0 from a batch of one sample."""
    paired = [n for n in losses if LOSSES.entry(n).pairs_across_classes]
    if batch_size == 1 and paired:
        print(f"warning: with --batch-size 1 the term over pairs of classes of {', '.join(paired)} is always 0 "
              "(a batch needs samples of several classes)", file=sys.stderr)


KNOWN_CLASSES_HELP = ("open-set recognition: train and select on these classes only (e.g. 0-5 or 0,2,4-6); the test "
                      "images of the others are the unknowns (default: every class)")


def size_problem(cfg: RunConfig) -> str | None:
    """Why a run's subset sizes cannot be what its row would record: larger than the dataset's split."""
    spec = get_spec(cfg.dataset)
    for flag, size, split in (("--train-size", cfg.train_size, spec.train_size),
                              ("--test-size", cfg.test_size, spec.test_size)):
        if size is not None and size > split:
            return (f"{flag} {size} is larger than {cfg.dataset}'s split of {split:,} images; give at most {split}, "
                    "or leave it out for the whole split")
    return None


def run_problem(cfg: RunConfig) -> str | None:
    """Why a planned run cannot train as its config says, in one line (None when it can): a library its loss
    needs is missing, its center rule does not fit its loss, or a subset is larger than the split."""
    try:
        loss = build_loss(cfg.loss, get_spec(cfg.dataset).num_classes, cfg.feat_dim, **cfg.loss_options)
    except ValueError as e:  # a library the loss needs is missing (losses/pml.py), or a bad option value
        return f"{cfg.loss}: {e}"
    return rule_problem(cfg.center_rule, cfg.loss, loss) or size_problem(cfg)


def unread_center_flags(args, losses: list[str]) -> str | None:
    """A --center-lr or --center-alpha other than its default that no run reads (the center lr is read under
    ``separate``, the alpha under ``wen``, by losses with class centers or proxies), in one line."""
    for field, rule in (("center_lr", "separate"), ("center_alpha", "wen")):
        given = getattr(args, field)
        values = given if isinstance(given, list) else [given]
        if values != [getattr(RunConfig, field)] and not any(field in read_fields(loss, args.center_rule)
                                                             for loss in losses):
            flag = "--" + field.replace("_", "-")
            return (f"{flag} is read by no run here: only under --center-rule {rule}, by a loss with class "
                    f"centers or proxies; add --center-rule {rule}, or leave {flag} out")
    return None


def center_rule_problem(rule: str, losses: list[str]) -> str | None:
    """A center rule other than ``joint`` names losses none of which trains class centers or proxies."""
    if rule == RunConfig.center_rule or any(has_class_parameters(loss) for loss in losses):
        return None
    why = ("the loss trains no class centers or proxies" if len(losses) == 1 else
           "none of them trains class centers or proxies")
    return (f"--center-rule {rule} does not apply to --loss{'es' if len(losses) > 1 else ''} {' '.join(losses)}: "
            f"{why}; leave --center-rule out")


def config_from_args(args, dataset: str, loss: str, feat_dim: int, seed: int, known_classes: str = "") -> RunConfig:
    """The run's config from the flags; a center lr or alpha the run does not read keeps its default, so that
    the run's id never differs by a value the run ignores (experiments/runners/sweep.py: ``read_fields``)."""
    given = {k: getattr(args, k) for k in LOSS_OPTION_FLAGS if getattr(args, k) is not None}
    options = {k: v for k, v in given.items() if k in loss_options(loss)}
    reads = read_fields(loss, args.center_rule)
    # a center rule acts on class centers or proxies: a loss without them keeps the default, as an unread field
    center_rule = args.center_rule if has_class_parameters(loss, options) else RunConfig.center_rule
    center_lr, center_alpha = (getattr(args, f) if f in reads else getattr(RunConfig, f)
                               for f in ("center_lr", "center_alpha"))
    return RunConfig(
        dataset=dataset, loss=loss, feat_dim=feat_dim, model=args.model,
        loss_options=options,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, lr_factor=args.lr_factor, lr_patience=args.lr_patience,
        lr_threshold=args.lr_threshold, augment=args.augment, train_size=args.train_size,
        test_size=args.test_size, eval_train_size=args.eval_train_size, seed=seed, precision=args.precision,
        center_rule=center_rule, center_lr=center_lr, center_alpha=center_alpha, protocol=args.protocol,
        precise_bn=args.precise_bn,
        known_classes=known_classes, ood_images=str(Path(args.ood_images).resolve()) if args.ood_images else "")


class _OfflineFlag(argparse.Action):
    """``--offline``: sets SUITE_OFFLINE=1 for this process and every process it starts."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[OFFLINE_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_offline_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action=_OfflineFlag,
                        help=f"try no network source: a missing dataset file fails at once, naming the command that "
                             f"brings it (also {OFFLINE_ENV}=1)")


def add_backend_arguments(parser) -> None:
    """Where the work runs: the same flags for the grid and the tuner."""
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="where runs train (or the tuner's workers run): local (this machine), ray (a Ray "
                             "cluster), slurm (submitit job arrays); on a cluster --out must be on a filesystem every "
                             "worker sees")
    parser.add_argument("--cpus-per-run", type=positive_int,
                        help="CPU threads of each run (default: this machine's split between the local runs; 1 for "
                             "a Ray task or SLURM job)")
    parser.add_argument("--ray-address", help="ray: 'auto' or host:port of a cluster started with `ray start` "
                                              "(default: start a local Ray instance)")
    parser.add_argument("--slurm-partition", help="slurm: the partition (default: the cluster's)")
    parser.add_argument("--slurm-time", type=positive_int, default=240, help="slurm: minutes per job")
    parser.add_argument("--slurm-gpus-per-task", type=non_negative_int, default=1, help="slurm: GPUs per job")
    parser.add_argument("--slurm-parallelism", type=positive_int, default=16,
                        help="slurm: jobs of the array running at once")


def backend_from_args(args, device):
    """The backend the command's flags name (``add_backend_arguments``)."""
    return build_backend(args.backend, device, args.runs_per_gpu, args.cpus_per_run, args.ray_address,
                         args.slurm_partition, args.slurm_time, args.slurm_gpus_per_task, args.slurm_parallelism)


def run_settings(args, results: Path) -> RunSettings:
    """The settings every run of a command shares, from its flags (``add_recipe_arguments``)."""
    return RunSettings(out=Path(args.out), results=Path(results), data_root=Path(args.data_root), device=args.device,
                       progress=not args.no_progress, graph=not getattr(args, "no_graph", False),
                       compile=getattr(args, "compile", False), reuse_stale=getattr(args, "reuse_stale", False))
