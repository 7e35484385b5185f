"""``python -m experiments.slot``: the slot command (experiments/slot/__init__.py)."""

import sys

from experiments.cli.entry import command
from experiments.slot import main

sys.exit(command(main))
