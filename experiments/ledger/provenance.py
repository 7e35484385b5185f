"""Where a result came from: the code version (the git commit) recorded with every run."""

from __future__ import annotations

import subprocess

from experiments import REPO

RECORDS = (
    ":!results",
    ":!imgs",
    ":!README.md",
)  # what the suite writes: changes there leave the code clean


def code_version() -> str:
    """The git commit, with ``-dirty`` when tracked code has uncommitted changes (the ledger, the pictures
    and the README's generated sections do not count: the suite itself rewrites them)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", ".", *RECORDS], cwd=REPO
            ).returncode
            != 0
        )
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
