"""The proxy's dialect modules: one module per wire protocol.

Each module here defines ``DIALECT``, a :class:`rxllm.proxy.dialect.Dialect`; adding a
dialect means adding one module (see :mod:`rxllm.proxy.dialect` for what it supplies).
:func:`load_dialects` imports them all, in name order, and :func:`rxllm.proxy.create_app`
serves every route they declare.
"""

from __future__ import annotations

import importlib
import pkgutil

from rxllm.proxy.dialect import Dialect

__all__ = ["load_dialects"]


def load_dialects() -> tuple[Dialect, ...]:
    """Every dialect module's ``DIALECT``, chat completions first, then by module name.

    Raises:
        TypeError: A dialect module's ``DIALECT`` is missing or not a :class:`Dialect`.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    names.sort(key=lambda name: name != "chat")
    found: list[Dialect] = []
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        dialect = getattr(module, "DIALECT", None)
        if not isinstance(dialect, Dialect):
            raise TypeError(f"{module.__name__}.DIALECT must be a rxllm.proxy.dialect.Dialect")
        found.append(dialect)
    return tuple(found)
