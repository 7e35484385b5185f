"""The code fingerprint of a run: a hash of the code its numbers depend on.

A run's id hashes its config; its fingerprint hashes its code, so a result
recorded by other code is known as *stale*. What it hashes follows the
packages, with no list of modules to keep up to date:

- the engine (every module of ``experiments/engine/``), and every module of
  ``eval/`` and ``losses/`` that the engine imports, transitively (the
  metrics, and the distances they are computed with);
- the loss's module and every ``losses/`` module it imports, transitively
  (``losses/standalone.py`` reaches ``standalone``, ``standalone-log`` and
  ``standalone-margin``, which build on it, and no other loss); a loss defined
  outside ``losses/`` counts its class's own source file;
- the model's module and the ``models/`` modules it imports.

A package's ``__init__`` (a registry: it imports every loss or model) is never
followed, nor ``losses/options.py`` (an option's default is in the run's
config; its search range does not change a run). The data specs
(``experiments/datasets/specs.py``) are not hashed: the data files are
identified by their md5s, which every run verifies.

The grain is each module's top-level statements (functions, classes,
assignments) as syntax trees, without docstrings and without import
statements, hashed as a sorted set: rewording a docstring or a comment, moving
a file, or moving a function from one hashed module to another changes no
fingerprint; editing anything a run's numbers pass through changes it. Paths
are never hashed.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
from pathlib import Path

from experiments import REPO

ENGINE = REPO / "experiments" / "engine"
FOLLOWED = ("experiments.engine", "eval", "losses")  # packages whose modules the engine's closure takes in
NEVER = ("losses.options",)  # option definitions: the values are in the config


def module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"fingerprint: no module {name!r}")
    return Path(spec.origin).resolve()


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body


@functools.lru_cache(maxsize=None)
def _statements(path: Path) -> tuple[str, ...]:
    """The module's top-level statements, imports and docstrings left out, each as a syntax-tree dump."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = _without_docstring(node.body)
    return tuple(ast.dump(node, include_attributes=False) for node in _without_docstring(tree.body)
                 if not isinstance(node, (ast.Import, ast.ImportFrom)))


def _imported_modules(path: Path) -> set[str]:
    """The modules the file imports (``from losses.x import y`` names ``losses.x`` and, where it is a module,
    ``losses.x.y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in found if _is_module(n)}


def _is_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):
        return False
    return spec is not None and spec.origin is not None and spec.origin.endswith(".py")


def _followed(name: str, packages: tuple[str, ...]) -> bool:
    """Whether the closure enters module ``name``: inside one of ``packages``, not a package's ``__init__``."""
    inside = any(name == p or name.startswith(p + ".") for p in packages)
    return inside and name not in NEVER and not module_file(name).name == "__init__.py"


def _closure(start: list[Path], packages: tuple[str, ...]) -> set[Path]:
    """The files and every module of ``packages`` they import, transitively."""
    seen, todo = set(start), list(start)
    while todo:
        for name in _imported_modules(todo.pop()):
            if _followed(name, packages) and (path := module_file(name)) not in seen:
                seen.add(path)
                todo.append(path)
    return seen


@functools.lru_cache(maxsize=None)
def engine_files() -> frozenset[Path]:
    """The engine's modules and the modules of eval/ and losses/ they reach."""
    return frozenset(_closure(sorted(p.resolve() for p in ENGINE.glob("*.py")), FOLLOWED))


def loss_files(loss_class: type) -> set[Path]:
    """The loss class's own file and every ``losses/`` module it imports."""
    return _closure([Path(inspect.getsourcefile(loss_class)).resolve()], ("losses",))


def model_files(model: str) -> set[Path]:
    """The files of the classes the model's builder names, and every ``models/`` module they import."""
    from models import MODELS
    used = inspect.getclosurevars(MODELS[model]).globals.values()
    return _closure([Path(inspect.getsourcefile(c)).resolve() for c in used if inspect.isclass(c)], ("models",))


def _digest(paths) -> str:
    statements = sorted({s for path in paths for s in _statements(path)})
    h = hashlib.sha1()
    for s in statements:
        h.update(s.encode() + b"\0")
    return h.hexdigest()[:12]


def modules_fingerprint(*names: str) -> str:
    """The fingerprint of the named modules' code as it is now (12 hex digits)."""
    return _digest([module_file(m) for m in names])


def code_fingerprint(loss: str, model: str) -> str:
    """The fingerprint of every run of ``loss`` and ``model`` with the code as it is now (12 hex digits)."""
    from losses import LOSSES
    return _digest(engine_files() | loss_files(LOSSES[loss]) | model_files(model))
