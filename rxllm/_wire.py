"""The wire codec: ``from_dict``, ``to_dict`` and the known keys, generated from one field table.

Each class of :mod:`rxllm.types` declares its fields once, as attrs fields made by
:func:`wire` (the annotation is the type; ``wire(...)`` says how the field travels), and is
decorated with :func:`wire_class`, which generates, from that table alone:

- ``from_dict(d)``: one ``d.get`` per key, nested objects decoded by the nested class's
  generated decoder, unknown keys into ``extra`` (the shared empty mapping when there are none),
  built in the decoder's own frame where the class allows it (a
  :func:`rxllm._fastnew.blank_sibling` called with no arguments, one slot store per field, the
  class swap: no constructor call), a one-element list without a list comprehension; nested
  fast classes (a chunk's choice, its delta, a tool call, its function) decoded inline, in
  the parent's frame (:data:`INLINE_DEPTH` levels; :func:`reference_decoder` is the same
  decoder without inlining, for tests);
- ``to_dict()``: the wire dict back, losslessly (``extra`` written back; ``None`` fields left
  out unless the field says ``always``);
- ``_known`` (the modelled wire keys) and ``_fields`` (the field names, in order);
- ``_wire_checked(d)``, for a class whose table (or a nested class's) declares a
  ``check=`` (:class:`Check`): ``from_dict`` that also tests each checked value as it stores
  it and returns ``None`` at the first that fails, so the provider boundary needs no second
  walk over the built objects (:func:`rxllm._validate.chunk_problem` states the same rules
  and names the field for the error message; a property test holds the two to agreement).

The generated code is then verified, at import time: every attrs field but ``extra`` must be
declared with :func:`wire`, ``extra`` must come last, and a probe dict (a distinct value per key,
nested probes for nested classes, an unknown key) must decode into an object whose every field
holds its own key's value and encode back to the same dict. A table that disagrees with its
class fails ``import rxllm``, never the first chunk.

Adding a wire field is one line in the class body, e.g. ``audio: str | None = wire(None)``;
a field the provider boundary checks also takes ``check=`` and a rule in
:func:`rxllm._validate.chunk_problem` (which names the field in the error).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs
import orjson

from rxllm._codecache import compiled
from rxllm._fastnew import blank_sibling

__all__ = ["EMPTY", "INLINE_DEPTH", "Kind", "hidden_key", "reference_decoder", "verify", "wire", "wire_class"]

_T = TypeVar("_T")

#: The metadata key under which :func:`wire` stores a field's :class:`Spec`.
_META: Final = "rxllm.wire"


class _Empty(Mapping[str, Any]):
    """The immutable, picklable empty mapping shared by every object with no unknown keys."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "EMPTY"


#: The shared immutable default for ``extra``: most objects carry no unknown keys.
EMPTY: Mapping[str, Any] = _Empty()


class Kind:
    """How a field's value travels (the ``kind=`` of :func:`wire`).

    ``ATOM``: as it is (strings, numbers, ``None``). ``TUPLE``: a JSON list kept as a tuple
    (written back as a list). ``JSON_TEXT``: a string; any other JSON value is stored as its
    JSON text. ``FLAG``: a bool, written only when true. ``DICTS``: a list of objects kept as a
    tuple of dicts. A wire class (``kind=Delta``): one nested object; ``(Delta,)``: a list of them.
    """

    ATOM: Final = "atom"
    TUPLE: Final = "tuple"
    JSON_TEXT: Final = "json_text"
    FLAG: Final = "flag"
    DICTS: Final = "dicts"


class Check:
    """What the provider boundary requires of a field's decoded value (the ``check=`` of :func:`wire`).

    The checked decoder (``_wire_checked``, see :func:`wire_class`) tests each value as it
    stores it and gives up (returns ``None``) at the first that fails, so a chunk it returns
    needs no second walk (:func:`rxllm._validate.chunk_problem` states the same rules, and
    names the field for the error message). Classes are compared by identity: a ``bool`` is
    not a count, a ``str`` subclass is not a string.

    ``STR``: a string. ``OPT_STR``: ``None`` or a string. ``NUMBER``: an int or a float.
    ``COUNT``: a non-negative int. ``OPT_COUNT``: ``None`` or a non-negative int.
    """

    STR: Final = "str"
    OPT_STR: Final = "str?"
    NUMBER: Final = "number"
    COUNT: Final = "count"
    OPT_COUNT: Final = "count?"


#: The condition (on the value named ``{v}``) under which each check fails.
_CHECK_FAILS: Final = {
    Check.STR: "{v}.__class__ is not _str",
    Check.OPT_STR: "{v} is not None and {v}.__class__ is not _str",
    Check.NUMBER: "{v}.__class__ is not _int and {v}.__class__ is not _float",
    Check.COUNT: "{v}.__class__ is not _int or {v} < 0",
    Check.OPT_COUNT: "{v} is not None and ({v}.__class__ is not _int or {v} < 0)",
}


@attrs.frozen
class Spec:
    """One row of a class's field table (see :func:`wire`)."""

    kind: Any
    key: str | None
    always: bool | None
    falsy_default: bool
    keep_null: bool
    required: bool
    hidden: bool
    solo: bool = False
    check: str | None = None


def wire(
    default: Any = attrs.NOTHING,
    *,
    kind: Any = Kind.ATOM,
    key: str | None = None,
    always: bool | None = None,
    falsy_default: bool = False,
    keep_null: bool = False,
    hash: bool | None = None,
    solo: bool = False,
    check: str | None = None,
) -> Any:
    """Declare one wire field (an ``attrs.field`` carrying its codec row).

    Args:
        default: The value when the key is absent or ``null``; no default makes the key required.
        kind: A :class:`Kind`, a wire class (one nested object) or a 1-tuple ``(cls,)`` (a list).
        key: The wire key, when it is not the field's name.
        always: Write the key even when the value is ``None`` (default: only fields whose
            default is not ``None`` are always written).
        falsy_default: Read any falsy wire value (``""``, ``0``, ``null``) as the default.
        keep_null: Read an absent or ``null`` key as ``None``, not the default (the default
            is then only the constructor's).
        hash: Passed to ``attrs.field``.
        solo: The key often arrives alone (a delta's ``content``): the decoder checks for that
            first and builds the object without looking up the other keys. Only for a plain
            field (``Kind.ATOM``, default ``None``) of a ``fast`` class.
        check: A :class:`Check` the checked decoder applies to the decoded value.

    Returns:
        The attrs field.

    Raises:
        TypeError: For an unknown ``check``.
    """
    if check is not None and check not in _CHECK_FAILS:
        raise TypeError(f"wire: unknown check {check!r}")
    spec = Spec(kind, key, always, falsy_default, keep_null, default is attrs.NOTHING, False, solo, check)
    return attrs.field(default=default, hash=hash, metadata={_META: spec})


def hidden_key(key: str) -> dict[str, Any]:
    """The metadata of a hidden wire key: ``attrs.field(default=None, init=False, eq=False,
    repr=False, hash=False, metadata=hidden_key("obfuscation"))``.

    A known key the model does not expose (OpenAI's ``obfuscation`` padding): stored in a
    private slot, so a chunk carrying it needs no ``extra`` dict of its own; ``extra`` still
    shows it (built when read) and ``to_dict`` writes it back. Not an ``__init__`` argument and
    not compared (``extra`` is). The class needs ``wire_class(fast=True)``. (Spelled as an
    ``attrs.field`` so type checkers see ``init=False``.)
    """
    return {_META: Spec(Kind.ATOM, key, None, False, False, False, True)}


# --------------------------------------------------------------------------- generation


def _rows(cls: type[Any]) -> list[tuple[str, str, Spec, Any]]:
    """``(field name, wire key, spec, default)`` for every wire field; refuses an incomplete table."""
    fields = attrs.fields(cls)
    if not fields or fields[-1].name != "extra":
        raise TypeError(f"wire_class: {cls.__name__}'s last field must be 'extra' (unknown keys)")
    rows = []
    for f in fields[:-1]:
        spec = f.metadata.get(_META)
        if spec is None:
            raise TypeError(f"wire_class: {cls.__name__}.{f.name} is not declared with wire()")
        rows.append((f.name, spec.key or f.name, spec, f.default))
    keys = [key for _, key, _, _ in rows]
    if len(set(keys)) != len(keys):
        raise TypeError(f"wire_class: {cls.__name__} declares a wire key twice: {keys}")
    return rows


def _nested(kind: Any) -> tuple[type[Any] | None, bool]:
    """``(wire class, is a list)`` for a nested kind, else ``(None, False)``."""
    if isinstance(kind, tuple) and len(kind) == 1 and isinstance(kind[0], type):
        return kind[0], True
    if isinstance(kind, type):
        return kind, False
    return None, False


def _decoder_name(cls: type[Any]) -> str:
    return f"_dec_{cls.__name__}"


#: How deep nested fast classes are decoded inline (chunk > choice > delta > tool call > function).
INLINE_DEPTH: Final = 4


def _decode_source(
    cls: type[Any],
    rows: list[tuple[str, str, Spec, Any]],
    ns: dict[str, Any],
    fast: bool,
    inline: int = INLINE_DEPTH,
    solo: bool = True,
    checked: bool = False,
) -> str:
    """The body of the decoder (after its ``def`` line): ``d`` is the wire dict.

    A ``fast`` class is built in the decoder's own frame: a blank sibling
    (:func:`rxllm._fastnew.blank_sibling`), one slot store per field, then the class swap (no
    attrs ``__init__``); any other class through its attrs ``__init__``. Nested fast classes are decoded inline, in
    the same frame, down to ``inline`` levels (a Python call less per nested object); deeper
    ones, and lists of more than one, call the nested class's decoder. ``solo`` fields (see
    :func:`wire`) get their shortcut unless ``solo`` is false. ``checked``: every value with
    a :class:`Check` (nested ones included) is tested as it is stored, and the decoder
    returns ``None`` at the first that fails.
    """
    lines, result = _decode_lines(cls, rows, "d", ns, fast, inline, [0], solo, checked)
    return "".join(f"    {line}\n" for line in [*lines, f"return {result}"])


def _has_checks(cls: type[Any]) -> bool:
    """Whether ``cls`` or a class nested in it declares a :class:`Check`."""
    for _name, _key, spec, _default in _rows(cls):
        if spec.check is not None:
            return True
        target, _many = _nested(spec.kind)
        if target is not None and _has_checks(target):
            return True
    return False


def _checked_list(decode: Callable[[Any], Any], items: Any) -> tuple[Any, ...] | None:
    """The checked decoding of a list: the tuple of objects, or ``None`` when one fails its checks."""
    out = []
    for item in items:
        obj = decode(item)
        if obj is None:
            return None
        out.append(obj)
    return tuple(out)


def _value_lines(
    cls: type[Any],
    i: int,
    row: tuple[str, str, Spec, Any],
    src: str,
    raw: str | None,
    tag: str,
    ns: dict[str, Any],
    fast: bool,
    inline: int,
    counter: list[int],
    solo: bool,
    checked: bool,
) -> list[str]:
    """Lines decoding field ``i`` (its wire value read from ``raw``, by default its key) into ``v{tag}_{i}``.

    A ``fast`` class's lines end with the slot store (``o{tag}.name = ...``).
    """
    name, key, spec, default = row
    o = f"o{tag}"
    v = f"v{tag}_{i}"
    dname = f"_default{tag}_{i}"
    ns[dname] = default
    if raw is None:
        raw = f"{src}[{key!r}]" if spec.required else f"get{tag}({key!r})"
    lines: list[str] = []
    target, many = _nested(spec.kind)
    if target is not None:
        ns[_decoder_name(target)] = target._wire_decode
        dec = _decoder_name(target)
        test = f"{v}" if default is not None else f"{v} is not None"
        sibling = getattr(target, "_wire_sibling", None)
        nested_checks = checked and _has_checks(target)
        if nested_checks:
            chk = f"_chk_{target.__name__}"
            ns[chk] = target._wire_checked
            ns["_checked_list"] = _checked_list
        if inline > 0 and sibling is not None:
            # the nested class's own decoding, here: no call, no frame
            item = f"w{tag}_{i}"
            inner, built = _decode_lines(
                target, _rows(target), item if many else v, ns, True, inline - 1, counter, solo, nested_checks
            )
            body = [f"    {line}" for line in inner]
            if many:  # one element (one choice, one tool call): inline; several: the decoder
                if nested_checks:
                    several = [
                        f"    if {test}:",
                        f"        {v} = _checked_list({chk}, {v})",
                        f"        if {v} is None:",
                        "            return None",
                        "    else:",
                        f"        {v} = {dname}",
                    ]
                else:
                    several = [f"    {v} = tuple([{dec}(x) for x in {v}]) if {test} else {dname}"]
                lines += [
                    f"{v} = {raw}",
                    f"if {v}.__class__ is list and len({v}) == 1:",
                    f"    {item} = {v}[0]",
                    *body,
                    f"    {v} = ({built},)",
                    "else:",
                    *several,
                ]
            else:
                lines += [f"{v} = {raw}", f"if {test}:", *body, f"    {v} = {built}", "else:", f"    {v} = {dname}"]
        elif nested_checks:
            call = f"_checked_list({chk}, {v})" if many else f"{chk}({v})"
            lines += [
                f"{v} = {raw}",
                f"if {test}:",
                f"    {v} = {call}",
                f"    if {v} is None:",
                "        return None",
                "else:",
                f"    {v} = {dname}",
            ]
        else:
            # one element needs no list comprehension (a frame in 3.11)
            built = (
                f"(({dec}({v}[0]),) if {v}.__class__ is list and len({v}) == 1 else tuple([{dec}(x) for x in {v}]))"
                if many
                else f"{dec}({v})"
            )
            lines += [f"{v} = {raw}", f"{v} = {built} if {test} else {dname}"]
    elif spec.kind == Kind.ATOM:
        if spec.falsy_default:
            lines.append(f"{v} = {raw} or {dname}")
        elif default is None or spec.required or spec.keep_null:
            lines.append(f"{v} = {raw}")
        else:
            lines += [f"{v} = {raw}", f"if {v} is None:", f"    {v} = {dname}"]
    elif spec.kind == Kind.TUPLE:
        lines += [f"{v} = {raw}", f"{v} = tuple({v}) if {v} is not None else {dname}"]
    elif spec.kind == Kind.DICTS:
        lines += [f"{v} = {raw}", f"{v} = tuple([dict(x) for x in {v}]) if {v} is not None else {dname}"]
    elif spec.kind == Kind.JSON_TEXT:
        lines += [
            f"{v} = {raw}",
            f"if {v} is None:",
            f"    {v} = {dname}",
            f"elif not isinstance({v}, str):",
            f"    {v} = _dumps({v}).decode()",
        ]
    elif spec.kind == Kind.FLAG:
        lines.append(f"{v} = bool({raw})")
    else:
        raise TypeError(f"wire_class: {cls.__name__}.{key}: unknown kind {spec.kind!r}")
    check = spec.check if checked else None
    if check is not None:  # the value as stored must pass, else the checked decoder gives up
        lines += [f"if {_CHECK_FAILS[check].format(v=v)}:", "    return None"]
    if fast:
        last = lines[-1]
        if check is None and last.startswith(f"{v} = "):  # the value's last expression: store it directly
            lines[-1] = f"{o}.{name} = " + last[len(f"{v} = ") :]
        else:
            lines.append(f"{o}.{name} = {v}")
    return lines


def _decode_lines(
    cls: type[Any],
    rows: list[tuple[str, str, Spec, Any]],
    src: str,
    ns: dict[str, Any],
    fast: bool,
    inline: int,
    counter: list[int],
    solo: bool = True,
    checked: bool = False,
) -> tuple[list[str], str]:
    """Lines (unindented) decoding the dict named ``src`` into a ``cls``; and the variable holding it.

    Every name is tagged per decoded class (``o``, ``o_1``...; ``_default_1_0``...), so inlined
    nested decoders do not collide with each other or with their parent.
    """
    tag = f"_{counter[0]}" if counter[0] else ""
    counter[0] += 1
    get, o, known = f"get{tag}", f"o{tag}", f"_known{tag}"
    ns[known] = cls._known
    ns[f"_known_all{tag}"] = cls._known.issuperset
    lines = [f"{get} = {src}.get"]
    if fast:
        ns[f"_sib{tag}"] = cls._wire_sibling
        lines.append(f"{o} = _sib{tag}()")
    args = []
    for i, row in enumerate(rows):
        lines += _value_lines(cls, i, row, src, None, tag, ns, fast, inline, counter, solo, checked)
        args.append(f"v{tag}_{i}")
    # frozenset.issuperset walks the dict's keys without building a set or a keys view
    extra = f"_EMPTY if _known_all{tag}({src}) else {{k: x for k, x in {src}.items() if k not in {known}}}"
    if fast:  # rxllm._fastnew's mutable sibling, filled in place: swap in the frozen class
        ns[f"_cls{tag}"] = cls
        lines += [f"{o}.extra = {extra}", f"{o}.__class__ = _cls{tag}"]
    else:
        ns[f"_new{tag}"] = cls
        lines += [f"extra{tag} = {extra}", f"{o} = _new{tag}({', '.join([*args, f'extra{tag}'])})"]
    solos = [row for row in rows if row[2].solo]
    if solo and solos:  # the shortcuts first; the general decoding (after ``get = ...``) as the else
        shortcuts = _solo_lines(cls, rows, solos, src, tag, fast, checked, ns, inline, counter)
        lines = [lines[0], *shortcuts, "else:", *(f"    {x}" for x in lines[1:])]
    return lines, o


def _solo_lines(
    cls: type[Any],
    rows: list[tuple[str, str, Spec, Any]],
    solos: list[Any],
    src: str,
    tag: str,
    fast: bool,
    checked: bool = False,
    ns: dict[str, Any] | None = None,
    inline: int = 0,
    counter: list[int] | None = None,
) -> list[str]:
    """``if``/``elif`` branches building the object from a dict holding one ``solo`` key alone.

    Every other field then holds what the general path gives an absent key (its default;
    ``False`` for a flag; ``None`` for a hidden or ``keep_null`` key), and ``extra`` is the
    shared empty mapping. A plain solo value is stored as it is; a JSON-text or nested one is
    decoded as the general path decodes it. ``checked``: the solo value passes its field's
    checks, or the decoder returns ``None``.

    Raises:
        TypeError: For a ``solo`` field that is not plain, or a class with a required key.
    """
    for _name, key, spec, _default in rows:
        if spec.required:
            raise TypeError(f"wire_class: {cls.__name__}: solo keys need every key optional ({key!r} is required)")
    for name, _key, spec, default in solos:
        plain = spec.kind == Kind.ATOM and not spec.falsy_default
        decoded = spec.kind == Kind.JSON_TEXT or _nested(spec.kind)[0] is not None
        if not fast or not (plain or decoded) or default is not None or spec.hidden:
            raise TypeError(
                f"wire_class: {cls.__name__}.{name}: solo is for a plain field (ATOM, default None), "
                "or a JSON-text or nested one with default None"
            )
    o, s = f"o{tag}", f"s{tag}"
    out = []
    for n, (solo_name, solo_key, solo_spec, _default) in enumerate(solos):
        test = f"len({src}) == 1 and ({s} := get{tag}({solo_key!r})) is not None"
        out.append(f"{'if' if n == 0 else 'elif'} {test}:")
        atom = solo_spec.kind == Kind.ATOM
        if checked and atom and solo_spec.check is not None:
            out += [f"    if {_CHECK_FAILS[solo_spec.check].format(v=s)}:", "        return None"]
        out.append(f"    {o} = _sib{tag}()")
        for i, row in enumerate(rows):
            name, _key, spec, _default = row
            if name == solo_name and not atom:  # decoded from the solo value, as the general path would
                assert ns is not None and counter is not None
                lines = _value_lines(cls, i, row, src, s, tag, ns, fast, inline, counter, True, checked)
                out += [f"    {line}" for line in lines]
                continue
            if name == solo_name:
                value = s
            elif spec.kind == Kind.FLAG:
                value = "False"
            elif spec.keep_null or spec.hidden:
                value = "None"
            else:
                value = f"_default{tag}_{i}"
            out.append(f"    {o}.{name} = {value}")
        out += [f"    {o}.extra = _EMPTY", f"    {o}.__class__ = _cls{tag}"]
    return out


def reference_decoder(cls: type[Any]) -> Callable[[Mapping[str, Any]], Any]:
    """``cls``'s decoder without inlining or ``solo`` shortcuts (each nested object through its class's decoder).

    For tests: the inlined ``from_dict`` must agree with it on any wire dict.
    """
    ns: dict[str, Any] = {"_EMPTY": EMPTY, "_dumps": orjson.dumps}
    body = _decode_source(cls, _rows(cls), ns, cls._wire_sibling is not None, inline=0, solo=False)
    for _name, _key, spec, _default in _rows(cls):
        target, _many = _nested(spec.kind)
        if target is not None:  # nested objects through their own reference decoders, too
            ns[_decoder_name(target)] = reference_decoder(target)
    exec(compile(f"def decode(d):\n{body}", f"<rxllm.wire {cls.__name__} reference>", "exec"), ns)  # noqa: S102
    return ns["decode"]  # type: ignore[no-any-return]


def _encode_source(cls: type[Any], rows: list[tuple[str, str, Spec, Any]], order: tuple[str, ...]) -> str:
    by_key = {key: (name, spec, default) for name, key, spec, default in rows}
    unknown = [k for k in order if k not in by_key]
    if unknown:
        raise TypeError(f"wire_class: {cls.__name__}: encode order names unknown keys {unknown}")
    keys = list(order) + [k for k in by_key if k not in order]
    lines = ["def to_dict(self):", "    out = {}"]
    for key in keys:
        name, spec, default = by_key[key]
        always = spec.always if spec.always is not None else (default is not None or spec.required)
        target, many = _nested(spec.kind)
        x = f"self.{name}"
        if target is not None:
            value = "[y.to_dict() for y in x]" if many else "x.to_dict()"
        elif spec.kind in (Kind.TUPLE, Kind.DICTS):
            value = "list(x)" if spec.kind == Kind.TUPLE else "[dict(y) for y in x]"
        else:
            value = "x"
        if spec.kind == Kind.FLAG:
            lines += [f"    if {x}:", f"        out[{key!r}] = True"]
        elif always and value == "x":
            lines.append(f"    out[{key!r}] = {x}")
        elif always:
            lines += [f"    x = {x}", f"    out[{key!r}] = {value} if x is not None else None"]
        else:
            lines += [f"    x = {x}", "    if x is not None:", f"        out[{key!r}] = {value}"]
    # (identity first: the shared empty mapping's len() is Python code)
    lines += ["    extra = self.extra", "    if extra is not _EMPTY and extra:"]
    lines += ["        out.update(extra)", "    return out"]
    return "\n".join(lines) + "\n"


def wire_class(*, order: tuple[str, ...] = (), fast: bool = False) -> Callable[[type[_T]], type[_T]]:
    """Generate and verify ``from_dict``/``to_dict``/``_known``/``_fields`` from the class's field table.

    Apply above ``@attrs.frozen``.

    Args:
        order: Wire keys ``to_dict`` writes first, in this order (the rest follow in field order).
        fast: Build objects through :func:`rxllm._fastnew.blank_sibling` (the class must be made
            with :func:`rxllm._fastnew.slotted_base`); otherwise with the class itself.

    Returns:
        The class decorator (which also sets ``_wire_checked``: the checked decoder, or the
        plain one when no field of the class or of its nested classes has a check).

    Raises:
        TypeError: At class creation, when the table is incomplete or does not verify.
    """

    def decorate(cls: type[_T]) -> type[_T]:
        rows = _rows(cls)
        known = frozenset(key for _, key, _, _ in rows)
        cls._known = known  # type: ignore[attr-defined]
        cls._wire_sibling = blank_sibling(cls) if fast else None  # type: ignore[attr-defined]
        ns: dict[str, Any] = {"_EMPTY": EMPTY, "_dumps": orjson.dumps, "_str": str, "_int": int, "_float": float}
        body = _decode_source(cls, rows, ns, fast)
        # the same body twice: a plain function for nested decoding, a classmethod for users
        source = f"def decode(d):\n{body}\ndef from_dict(cls, d):\n{body}\n" + _encode_source(cls, rows, order)
        checks = _has_checks(cls)
        if checks:  # the decoder that also checks every value it stores (the provider boundary's)
            source += f"\ndef checked(d):\n{_decode_source(cls, rows, ns, fast, checked=True)}"
        exec(compiled(source, f"<rxllm.wire {cls.__name__}>"), ns)  # noqa: S102
        decode, from_dict, encode = ns["decode"], ns["from_dict"], ns["to_dict"]
        decode.__qualname__ = f"{cls.__qualname__}._wire_decode"
        checked = ns["checked"] if checks else decode
        if checks:
            checked.__qualname__ = f"{cls.__qualname__}._wire_checked"
        cls._wire_checked = staticmethod(checked)  # type: ignore[attr-defined]
        from_dict.__doc__ = f"Build a ``{cls.__name__}`` from its wire dict (unknown keys go to ``extra``)."
        from_dict.__qualname__ = f"{cls.__qualname__}.from_dict"
        encode.__doc__ = "The wire dict (keys kept in ``extra`` written back)."
        encode.__qualname__ = f"{cls.__qualname__}.to_dict"
        cls._wire_decode = staticmethod(decode)  # type: ignore[attr-defined]
        cls.from_dict = classmethod(from_dict)  # type: ignore[attr-defined]
        cls.to_dict = encode  # type: ignore[attr-defined]
        cls._known = known  # type: ignore[attr-defined]
        cls._fields = tuple(name for name, _, _, _ in rows)  # type: ignore[attr-defined]
        cls._wire_probe = _probe(cls, rows)  # type: ignore[attr-defined]
        hidden = [(name, key) for name, key, spec, _ in rows if spec.hidden]
        for f in attrs.fields(cls):  # type: ignore[arg-type]
            spec = f.metadata.get(_META)
            if spec is not None and spec.hidden and (f.init or f.eq or f.repr is not False or f.default is not None):
                raise TypeError(
                    f"wire_class: {cls.__name__}.{f.name}: a hidden key needs init/eq/repr off, default None"
                )
        if hidden:
            if not fast:
                raise TypeError(f"wire_class: {cls.__name__}: hidden keys need fast=True (a slotted_base layout)")
            _show_hidden(cls, hidden)
        else:
            cls._unknown_keys = operator.attrgetter("extra")  # type: ignore[attr-defined]
        verify(cls)
        return cls

    return decorate


def _show_hidden(cls: type[Any], hidden: list[tuple[str, str]]) -> None:
    """Make ``extra`` read the unknown keys plus the hidden ones that are set (built when read).

    The slot keeps only the unknown keys; a property on the frozen class, above the slot's
    descriptor in the base, adds the hidden keys. attrs' ``__init__`` (and ``evolve``, pickling)
    store ``extra`` through ``object.__setattr__``, which reaches the property's setter;
    assignment by users still meets the frozen class's ``__setattr__``.
    """
    slots = cls.__mro__[1].__dict__
    raw = slots["extra"]
    hidden_slots = [(slots[name].__get__, key) for name, key in hidden]
    raw_get, raw_set = raw.__get__, raw.__set__

    def get_extra(self: Any) -> Mapping[str, Any]:
        extra = raw_get(self)
        shown = None
        for get, key in hidden_slots:
            value = get(self)
            if value is not None:
                if shown is None:
                    shown = dict(extra)
                shown[key] = value
        return extra if shown is None else shown

    def set_extra(self: Any, value: Mapping[str, Any]) -> None:
        raw_set(self, value)

    cls.extra = property(get_extra, set_extra, doc="Wire keys rxllm does not model, as sent.")
    cls._unknown_keys = staticmethod(raw_get)


# --------------------------------------------------------------------------- verification


def _probe(cls: type[Any], rows: list[tuple[str, str, Spec, Any]]) -> Callable[[str], dict[str, Any]]:
    """A function making a probe wire dict: a distinct, well-typed value for every key."""

    def make(tag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, (name, key, spec, _default) in enumerate(rows):
            mark = f"{tag}.{name}"
            target, many = _nested(spec.kind)
            if target is not None:
                nested = target._wire_probe(mark)
                out[key] = [nested] if many else nested
            elif spec.kind == Kind.TUPLE:
                out[key] = [mark, n]
            elif spec.kind == Kind.DICTS:
                out[key] = [{"probe": mark}]
            elif spec.kind == Kind.FLAG:
                out[key] = True
            elif spec.check in (Check.NUMBER, Check.COUNT, Check.OPT_COUNT):
                out[key] = 1000 + n  # a value its check passes, distinct from every other field's
            else:
                out[key] = mark
        return out

    return make


def _expected(spec: Spec, raw: Any) -> Any:
    target, many = _nested(spec.kind)
    if target is not None:
        return tuple(target._wire_decode(x) for x in raw) if many else target._wire_decode(raw)
    if spec.kind in (Kind.TUPLE, Kind.DICTS):
        return tuple(raw)
    return raw


def verify(cls: type[Any]) -> None:
    """Check that ``cls``'s generated codec agrees with its fields (run at import for every class).

    A probe dict with a distinct value for every key (and one unknown key; numbers where a
    check wants them) must decode into an object whose every field holds exactly its key's
    value, whose ``extra`` holds just the unknown key, and which encodes back to the probe;
    the checked decoder, if the class has one, must build the same object from it.

    Raises:
        TypeError: Naming the first field that does not read back, or the lossy round trip.
    """
    rows = _rows(cls)
    probe = cls._wire_probe(cls.__name__)
    probe["x_rxllm_probe"] = [1, "unknown"]
    obj = cls.from_dict(probe)
    if type(obj) is not cls:
        raise TypeError(f"wire_class: {cls.__name__}.from_dict built a {type(obj).__name__}")
    for name, key, spec, _default in rows:
        try:
            got = getattr(obj, name)
        except AttributeError:
            raise TypeError(f"wire_class: {cls.__name__}.from_dict leaves field {name!r} unset") from None
        want = _expected(spec, probe[key])
        if got != want:
            raise TypeError(f"wire_class: {cls.__name__}.{name} reads {got!r} from key {key!r}, expected {want!r}")
    shown = {key: probe[key] for _, key, spec, _ in rows if spec.hidden}
    if dict(obj.extra) != {"x_rxllm_probe": [1, "unknown"], **shown}:
        raise TypeError(f"wire_class: {cls.__name__}.extra does not hold exactly the unknown keys: {obj.extra!r}")
    checked = cls._wire_checked
    if checked is not cls._wire_decode:  # the checked decoder must build the same object from a sound probe
        twin = checked(probe)
        if twin is None:
            raise TypeError(f"wire_class: {cls.__name__}'s checked decoder refuses its sound probe")
        if twin != obj or twin.to_dict() != obj.to_dict() or dict(twin.extra) != dict(obj.extra):
            raise TypeError(f"wire_class: {cls.__name__}'s checked decoder builds another object than from_dict")
    back = obj.to_dict()
    if back != probe:
        diff = sorted(k for k in {*back, *probe} if back.get(k) != probe.get(k))
        raise TypeError(f"wire_class: {cls.__name__} does not round-trip its wire dict (keys {diff})")
