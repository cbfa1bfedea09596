"""Writing files so that a crash never leaves half of one: atomic writes and checksums.

Everything kqmix writes for later reading (configs, run summaries, models,
metrics, plots, checkpoints, exports) goes through here:

* `atomic_path(path)` - a temporary name beside `path`, renamed onto it once
  the caller has written it completely (readers see the old file or the new
  one, never a partial one);
* `write_text_atomic`, `write_json_atomic` - the same for text and JSON;
* `staging_dir(parent, prefix)` - a temporary directory to assemble a set of
  files in, removed again if assembling fails; the caller renames it into
  place (a checkpoint, an export version);
* `sha256_file`, `fsync_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

#: Prefix of every temporary file or directory kqmix creates beside its outputs.
TMP_PREFIX = ".tmp-"


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path) -> None:
    """Flushes a directory entry (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it is synced and renamed onto `path`.

    On an exception the temporary file is removed and `path` is untouched.
    `suffix` keeps the extension for writers that dispatch on it (Keras's `.keras`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=suffix or path.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path, data) -> None:
    """Writes `data` as indented, key-sorted JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staging_dir(parent, prefix: str) -> Iterator[Path]:
    """A new temporary directory in `parent` (created if needed) to assemble files in.

    Removed with its contents if the block raises; on success it is left for
    the caller to rename into place (the rename is what publishes it).
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=TMP_PREFIX + prefix))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
