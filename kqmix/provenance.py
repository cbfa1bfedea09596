"""Which source code trained a run: the git commit of the kqmix checkout it was imported from.

A figure counts only when the code behind it is known. A run records the
revision of every sitting that trained it (`LoopState.revisions`, kept in
checkpoints and written to `run.json`). Installed from a wheel, kqmix is not
in a git checkout and the revision is None: `kqmix_version` then says which
release it was.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Appended to the commit when tracked files of the checkout differ from it.
DIRTY_SUFFIX = "-dirty"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_revision() -> str | None:
    """`<commit>` of the checkout whose top level holds the imported `kqmix` package,
    `<commit>-dirty` when its tracked files have uncommitted changes, None outside such a checkout.
    Read afresh at each call (once per sitting): a long-lived process may train again after a commit."""
    root = Path(__file__).resolve().parent.parent
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None  # not a checkout, or kqmix sits inside someone else's repository (a venv in it)
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit + (DIRTY_SUFFIX if changes else "")
