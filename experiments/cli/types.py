"""argparse value types that reject bad numbers with a clear message, the help format, and a parser that
refuses in one line."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose refusal is one line (the error, and where the options are listed), exit 2,
    instead of the usage block and the error; an option is taken only by its whole name (argparse's prefix
    matching would read the slot's ``--runs DIR`` given to the grid as ``--runs-per-gpu DIR``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the description's line breaks and shows each option's default
    (where it has one: not for flags, nor for options whose absence means "none")."""

    def _get_help_string(self, action):
        text = action.help or ""
        no_default = (
            action.default is None
            or action.default is False
            or action.default in ("", argparse.SUPPRESS)
        )
        if action.option_strings and not no_default and "%(default)" not in text:
            shown = (
                " ".join(map(str, action.default))
                if isinstance(action.default, list)
                else "%(default)s"
            )
            text += f" (default: {shown})"
        return text


def _number(text: str, cast, what: str, ok, must: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {must}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a whole number", lambda v: v > 0, "a positive whole number")


def non_negative_int(text: str) -> int:
    return _number(text, int, "a whole number", lambda v: v >= 0, "a whole number, 0 or more")


def positive_float(text: str) -> float:
    return _number(
        text, float, "a number", lambda v: 0 < v < float("inf"), "a positive finite number"
    )


def non_negative_float(text: str) -> float:
    value = _number(
        text, float, "a number", lambda v: 0 <= v < float("inf"), "a finite number, 0 or more"
    )
    return value + 0.0  # -0 is 0 (one run id for one value)


def class_indices(text: str) -> list[int]:
    """The sorted class indices of a list like ``0-5`` or ``0,2,4-6`` (already checked by ``class_list``)."""
    return sorted(
        {
            c
            for part in text.replace(" ", "").split(",")
            for c in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)
        }
    )


def class_list(text: str) -> str:
    """Class indices as ``0-5`` or ``0,2,4-6``, returned in that normal form (sorted ranges)."""
    if not re.fullmatch(r"\s*\d+(-\d+)?(\s*,\s*\d+(-\d+)?)*\s*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of classes like 0-5 or 0,2,4-6")
    classes = class_indices(text)
    if len(classes) < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} names {len(classes)} class; a classifier needs at least 2 known classes"
        )
    ranges, start = [], classes[0]
    for a, b in zip(classes, classes[1:] + [None]):
        if b != a + 1:
            ranges.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ",".join(ranges)


DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def device_choice(text: str) -> str:
    """A device as the commands take it: ``auto`` (``SUITE_DEVICE`` if set, checked here too), ``cpu``,
    ``cuda`` or ``cuda:N``; whether CUDA is there is checked once torch is loaded."""
    if text == "auto" and os.environ.get("SUITE_DEVICE"):
        if not re.fullmatch(r"cpu|cuda(:\d+)?", os.environ["SUITE_DEVICE"]):
            raise argparse.ArgumentTypeError(
                f"SUITE_DEVICE={os.environ['SUITE_DEVICE']!r} is not a device: cpu, cuda or cuda:N"
            )
    elif not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: {DEVICE_FORMS}")
    return text


def file_name(text: str) -> str:
    """A name that becomes a file name under a folder the command owns (a study's journal): letters,
    digits, ``.``, ``_`` and ``-``, not starting with a dot, so it can name no other folder."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain name (letters, digits, '.', '_' and '-', no '/', not starting with '.')"
        )
    return text


def user_path(text: str) -> Path:
    """A path given on the command line. ``./suite`` runs every command from the checkout, and says where it
    was run from in ``SUITE_CALLER_DIR``: a relative path is taken from there, as the user meant it (the
    defaults, never parsed by this, stay in the checkout)."""
    path = Path(text).expanduser()
    here = os.environ.get("SUITE_CALLER_DIR")
    if path.is_absolute() or not here or Path(here).resolve() == Path.cwd().resolve():
        return path
    return Path(here) / path


def add_device_flag(parser, help: str = "auto (CUDA if present), cpu, cuda, cuda:N") -> None:
    """``--device``, checked with the flags (``device_choice``)."""
    parser.add_argument("--device", type=device_choice, default="auto", help=help)
