"""Structured output: a target (JSON schema, pydantic model or attrs class) and its validation.

:class:`OutputSchema` wraps what the caller gave and knows how to check a parsed value and
turn it into the final object:

- a JSON schema ``dict`` (or an OpenAI ``response_format`` / tool definition holding one):
  the value is checked by rxllm's own validator for the subset of JSON Schema that
  structured-output APIs use (``type`` incl. lists of types, ``properties``, ``required``,
  ``additionalProperties``, ``items``, ``prefixItems``, ``enum``, ``const``, ``anyOf`` /
  ``oneOf`` / ``allOf``, ``$ref`` into ``$defs`` / ``definitions``, string / number / array
  bounds, ``nullable``). Other keywords (``format``, ``pattern``...) are not checked. The
  ``jsonschema`` package is not used, so results do not depend on what is installed.
- a pydantic model class (duck-typed: ``model_validate``): pydantic validates (pydantic is
  never imported by rxllm).
- an attrs class: built from the object's keys (nested attrs classes, lists of them and
  optional fields follow the annotations); attrs validators and converters run.

:func:`response_format` builds the OpenAI ``response_format`` for any of the three.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from rxllm.errors import JSONSchemaValidationError

__all__ = ["OutputSchema", "StructuredFinal", "StructuredPartial", "json_schema_of", "response_format", "validate"]


@attrs.frozen
class StructuredPartial:
    """The structured output so far: a partial JSON value (see :mod:`rxllm.partial_json`), unvalidated."""

    value: Any


@attrs.frozen
class StructuredFinal:
    """The complete structured output, validated.

    Attributes:
        value: The validated object: the parsed JSON (schema dict), a pydantic model
            instance, or an attrs instance.
        raw: The raw JSON text the model produced.
    """

    value: Any
    raw: str


# --------------------------------------------------------------------------- JSON schema subset

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    t = _TYPES.get(name)
    return t is not None and isinstance(value, t) and not (t is not bool and isinstance(value, bool))


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        raise ValueError(f"unsupported $ref {ref!r} (only local references)")
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part] if isinstance(node, Mapping) else node[int(part)]
    return node  # type: ignore[no-any-return]


def _check(value: Any, schema: Any, root: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if schema is True or schema is None:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, Mapping):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        _check(value, _resolve(ref, root), root, path, errors)
    if value is None and schema.get("nullable") is True:
        return
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_is_type(value, k) for k in kinds):
            errors.append(f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}")
            return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {list(schema['enum'])!r}")
    for sub in schema.get("allOf") or ():
        _check(value, sub, root, path, errors)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options and not any(_valid(value, sub, root, path) for sub in options):
            errors.append(f"{path}: matches none of the {key} alternatives")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        extra_ok = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub_path = f"{path}.{name}"
            if name in props:
                _check(item, props[name], root, sub_path, errors)
            elif extra_ok is False:
                errors.append(f"{path}: unexpected property {name!r}")
            elif isinstance(extra_ok, Mapping):
                _check(item, extra_ok, root, sub_path, errors)
    elif isinstance(value, list):
        prefix = schema.get("prefixItems") or ()
        for i, item in enumerate(value):
            if i < len(prefix):
                _check(item, prefix[i], root, f"{path}[{i}]", errors)
            elif "items" in schema:
                _check(item, schema["items"], root, f"{path}[{i}]", errors)
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: greater than {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: not greater than {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{path}: not less than {schema['exclusiveMaximum']}")
        step = schema.get("multipleOf")
        if step and not math.isclose(value / step, round(value / step)):
            errors.append(f"{path}: not a multiple of {step}")


def _valid(value: Any, schema: Any, root: Mapping[str, Any], path: str) -> bool:
    errors: list[str] = []
    _check(value, schema, root, path, errors)
    return not errors


def validate(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Check a JSON value against a JSON schema (the subset in the module docstring).

    Args:
        value: The parsed JSON value.
        schema: The JSON schema.

    Returns:
        One message per problem (``[]`` when the value is valid), each starting with the
        path of the offending value (``$.items[2].name``).
    """
    errors: list[str] = []
    _check(value, schema, schema, "$", errors)
    return errors


# --------------------------------------------------------------------------- attrs classes

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _schema_of_type(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if tp is Any:
        return {}
    if attrs.has(tp):
        return json_schema_of(tp)
    if origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        item = args[0] if args else Any
        return {"type": "array", "items": _schema_of_type(item)}
    if origin in (dict, Mapping):
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": _schema_of_type(value)}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if args and (origin is typing.Union or str(origin) == "<class 'types.UnionType'>"):
        return {"anyOf": [_schema_of_type(a) for a in args]}
    return {}


def json_schema_of(cls: type) -> dict[str, Any]:
    """A JSON schema for an attrs class (strict: every field required, no extra keys).

    Args:
        cls: An attrs class whose field annotations use str, int, float, bool, None,
            list/tuple/dict, Literal, unions, Any and other attrs classes.

    Returns:
        The JSON schema ``dict``.
    """
    hints = typing.get_type_hints(cls)
    props = {f.name: _schema_of_type(hints.get(f.name, Any)) for f in attrs.fields(cls)}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def _build(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) converted to annotation ``tp`` where attrs classes are involved."""
    if attrs.has(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{tp.__name__} needs an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in attrs.fields(tp):
            key = f.alias or f.name
            if f.name in value:
                kwargs[key] = _build(hints.get(f.name, Any), value[f.name])
        unknown = set(value) - {f.name for f in attrs.fields(tp)}
        if unknown:
            raise TypeError(f"{tp.__name__} has no field(s) {sorted(unknown)}")
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list) and args:
        items = [_build(args[0], v) for v in value]
        return origin(items) if origin is not list else items
    if args and (origin is typing.Union or str(origin) == "<class 'types.UnionType'>"):
        for a in args:
            if attrs.has(a) and isinstance(value, dict):
                return _build(a, value)
    return value


# --------------------------------------------------------------------------- the target


class OutputSchema:
    """What structured output must be: a JSON schema, a pydantic model class or an attrs class.

    Args:
        target: A JSON schema ``dict``; an OpenAI ``response_format``
            (``{"type": "json_schema", "json_schema": {"schema": ...}}``); a tool definition
            (``{"type": "function", "function": {"name": ..., "parameters": ...}}``, whose
            name then selects the tool call to read); a pydantic model class; an attrs class.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.tool_name: str | None = None
        self.schema: Mapping[str, Any] | None = None
        self.kind = "schema"
        if isinstance(target, Mapping):
            if target.get("type") == "json_schema" and isinstance(target.get("json_schema"), Mapping):
                self.schema = target["json_schema"].get("schema") or {}
            elif target.get("type") == "function" and isinstance(target.get("function"), Mapping):
                self.tool_name = target["function"].get("name")
                self.schema = target["function"].get("parameters") or {}
            else:
                self.schema = target
        elif isinstance(target, type) and callable(getattr(target, "model_validate", None)):
            self.kind = "pydantic"
        elif isinstance(target, type) and attrs.has(target):
            self.kind = "attrs"
        else:
            raise TypeError(
                f"structured output needs a JSON schema dict, a pydantic model class or an attrs class, got {target!r}"
            )

    @property
    def name(self) -> str:
        """A short name for messages (the class name, or the schema's title)."""
        if self.kind != "schema":
            return str(self.target.__name__)
        title = self.schema.get("title") if self.schema else None
        return str(title or self.tool_name or "schema")

    def _error(self, raw: str, errors: list[str]) -> JSONSchemaValidationError:
        shown = "; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        return JSONSchemaValidationError(
            f"the structured output does not match {self.name}: {shown}",
            raw_response=raw,
            schema=self.schema if self.kind == "schema" else self.name,
            errors=errors,
        )

    def parse(self, raw: str) -> Any:
        """Parse and validate the raw JSON text into the final object.

        Raises:
            JSONSchemaValidationError: When the text is not JSON or does not validate
                (the raw text is on ``error.raw_response``).
        """
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self._error(raw, [f"$: not valid JSON ({exc})"]) from None
        if self.kind == "schema":
            assert self.schema is not None
            problems = validate(value, self.schema)
            if problems:
                raise self._error(raw, problems)
            return value
        if self.kind == "pydantic":
            try:
                return self.target.model_validate(value)
            except Exception as exc:  # pydantic.ValidationError (pydantic is not imported here)
                lines = [f"$.{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in _pydantic_errors(exc)]
                raise self._error(raw, lines or [str(exc)]) from None
        try:
            return _build(self.target, value)
        except (TypeError, ValueError) as exc:
            raise self._error(raw, [f"$: {exc}"]) from None


def _pydantic_errors(exc: Exception) -> list[dict[str, Any]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        return list(errors())
    except Exception:
        return []


def response_format(target: Any, *, name: str | None = None, strict: bool = True) -> dict[str, Any]:
    """The OpenAI ``response_format`` asking a model for output matching ``target``.

    Args:
        target: A JSON schema ``dict``, a pydantic model class or an attrs class.
        name: The schema's name (default: the class name or ``"output"``).
        strict: Ask for strict schema adherence.

    Returns:
        ``{"type": "json_schema", "json_schema": {"name": ..., "schema": ..., "strict": ...}}``.
    """
    if isinstance(target, Mapping):
        schema = dict(target)
    elif isinstance(target, type) and callable(getattr(target, "model_json_schema", None)):
        schema = target.model_json_schema()  # type: ignore[attr-defined]
    elif isinstance(target, type) and attrs.has(target):
        schema = json_schema_of(target)
    else:
        raise TypeError(f"response_format needs a JSON schema dict, a pydantic model or an attrs class, got {target!r}")
    label = name or getattr(target, "__name__", None) or "output"
    return {"type": "json_schema", "json_schema": {"name": label, "schema": schema, "strict": strict}}
