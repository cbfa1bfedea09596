"""Importing optional environment packages with an actionable error."""

from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the command that installs it."""


def require(module: str, extra: str | None, what: str, pip_name: str | None = None):
    """Imports `module`, or raises `MissingExtraError` naming the exact install command.

    `extra` is the kqmix extra that provides the package (e.g. `mpe`); when
    it is None the package itself is named (`pip_name`, default `module`).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra:
            command = f"pip install 'kqmix[{extra}]'"
        else:
            command = f"pip install {pip_name or module.split('.')[0]}"
        raise MissingExtraError(
            f"{what} needs the Python package `{module.split('.')[0]}`, which could not be "
            f"imported ({exc}). Install it with: {command}"
        ) from exc
