"""Module-level `__getattr__` that imports a name's module on first use (PEP 562)."""

from __future__ import annotations

import importlib


def lazy_getattr(module_name: str, table: dict[str, str], namespace: dict):
    """Returns a `__getattr__` for `module_name` loading `table[name]` (a module path) on demand.

    The loaded value is stored in `namespace` (the module's `globals()`), so
    the lookup happens once per name.
    """

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
