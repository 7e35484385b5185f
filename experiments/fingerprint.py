"""The code fingerprint of a run: a hash of the code its numbers depend on.

A run's id hashes its config; its fingerprint hashes its code, so a result
recorded by other code is known as *stale*. The grain is the syntax tree
(comments and docstrings excluded, so rewording changes nothing) of:

- the loss's module and every ``losses/`` module it imports, transitively
  (``losses/standalone.py`` reaches ``standalone``, ``standalone-log`` and
  ``standalone-margin``, which build on it, and no other loss); a loss defined
  outside ``losses/`` counts its class's own source file; ``losses/options.py``
  is left out: an option's default is in the run's config, and its search range
  does not change a run;
- the model's module and the ``models/`` modules it imports;
- ``SHARED``: the modules every run's numbers pass through.

Every other module of the suite is listed in ``NO_EFFECT`` (reports, runners,
ledgers, command-line plumbing): a test fails when a module is in neither list.
The tuner's trials (``experiments.trial``) record no ledger rows: a study's
identity carries their code's fingerprint instead (``modules_fingerprint``).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SHARED = ("experiments.trainer", "experiments.augment", "experiments.center_rules", "experiments.data",
          "experiments.datasets", "experiments.config", "experiments.cuda_graph", "experiments.compiled",
          "experiments.cpu_memory", "eval.metrics", "eval.embedding", "eval.ood",
          "models")
NO_EFFECT = ("experiments.report", "experiments.grid", "experiments.backends", "experiments.bench",
             "experiments.bundle", "experiments.check_env", "experiments.claims", "experiments.cli_types",
             "experiments.fingerprint", "experiments.gpu_check", "experiments.graph_pool_probe", "experiments.io",
             "experiments.ledger", "experiments.plain_loop", "experiments.presets", "experiments.provenance", "experiments.self_check", "experiments.slot",
             "experiments.stats", "experiments.sweep", "experiments.tensorboard_log", "experiments.train",
             "experiments.trial", "experiments.tune",
             "eval.plots", "losses", "losses.options")


def module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"fingerprint: no module {name!r} (update experiments/fingerprint.py)")
    return Path(spec.origin)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> str:
    return ast.dump(_without_docstrings(ast.parse(path.read_text(), str(path))), include_attributes=False)


def _imports_within(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that the file imports (``from losses.x import y``, ``from losses import x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if n.split(".")[0] == package and n != package)
    return {n for n in found if _is_module(n)}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _closure(start: list[Path], package: str) -> list[Path]:
    """The files and every module of ``package`` they import, transitively."""
    seen, todo = set(start), list(start)
    while todo:
        for name in _imports_within(todo.pop(), package) - set(NO_EFFECT):
            path = module_file(name).resolve()
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def loss_files(loss_class: type) -> list[Path]:
    """The loss class's own file and every ``losses/`` module it imports."""
    return _closure([Path(inspect.getsourcefile(loss_class)).resolve()], "losses")


def model_files(model: str) -> list[Path]:
    """The files of the classes the model's builder names, and every ``models/`` module they import."""
    from models import MODELS
    used = inspect.getclosurevars(MODELS[model]).globals.values()
    return _closure([Path(inspect.getsourcefile(c)).resolve() for c in used if inspect.isclass(c)], "models")


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for path in sorted(paths):
        label = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
        h.update(label.encode() + b"\0" + _tree(path).encode() + b"\0")
    return h.hexdigest()[:12]


def modules_fingerprint(*names: str) -> str:
    """The fingerprint of the named modules' code as it is now (12 hex digits)."""
    return _digest([module_file(m).resolve() for m in names])


def code_fingerprint(loss: str, model: str) -> str:
    """The fingerprint of every run of ``loss`` and ``model`` with the code as it is now (12 hex digits)."""
    from losses import LOSSES
    return _digest([module_file(m).resolve() for m in SHARED] + loss_files(LOSSES[loss]) + model_files(model))
