"""``python -m experiments.report``: the report command (experiments/report/command.py)."""

import sys

from experiments.cli.entry import command
from experiments.report.command import main

sys.exit(command(main))
