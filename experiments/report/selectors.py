"""The selectors of ``report --compare``: ``FIELD=VALUE,...`` read and checked before any ledger is loaded.

Torch-free and pandas-free (the recipe's definitions and the losses' registry only), so that a selector
naming an unknown field, a loss that does not exist or a value outside a field's choices is refused at once.
"""

from __future__ import annotations

import argparse

from centersuite.losses import LOSSES, option_definitions
from experiments.cli.types import positive_int
from experiments.engine.config import RECIPE, RunConfig

STALE = "stale"  # not a config field: whether the group was recorded by other code than the current


class CompareError(ValueError):
    """The comparison cannot be made; the message says why and what to write instead."""


def normal(value) -> str:
    """One text per value: 0.01, 1e-2 and 0.010 are the same number; None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def choices() -> dict[str, tuple[str, ...]]:
    """The fields whose values are names from a fixed list: the loss and the recipe's choice fields."""
    named = {k: tuple(m["choices"]) for k, m in RECIPE.items() if m["choices"]}
    return named | {"loss": tuple(LOSSES)}


def parsers() -> dict:
    """How each numeric field's value reads (its flag's parse), feat_dim a positive whole number."""
    return {k: m["parse"] for k, m in RECIPE.items() if m["parse"]} | {"feat_dim": positive_int}


def parse_selector(text: str) -> dict[str, str]:
    """``"loss=xent,dataset=mnist"`` -> ``{"loss": "xent", "dataset": "mnist"}``, values normalised.

    Raises CompareError for a part that is not FIELD=VALUE with a config field or loss option, a
    ``stale`` that is not true or false, or a name outside its field's choices (a loss that does not
    exist): each message names the part at fault and what is allowed."""
    known = (
        set(RunConfig.__dataclass_fields__) - {"seed", "loss_options"}
        | set(option_definitions())
        | {STALE}
    )
    allowed = choices()
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        where = f"selector {text!r}" + (f": {part!r}" if part != text.strip() else "")
        if not sep or key not in known:
            raise CompareError(
                f"{where} is not FIELD=VALUE with a config field or loss option "
                f"(fields: {', '.join(sorted(known))})"
            )
        if key == STALE and value.lower() not in ("true", "false"):
            raise CompareError(
                f"{where}: stale is true (recorded by other code than the current) or false"
            )
        if (parse := parsers().get(key)) is not None and value != "":
            try:
                parse(value)
            except argparse.ArgumentTypeError as e:
                raise CompareError(f"{where}: {e}") from None
        if key in allowed and value not in allowed[key]:
            raise CompareError(f"{where}: no {key} {value!r} ({key}: {', '.join(allowed[key])})")
        out[key] = normal(value) if value.lower() not in ("true", "false") else value.lower()
    if not out:
        raise CompareError(f"selector {text!r} names nothing; write e.g. loss=xent,dataset=mnist")
    return out
