"""Checkpoints that survive a crash: atomic, checksummed, pickle-free.

A checkpoint is a directory `checkpoints/ckpt-<t_env>/` holding

* `variables.npz` - every learner variable (agent, mixer, their targets,
  optimizer slots, counters, reward statistics), keyed by name
  (`kqmix.learner.QLearner.state_variables`);
* `state.json` - loop counters, RNG states, best test return;
* `buffer.npz` - the replay buffer (optional);
* `manifest.json` - sha256 of each file above, written last.

It is assembled in a temporary directory and renamed into place, so a
checkpoint directory either is complete or does not exist. Loading verifies
every checksum; a damaged checkpoint is skipped with a warning naming the
file, and the previous good one is used.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .files import fsync_dir, sha256_file, staging_dir

MANIFEST = "manifest.json"
PREFIX = "ckpt-"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or does not match the run."""


def checkpoint_name(t_env: int) -> str:
    return f"{PREFIX}{t_env:012d}"


def checkpoint_t_env(path: Path) -> int:
    """The env step of a checkpoint directory, from its name (`checkpoint_name`)."""
    return int(Path(path).name[len(PREFIX):])


def write_checkpoint(root: Path, t_env: int, arrays: dict[str, dict[str, np.ndarray]], state: dict) -> Path:
    """Writes `root/ckpt-<t_env>/` atomically; `arrays` maps file stem -> named arrays."""
    final = root / checkpoint_name(t_env)
    with staging_dir(root, "ckpt-") as tmp:
        files = {}
        for stem, named in arrays.items():
            path = tmp / f"{stem}.npz"
            with open(path, "wb") as fh:
                np.savez(fh, **named)
                fh.flush()
                os.fsync(fh.fileno())
            files[path.name] = sha256_file(path)
        state_path = tmp / "state.json"
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True))
        files["state.json"] = sha256_file(state_path)
        with open(tmp / MANIFEST, "w") as fh:
            json.dump({"files": files, "t_env": t_env}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():  # a re-run of the same step after a resume
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    return final


def verify_checkpoint(path: Path) -> None:
    """Raises `CheckpointError` naming the first missing or damaged file."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{manifest_path}: unreadable checkpoint manifest ({exc}).") from exc
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from checkpoint.")
        if sha256_file(file) != expected:
            raise CheckpointError(f"{file}: checksum mismatch (truncated or corrupted).")


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories, oldest first (temporary directories ignored)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    verify_checkpoint(path)
    arrays = {}
    for file in sorted(path.glob("*.npz")):
        with np.load(file, allow_pickle=False) as data:
            arrays[file.stem] = {k: data[k] for k in data.files}
    state = json.loads((path / "state.json").read_text())
    return arrays, state


def load_latest(root: Path):
    """The newest intact checkpoint as `(path, arrays, state)`, or None if there is none.

    Damaged checkpoints are skipped with a warning that names the bad file.
    """
    for path in reversed(list_checkpoints(root)):
        try:
            arrays, state = load_checkpoint(path)
        except (CheckpointError, OSError, ValueError) as exc:
            warnings.warn(f"Skipping damaged checkpoint: {exc}", RuntimeWarning, stacklevel=2)
            continue
        return path, arrays, state
    return None


def prune(root: Path, keep: int, protect: Path | None = None) -> None:
    """Deletes all but the newest `keep` checkpoints, never `protect` (the best one)."""
    checkpoints = list_checkpoints(root)
    for path in checkpoints[: max(len(checkpoints) - keep, 0)]:
        if protect is None or path.resolve() != protect.resolve():
            shutil.rmtree(path, ignore_errors=True)
