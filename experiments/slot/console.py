"""The slot's console: lines with the seconds since the slot began, appended to its log; everything the
process and its children print, teed into the same log."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path


class Log:
    """Prints a line, with the seconds since the slot began, and appends it at once to the slot's log."""

    def __init__(self, t0: float, path: Path):
        self.t0, self.path = t0, path

    def __call__(self, line: str) -> None:
        line = f"[{time.time() - self.t0:6.1f}s] {line}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


class Tee:
    """Everything written to this process's stdout and stderr (file descriptors 1 and 2, so the grid's worker
    processes too) goes to the console and is appended to ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2), sys.stdout, sys.stderr)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self.pump = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self.pump.start()
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
        return self

    def _pump(self, read: int) -> None:
        with open(read, "rb", buffering=0) as source, open(self.path, "ab") as log:
            while chunk := source.read(1 << 16):
                os.write(self.saved[0], chunk)
                log.write(chunk)
                log.flush()

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stdout, sys.stderr = self.saved[2], self.saved[3]
        os.dup2(self.saved[0], 1)  # the pipe's last writer closes: the pump reads its end and stops
        os.dup2(self.saved[1], 2)
        self.pump.join(timeout=10)
        os.close(self.saved[0])
        os.close(self.saved[1])
