"""The code fingerprint of a run: a hash of the code its numbers depend on.

A run's id hashes its config; its fingerprint hashes its code, so a result
recorded by other code is known as *stale*. What it hashes follows the
packages, with no list of modules to keep up to date:

- the engine (every module of ``experiments/engine/``) and the data specs
  (``experiments/datasets/specs.py``: parsing, the synthetic set, the
  out-of-distribution partners), and every module of ``eval/``, ``losses/``
  and ``models/`` that they import, transitively (the metrics, and the
  distances they are computed with);
- the loss's module and every ``losses/`` module it imports, transitively
  (``losses/standalone.py`` reaches ``standalone``, ``standalone-log`` and
  ``standalone-margin``, which build on it, and no other loss); a loss defined
  outside ``losses/`` counts its class's own source file;
- the model's module and the ``models/`` modules it imports;
- the installed version of the library the loss's registry entry names (``library``)
  (pytorch-metric-learning for the adapted losses of ``losses/pml.py``), so
  that upgrading it makes those rows, and only those, stale.

Of a package's ``__init__`` (a registry, which imports every loss or model)
only the functions count (``build_loss``, ``build_model`` and the builders),
not the registry table, so that registering a new loss changes no other
loss's fingerprint; ``losses/options.py`` is never followed (an option's
default is in the run's config; its search range does not change a run), nor
``experiments/engine/config.py`` (the recipe's definitions: every value of a run's config is recorded in its
row, and its id hashes them), nor
``experiments/datasets/fixes.py`` (words for a reader).

The grain is each module's statements in their order, as syntax trees, without
docstrings, without the text of messages (the strings given to a log, print or
write call, and to an exception raised) and without the module paths of its
imports (the names imported count); the modules' digests are hashed as a
sorted set. Rewording a docstring, a comment or a message, or moving or
renaming a file changes no fingerprint; editing anything a run's numbers pass
through changes it. Paths are never hashed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from experiments import REPO

ENGINE = REPO / "experiments" / "engine"
SPECS = "experiments.datasets.specs"
LOSSES_PACKAGE, MODELS_PACKAGE = "centersuite.losses", "centersuite.models"
FOLLOWED = (
    "experiments.engine",
    "centersuite",
)  # packages whose modules the engine's closure takes in
# option definitions and the recipe's definitions (every value is in the run's config); words for a reader
NEVER = ("centersuite.losses.options", "experiments.engine.config", "experiments.datasets.fixes")


def module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"fingerprint: no module {name!r}")
    return Path(spec.origin).resolve()


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:] or [ast.Pass()]
    return body


MESSAGES = (
    "log",
    "print",
    "write",
    "warn",
    "warning",
)  # calls whose strings are words for a reader


def _without_text(call: ast.Call) -> None:
    """The strings a message call is given (plain or formatted) replaced by one placeholder."""

    def blank(node):
        return (
            ast.Constant("")
            if isinstance(node, (ast.JoinedStr, ast.Constant))
            and (isinstance(node, ast.JoinedStr) or isinstance(node.value, str))
            else node
        )

    call.args = [blank(a) for a in call.args]
    call.keywords = [ast.keyword(k.arg, blank(k.value)) for k in call.keywords]


@functools.cache
def _statements(path: Path) -> tuple[str, ...]:
    """The module's top-level statements in order, each as a syntax-tree dump: docstrings and messages left
    out, imports without their module paths; of a package's ``__init__`` (a registry), its functions only."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = _without_docstring(node.body)
        elif isinstance(node, ast.Call):
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in MESSAGES:
                _without_text(node)
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            _without_text(node.exc)
    body = _without_docstring(tree.body)
    if path.name == "__init__.py":
        body = [node for node in body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in body:
        if isinstance(node, ast.ImportFrom):
            node.module, node.level = None, 0
        elif isinstance(node, ast.Import):
            node.names = [ast.alias(a.asname or a.name.rpartition(".")[2]) for a in node.names]
    return tuple(ast.dump(node, include_attributes=False) for node in body)


def _imported_modules(name: str) -> set[str]:
    """The modules the module ``name`` imports, relative imports resolved (``from .x import y`` in
    ``centersuite.losses.z`` names ``centersuite.losses.x`` and, where it is a module, ``centersuite.losses.x.y``)."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in found if _is_module(n)}


def _is_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError, ImportError):
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


def _followed(name: str, packages: tuple[str, ...]) -> bool:
    """Whether the closure enters module ``name``: inside one of ``packages``, and not one of ``NEVER``."""
    inside = any(name == p or name.startswith(p + ".") for p in packages)
    return inside and name not in NEVER


def _closure(start: list[str], packages: tuple[str, ...]) -> set[Path]:
    """The files of the modules ``start`` and of every module of ``packages`` they import, transitively; a
    package's ``__init__`` is taken in, but what it imports (the whole registry) is not followed from it."""
    seen = {module_file(name): name for name in start}
    todo = [name for name in start if module_file(name).name != "__init__.py"]
    while todo:
        for name in _imported_modules(todo.pop()):
            if _followed(name, packages) and (path := module_file(name)) not in seen:
                seen[path] = name
                if path.name != "__init__.py":
                    todo.append(name)
    return set(seen)


@functools.cache
def engine_files() -> frozenset[Path]:
    """The engine's modules, the data specs, and the modules of the library (losses, models, eval) they reach."""
    engine = [
        name
        for p in sorted(ENGINE.glob("*.py"))
        if (name := f"experiments.engine.{p.stem}") not in NEVER
    ]
    return frozenset(_closure(engine + [SPECS], FOLLOWED))


def loss_files(loss_class: type) -> set[Path]:
    """The loss class's own file and every module of the library's losses it imports."""
    return _closure([loss_class.__module__], (LOSSES_PACKAGE,))


def model_files(model: str) -> set[Path]:
    """The model class's file, and every module of the library's models it imports."""
    from centersuite.models import model_class

    return _closure([model_class(model).__module__], (MODELS_PACKAGE,))


def _digest(paths) -> str:
    files = sorted(
        hashlib.sha1("\0".join(_statements(path)).encode()).hexdigest() for path in set(paths)
    )
    return hashlib.sha1("\0".join(files).encode()).hexdigest()[:12]


def modules_fingerprint(*names: str) -> str:
    """The fingerprint of the named modules' code as it is now (12 hex digits)."""
    return _digest([module_file(m) for m in names])


def library_versions(loss: str) -> tuple[str, ...]:
    """``name==version`` of the installed library the loss's registry entry names (``library``: the code a loss
    calls outside this repository, whose numbers its rows depend on); a missing one is ``name==missing``."""
    from centersuite.losses import LOSSES

    name = LOSSES.entry(loss).library
    if name is None:
        return ()
    try:
        return (f"{name}=={importlib.metadata.version(name)}",)
    except importlib.metadata.PackageNotFoundError:
        return (f"{name}==missing",)


def per_loss_settings(loss: str) -> tuple[str, ...]:
    """The loss's own training settings where they are not the family's (its registry entry's
    ``class_lr_scale`` other than 1): a run that leaves them to the loss records no value, so a change of
    them must change the fingerprint."""
    from centersuite.losses import LOSSES

    scale = LOSSES.entry(loss).class_lr_scale
    return () if scale == 1.0 else (f"class_lr_scale={scale:g}",)


def code_fingerprint(loss: str, model: str) -> str:
    """The fingerprint of every run of ``loss`` and ``model`` with the code as it is now (12 hex digits), and
    with the version of the library the loss needs (a loss that needs none: its code alone)."""
    from centersuite.losses import LOSSES

    digest = _digest(engine_files() | loss_files(LOSSES[loss]) | model_files(model))
    versions = library_versions(loss) + per_loss_settings(loss)
    return (
        hashlib.sha1("\0".join((digest, *versions)).encode()).hexdigest()[:12]
        if versions
        else digest
    )
