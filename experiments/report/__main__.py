"""``python -m experiments.report``: rebuild every table and picture from the recorded rows."""
import sys

from experiments.report import main

sys.exit(main())
