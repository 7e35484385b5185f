"""Output folders a command's checks make before it knows it will write anything into them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist (``path`` itself, or a parent), or None."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


@contextmanager
def removed_if_empty(paths: list) -> Iterator[None]:
    """Folders of ``paths`` missing on entry (with their missing parents) are removed on the way out where
    nothing was written into them: a command refused after its checks made its output folders leaves none
    behind, and one that wrote keeps what it wrote."""
    tops = {top for p in paths if (top := first_missing(p)) is not None}
    try:
        yield
    finally:
        for top in tops:
            for folder, _, _ in os.walk(top, topdown=False):
                if not any(Path(folder).iterdir()):
                    Path(folder).rmdir()
