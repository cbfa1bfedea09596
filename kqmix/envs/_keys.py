"""Parsing environment keys of the form `ID[:name=value,name=value]`."""

from __future__ import annotations

import ast


def parse_key(key: str, what: str) -> tuple[str, dict]:
    """Splits `"ID:a=1,b=x"` into `("ID", {"a": 1, "b": "x"})`.

    Values are read as Python literals where possible (`3`, `0.5`, `True`,
    `None`) and kept as strings otherwise.
    """
    ident, _, rest = (key or "").partition(":")
    ident = ident.strip()
    if not ident:
        raise ValueError(f"{what} needs an env_key naming the environment. Received: env_key={key!r}")
    kwargs: dict = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, eq, raw = part.partition("=")
        if not eq or not name.strip():
            raise ValueError(
                f"{what}: keyword {part!r} in env_key {key!r} is not of the form name=value."
            )
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        kwargs[name.strip()] = value
    return ident, kwargs
