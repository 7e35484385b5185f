"""Which runner trains which run: one claim file per run, so that any number of grids, workers or
backends on one run folder train each run exactly once.

A runner takes a run's claim (``OUT/.claims/RUN_ID.json``: host, process id,
a token) under a file lock before it trains the run, refreshes it every 30 s
while it trains (the file's modification time), records the run in the
ledger, and only then gives the claim back. Another runner skips a run whose
claim is held, and takes the claim over when its holder is gone: on the same
host, when its process no longer exists (a live process keeps its claim
however long it was paused: Ctrl-Z, a suspended job, a slow disk); on another
host, when the claim has not been refreshed for 5 minutes. A runner asks
``held()`` before every epoch and before recording: a claim taken over means
another runner has the run, and it stops without recording.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from filelock import FileLock

REFRESH_S = 30.0
STALE_S = 300.0


def holder_alive(claim: dict, age_s: float) -> bool:
    """On this host: whether the holder's process exists, whatever the claim's age; elsewhere: whether the
    claim was refreshed within ``STALE_S``."""
    if claim.get("host") == socket.gethostname():
        try:
            os.kill(int(claim["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        return True
    return age_s <= STALE_S


class Claim:
    def __init__(self, out: Path, run_id: str):
        self.path = Path(out) / ".claims" / f"{run_id}.json"
        self.lock = FileLock(str(self.path.parent / ".lock"))
        self.mine = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self.holder: dict | None = None  # who holds it, when take() said no
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _read(self) -> tuple[dict | None, float]:
        try:
            return json.loads(self.path.read_text()), time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return None, 0.0

    def take(self) -> bool:
        """Claim the run unless a live runner holds it; on success it is refreshed until ``release``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            current, age = self._read()
            if (
                current is not None
                and current.get("token") != self.mine["token"]
                and holder_alive(current, age)
            ):
                self.holder = current
                return False
            tmp = self.path.with_name(self.path.name + f".{self.mine['token']}")
            tmp.write_text(json.dumps(self.mine))
            os.replace(tmp, self.path)
        self._refresher = threading.Thread(target=self._refresh, daemon=True)
        self._refresher.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            current, _ = self._read()
            if current is None or current.get("token") != self.mine["token"]:
                return  # taken over: never touch another runner's claim
            os.utime(self.path)

    def held(self) -> bool:
        """Whether this runner still holds the claim (not taken over meanwhile)."""
        current, _ = self._read()
        return current is not None and current.get("token") == self.mine["token"]

    def release(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        with self.lock:
            current, _ = self._read()
            if current is not None and current.get("token") == self.mine["token"]:
                self.path.unlink()

    def describe_holder(self) -> str:
        return f"{self.holder['host']}:{self.holder['pid']}" if self.holder else "nobody"
