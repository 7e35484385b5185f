"""Train one run.

    python -m experiments.train --dataset fashion-mnist --loss standalone --feat-dim 2

Writes runs/<run id>/ (config.json, metrics.csv, checkpoint.pt, result.json,
features/, and pictures/: the 2-D gifs over training, or the PCA of the final
features). Defaults are the reference study's recipe; every
departure is a named option. Running the same command again resumes an
interrupted run, or prints the result of a finished one.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from experiments.center_rules import CENTER_RULES
from experiments.cli_types import HelpFormatter, class_list, non_negative_float, non_negative_int, positive_float, positive_int
from experiments.config import RunConfig
from experiments.data import DeviceData, add_offline_flag, load_data
from experiments.datasets import SPECS, DataError, default_data_root
from experiments.provenance import resolve_device
from experiments.io import unwritable
from experiments.fingerprint import code_fingerprint
from experiments.trainer import RunInterrupted, Trainer, run_fingerprint
from losses import LOSSES, loss_options, option_definitions
from models import MODELS

# Every option of every registered loss gets a flag, from its one definition (losses/options.py).
LOSS_OPTIONS = option_definitions()
LOSS_OPTION_FLAGS = {name: option.flag for name, option in LOSS_OPTIONS.items()}
SWEEPABLE = ("lr", "center_lr", "center_alpha", "weight_decay")  # recipe fields a grid may sweep


DATASET_HELP = ("mnist, fashion-mnist, cifar-10 (see `python -m experiments.data`), or synthetic: a generated "
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
    parser.add_argument("--protocol", choices=["reference", "fair"], default=d.protocol,
                        help="reference: schedule and best epoch on the test split (the study); fair: on a fixed "
                             "stratified 10%% validation split of the training set, test evaluated once at the end")
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


def model_recipe(model: str) -> dict:
    """A model's own departures from the reference recipe: its class's ``RECIPE`` (LeNet++: the lr and weight
    decay of the PyTorch center-loss port); empty for the reference ResNet."""
    used = inspect.getclosurevars(MODELS[model]).globals.values()
    return next((dict(c.RECIPE) for c in used if inspect.isclass(c) and hasattr(c, "RECIPE")), {})


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
    paired = [n for n in losses if LOSSES[n].pairs_across_classes]
    if batch_size == 1 and paired:
        print(f"warning: with --batch-size 1 the inter-class term of {', '.join(paired)} is always 0 "
              "(a batch needs samples of several classes)", file=sys.stderr)


KNOWN_CLASSES_HELP = ("open-set recognition: train and select on these classes only (e.g. 0-5 or 0,2,4-6); the test "
                      "images of the others are the unknowns (default: every class)")


def config_from_args(args, dataset: str, loss: str, feat_dim: int, seed: int, known_classes: str = "") -> RunConfig:
    given = {k: getattr(args, k) for k in LOSS_OPTION_FLAGS if getattr(args, k) is not None}
    return RunConfig(
        dataset=dataset, loss=loss, feat_dim=feat_dim, model=args.model,
        loss_options={k: v for k, v in given.items() if k in loss_options(loss)},
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, lr_factor=args.lr_factor, lr_patience=args.lr_patience,
        lr_threshold=args.lr_threshold, augment=args.augment, train_size=args.train_size,
        test_size=args.test_size, eval_train_size=args.eval_train_size, seed=seed, precision=args.precision,
        center_rule=args.center_rule, center_lr=args.center_lr, center_alpha=args.center_alpha, protocol=args.protocol,
        known_classes=known_classes, ood_images=str(Path(args.ood_images).resolve()) if args.ood_images else "")


def build_parser() -> argparse.ArgumentParser:
    paired = ", ".join(n for n in LOSSES if LOSSES[n].pairs_across_classes)
    parser = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__, formatter_class=HelpFormatter,
                                     epilog=f"{paired} need batches holding several classes (their inter term sums "
                                            "over pairs of samples with different labels).")
    parser.add_argument("--dataset", choices=list(SPECS), default="fashion-mnist", help=DATASET_HELP)
    parser.add_argument("--loss", choices=list(LOSSES), default="standalone", help="the loss (see losses/)")
    parser.add_argument("--feat-dim", type=positive_int, default=2, help="feature dimension (2 for the plots)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initialisation and batches")
    parser.add_argument("--known-classes", type=class_list, help=KNOWN_CLASSES_HELP)
    add_recipe_arguments(parser)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_model_recipe(args)
    for option, flag in LOSS_OPTION_FLAGS.items():
        if getattr(args, option) is not None and option not in loss_options(args.loss):
            parser.error(f"{flag} does not apply to --loss {args.loss} (it takes: "
                         f"{', '.join(LOSS_OPTION_FLAGS[o] for o in loss_options(args.loss)) or 'no loss option'})")
    warn_single_class_batches(args.batch_size, [args.loss])
    return args


def run_one(cfg: RunConfig, args, data: DeviceData | None = None, device=None, should_stop=lambda: False) -> dict:
    """Train ``cfg`` (or return its finished result) in ``args.out / run_id``."""
    run_dir = Path(args.out) / cfg.run_id
    if (run_dir / "result.json").exists() and run_fingerprint(run_dir) == code_fingerprint(cfg.loss, cfg.model):
        return json.loads((run_dir / "result.json").read_text())
    device = device or resolve_device(args.device)
    data = data or load_data(cfg, args.data_root, device)
    use_graph = False if args.no_graph else None
    return Trainer(cfg, data, device, run_dir, progress=not args.no_progress, use_graph=use_graph,
                   compile=args.compile).fit(should_stop)


def draw_pictures(cfg: RunConfig, run_dir: Path) -> Path | None:
    """The run's own pictures in ``run_dir/pictures``: 2-D gifs over training (train and held-out split), or
    the PCA of the final wide features; None when the run has no features (it diverged)."""
    from eval.plots import embedding_pngs, feature_gifs
    from experiments.report.figures import class_names
    names, out = class_names(cfg.to_dict()), run_dir / "pictures"
    frames = sorted((run_dir / "features").glob("epoch_*.pt"))
    title = f"{cfg.loss}, {cfg.dataset}"
    if cfg.feat_dim == 2 and frames:
        feature_gifs(frames, names, out, title, "test" if cfg.protocol == "reference" else "val")
    elif cfg.feat_dim != 2 and (run_dir / "features" / "final.pt").exists():
        embedding_pngs(run_dir / "features" / "final.pt", names, out, title)
    else:
        return None
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, args.dataset, args.loss, args.feat_dim, args.seed, args.known_classes or "")
    problem = unwritable(args.out)
    if problem:
        print(f"error: {problem}; choose another --out", file=sys.stderr)
        return 2
    try:
        result = run_one(cfg, args)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # while loading the data
        print("interrupted before training began", file=sys.stderr)
        return 130
    summary = {k: result[k] for k in ("run_id", "status", "epochs_done", "final_test_acc", "best_test_acc",
                                      "final_test_acc_argmax", "final_test_acc_center", "wall_s")}
    print(json.dumps(summary, indent=2))
    print(f"run directory: {Path(args.out) / cfg.run_id}")
    if (pictures := draw_pictures(cfg, Path(args.out) / cfg.run_id)) is not None:
        print(f"pictures: {pictures}")
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
