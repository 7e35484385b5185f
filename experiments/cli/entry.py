"""How a command runs: ``sys.exit(command(main))`` in its ``__main__`` block.

A command parses its flags first (torch-free: a refusal is instant), then loads torch and the rest inside
``with loading():``. A Ctrl-C while it loads (seconds on a CPU machine) is one line, not a traceback, and the
process still ends by SIGINT (exit status 130 in a shell); a Ctrl-C later is the command's own to report (it
says what is kept), and where the command does not (building a report), one line too. Installed by the
command's entry, never on import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

STARTING = (
    "interrupted (Ctrl-C) while the command was starting (loading its modules, before it began its work): "
    "nothing was written; the same command starts it again"
)
STOPPED = "interrupted (Ctrl-C) before the command finished; the same command starts it again"


class Starting(KeyboardInterrupt):
    """A Ctrl-C while a command loads its modules."""


@contextlib.contextmanager
def loading():
    """The block where a command loads its modules: a Ctrl-C there becomes ``Starting``."""
    try:
        yield
    except KeyboardInterrupt:
        raise Starting() from None


def command(main, *args) -> int:
    """``main(*args)``'s exit code; a Ctrl-C that the command did not report itself (while it was loading, or
    in work that has nothing to report, such as drawing a report): one line on stderr, and the process ends by
    SIGINT."""
    try:
        return main(*args)
    except KeyboardInterrupt as e:
        print(STARTING if isinstance(e, Starting) else STOPPED, file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
