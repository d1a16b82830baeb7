"""A positional constructor for frozen attrs classes that costs plain slot stores.

attrs' frozen ``__init__`` stores each field through ``object.__setattr__`` (about 45 ns a
field, three times a plain slot store). The wire model builds several objects per streamed
chunk, so :mod:`rxllm.types` builds them here instead:

1. :func:`slotted_base`, applied *under* ``@attrs.frozen``, moves the class's fields into a
   plain slotted base class (attrs then adds no slots of its own: they exist in the base);
2. :func:`positional_new` makes a mutable sibling of the frozen class over that same base,
   whose ``__init__`` is nothing but slot stores, and returns ``build(*fields)``: it fills a
   sibling and swaps its ``__class__`` to the frozen class (legal: the layouts are identical).

The trick skips whatever attrs' ``__init__`` would do besides storing: validators,
converters, ``on_setattr`` hooks, ``__attrs_pre_init__``/``__attrs_post_init__``, defaults and
factories (every field is passed). So :func:`positional_new` refuses a class that has any of
those, or whose slot layout is not exactly its fields in order, and checks the built object
reads back every value it was given before returning: a layout change fails at import time,
never at the first chunk.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["blank_sibling", "mutable_sibling", "positional_new", "slotted_base"]

_T = TypeVar("_T")

#: Marks the base classes :func:`slotted_base` made, with the field names they hold.
_MARK = "__rxllm_slot_fields__"


def slotted_base(cls: type[_T]) -> type[_T]:
    """Rebuild ``cls`` over a plain base class holding one slot per annotated field, in order.

    Apply it under ``@attrs.frozen`` (``weakref_slot=False``): attrs reuses the base's slots.

    Raises:
        TypeError: When ``cls`` already declares ``__slots__`` or has no fields.
    """
    if "__slots__" in cls.__dict__:
        raise TypeError(f"slotted_base: {cls.__name__} declares __slots__ itself")
    annotations = inspect.get_annotations(cls)
    names = tuple(n for n, a in annotations.items() if not str(a).startswith("ClassVar"))
    if not names:
        raise TypeError(f"slotted_base: {cls.__name__} has no fields")
    base = type(f"_{cls.__name__}Slots", cls.__bases__, {"__slots__": names, _MARK: names})
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    rebased = type(cls.__name__, (base,), namespace)
    rebased.__qualname__ = cls.__qualname__
    rebased.__module__ = cls.__module__
    return rebased


def _refusal(cls: type[Any]) -> str | None:
    """Why :func:`positional_new` cannot build ``cls`` faithfully, or ``None``."""
    if not attrs.has(cls):
        return "it is not an attrs class"
    if cls.__dictoffset__:
        return "its instances have a __dict__ (not slotted)"
    for hook in ("__attrs_pre_init__", "__attrs_post_init__"):
        if hasattr(cls, hook):
            return f"it defines {hook}"
    fields = attrs.fields(cls)
    for f in fields:
        if f.validator is not None:
            return f"field {f.name!r} has a validator"
        if f.converter is not None:
            return f"field {f.name!r} has a converter"
        if f.on_setattr is not None and f.on_setattr is not attrs.setters.NO_OP:
            return f"field {f.name!r} has an on_setattr hook"
    base = cls.__mro__[1]
    held = base.__dict__.get(_MARK)
    if held is None:
        return "its fields are not in a slotted_base() base class"
    names = tuple(f.name for f in fields)
    if held != names:
        return f"its slot layout {held} is not its fields in order {names}"
    own = [s for c in cls.__mro__[: cls.__mro__.index(base)] for s in c.__dict__.get("__slots__", ())]
    if own:
        return f"it adds slots {own} of its own"
    return None


def mutable_sibling(cls: type[Any]) -> type[Any]:
    """The verified mutable sibling of ``cls``: ``sibling(*values)`` then ``obj.__class__ = cls``.

    For generated code that inlines :func:`positional_new`'s steps: ``sibling(*values)``, or
    ``object.__new__(sibling)`` and a store of every slot in the generated code's own frame (no
    call at all), then the class swap. Code that allocates blank siblings must store every
    field before the swap (:func:`rxllm._wire.verify` checks the generated decoders do). The
    same checks as :func:`positional_new` apply.

    Raises:
        TypeError: As :func:`positional_new`.
    """
    names = _buildable_fields(cls)
    params = [f"v{i}" for i in range(len(names))]
    body = "".join(f"    self.{n} = {p}\n" for n, p in zip(names, params, strict=True))
    namespace: dict[str, Any] = {}
    exec(f"def __init__(self, {', '.join(params)}):\n{body}", namespace)  # noqa: S102
    sibling = type(f"_{cls.__name__}New", (cls.__mro__[1],), {"__slots__": (), "__init__": namespace["__init__"]})
    _check_reads_back(cls, names, lambda probe: sibling(*probe))
    return sibling


def blank_sibling(cls: type[Any]) -> type[Any]:
    """The verified blank sibling of ``cls``: ``o = sibling()``, a store of every slot, ``o.__class__ = cls``.

    :func:`mutable_sibling` without its ``__init__``: calling a class that has none costs less
    than ``object.__new__(sibling)`` (the generated decoders store every slot themselves). The
    same checks as :func:`positional_new` apply.

    Raises:
        TypeError: As :func:`positional_new`.
    """
    names = _buildable_fields(cls)
    sibling = type(f"_{cls.__name__}Blank", (cls.__mro__[1],), {"__slots__": ()})

    def fill(probe: list[object]) -> Any:
        obj = sibling()
        for name, value in zip(names, probe, strict=True):
            setattr(obj, name, value)
        return obj

    _check_reads_back(cls, names, fill)
    return sibling


def _buildable_fields(cls: type[Any]) -> list[str]:
    """``cls``'s field names, in order, once :func:`_refusal` has nothing against it."""
    why = _refusal(cls)
    if why is not None:
        raise TypeError(f"positional_new: cannot build {cls.__name__}: {why}")
    return [f.name for f in attrs.fields(cls)]


def _check_reads_back(cls: type[Any], names: list[str], build: Callable[[list[object]], Any]) -> None:
    """Build a probe sibling (a distinct value per field), swap it to ``cls``: every slot must read back."""
    slots = [cls.__mro__[1].__dict__[n] for n in names]  # the member descriptors, below any property
    probe = [object() for _ in names]
    obj = build(probe)
    obj.__class__ = cls
    if type(obj) is not cls or [s.__get__(obj) for s in slots] != probe:
        raise TypeError(f"positional_new: a probe {cls.__name__} does not read back its fields")


def positional_new(cls: type[_T]) -> Callable[..., _T]:
    """A constructor taking every field of ``cls`` positionally, in field order, at slot-store cost.

    Args:
        cls: A frozen attrs class built with :func:`slotted_base` and nothing that runs at
            ``__init__`` besides storing.

    Returns:
        ``build(*values) -> cls`` (one value per field, in ``attrs.fields`` order).

    Raises:
        TypeError: When ``cls`` has what the constructor would skip (validators,
            converters, ``on_setattr`` hooks, init hooks), a slot layout that is not its
            fields in order, or when a probe object does not read back what it was given.
    """
    sibling = mutable_sibling(cls)

    def build(*values: Any) -> _T:
        obj = sibling(*values)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    return build
