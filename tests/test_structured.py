"""structured_output and rxllm.structured: partial objects, validated finals, typed errors, three target kinds."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pydantic
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import content_chunk, finish_chunk, load_fixture_chunks, tool_chunk, tool_fragment

from rxllm import operators as ops
from rxllm.errors import JSONSchemaValidationError
from rxllm.structured import OutputSchema, StructuredFinal, StructuredPartial, json_schema_of, response_format, validate

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@attrs.frozen
class Pet:
    kind: str
    legs: int


@attrs.frozen
class Person:
    name: str
    age: int
    pets: list[Pet] = attrs.field(factory=list)


class PersonModel(pydantic.BaseModel):
    name: str
    age: int


def run(target: Any, chunks: list[Any], **kw: Any) -> tuple[list[Any], list[Exception]]:
    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(chunks).pipe(ops.structured_output(target, **kw)).subscribe(out.append, errors.append)
    return out, errors


def text_stream(*pieces: str) -> list[Any]:
    return [content_chunk(p) for p in pieces] + [finish_chunk()]


class TestStructuredOutput:
    def test_partials_grow_then_one_validated_final(self) -> None:
        """Partial objects are emitted as the JSON grows (numbers withheld), then one final dict."""
        out, errors = run(SCHEMA, text_stream('{"name": "Ad', 'a", "age": 3', '6, "tags": []}'))

        assert errors == []
        assert out == [
            StructuredPartial({"name": "Ad"}),
            StructuredPartial({"name": "Ada"}),
            StructuredPartial({"name": "Ada", "age": 36, "tags": []}),
            StructuredFinal({"name": "Ada", "age": 36, "tags": []}, '{"name": "Ada", "age": 36, "tags": []}'),
        ]

    def test_pydantic_and_attrs_targets(self) -> None:
        """A pydantic model class or an attrs class gives an instance (nested attrs classes included)."""
        raw = '{"name": "Ada", "age": 36, "pets": [{"kind": "cat", "legs": 4}]}'
        with_pets, _ = run(Person, text_stream(raw[:20], raw[20:]))
        model, _ = run(PersonModel, text_stream('{"name": "Ada", "age": 36}'))

        assert with_pets[-1] == StructuredFinal(Person("Ada", 36, [Pet("cat", 4)]), raw)
        assert model[-1].value == PersonModel(name="Ada", age=36)

    @pytest.mark.parametrize(
        ("target", "raw", "fragment"),
        [
            (SCHEMA, '{"name": "", "age": -1}', "shorter than 1"),
            (SCHEMA, '{"name": "x", "age": 1, "extra": 1}', "unexpected property 'extra'"),
            (SCHEMA, '{"name": "x"}', "missing required property 'age'"),
            (PersonModel, '{"name": "x", "age": "old"}', "$.age"),
            (Person, '{"name": "x", "age": 1, "nope": 2}', "nope"),
            (SCHEMA, '{"name": "x", "age": ', "not valid JSON"),
        ],
    )
    def test_invalid_final_is_a_typed_error_with_the_raw_text(self, target: Any, raw: str, fragment: str) -> None:
        """A final text that does not validate errors with JSONSchemaValidationError carrying the raw text."""
        _out, errors = run(target, text_stream(raw))

        assert len(errors) == 1
        err = errors[0]
        assert isinstance(err, JSONSchemaValidationError)
        assert err.raw_response == raw
        assert fragment in str(err)

    def test_tool_schema_reads_the_tool_arguments(self) -> None:
        """With a tool definition, the named tool call's arguments are the output; other calls are ignored."""
        tool = {"type": "function", "function": {"name": "person", "parameters": SCHEMA}}
        chunks = [
            tool_chunk(tool_fragment(0, "c0", "other", '{"x": 1}')),
            tool_chunk(tool_fragment(1, "c1", "person", '{"name": "Bo", ')),
            tool_chunk(tool_fragment(1, arguments='"age": 5}')),
            finish_chunk("tool_calls"),
        ]
        out, errors = run(tool, chunks)

        assert errors == []
        assert out[-1] == StructuredFinal({"name": "Bo", "age": 5}, '{"name": "Bo", "age": 5}')
        assert StructuredPartial({"name": "Bo"}) in out

    def test_refusal_and_missing_output_are_errors(self) -> None:
        """A refusal instead of content, or a stream without the tool call, errors with JSONSchemaValidationError."""
        from strategies import make_chunk

        _o1, refused = run(SCHEMA, [make_chunk({"index": 0, "delta": {"refusal": "No."}}), finish_chunk()])
        _o2, missing = run(SCHEMA, [content_chunk("hi")], tool="person")

        assert isinstance(refused[0], JSONSchemaValidationError) and "refused" in str(refused[0])
        assert isinstance(missing[0], JSONSchemaValidationError) and "without structured output" in str(missing[0])

    def test_n3_fixture_each_choice(self) -> None:
        """Each choice of the recorded n=3 json_schema stream parses to a valid object of its own."""
        chunks = load_fixture_chunks("openai/n3_choices.sse")
        finals = []
        for i in range(3):
            out, errors = run({"type": "object"}, chunks, choice=i)
            assert errors == []
            finals.append(out[-1])

        assert len({f.raw for f in finals}) >= 1
        assert all(isinstance(f.value, dict) and f.value for f in finals)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.integers(0, 60), max_size=8))
    def test_last_partial_equals_final_for_any_split(self, cuts: list[int]) -> None:
        """However the content is split, the partials only grow and the last equals the final value."""
        raw = '{"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry"]}'
        points = sorted({c % (len(raw) + 1) for c in cuts})
        bounds = [0, *points, len(raw)]
        out, errors = run(SCHEMA, text_stream(*[raw[a:b] for a, b in itertools.pairwise(bounds) if b > a]))

        assert errors == []
        partials = [o.value for o in out if isinstance(o, StructuredPartial)]
        assert partials[-1] == out[-1].value


class TestValidatorAndSchemas:
    def test_refs_unions_and_bounds(self) -> None:
        """$ref into $defs, anyOf, enums and numeric bounds are checked; the error paths name the value."""
        schema = {
            "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "number", "maximum": 10}}}},
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "maxItems": 2},
                "mode": {"enum": ["a", "b"]},
                "opt": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }

        assert validate({"items": [{"n": 1}], "mode": "a", "opt": None}, schema) == []
        assert validate({"items": [{"n": 11}, {}, {}], "mode": "c", "opt": 1}, schema) == [
            "$.items[0].n: greater than 10",
            "$.items: more than 2 items",
            "$.mode: 'c' is not one of ['a', 'b']",
            "$.opt: matches none of the anyOf alternatives",
        ]

    def test_response_format_for_each_target_kind(self) -> None:
        """response_format builds OpenAI's json_schema format from a dict, a pydantic model or an attrs class."""
        from_attrs = response_format(Person)
        from_model = response_format(PersonModel)

        assert from_attrs["json_schema"]["name"] == "Person"
        assert from_attrs["json_schema"]["schema"]["required"] == ["name", "age", "pets"]
        assert from_attrs["json_schema"]["schema"]["properties"]["pets"]["items"] == json_schema_of(Pet)
        assert from_model["json_schema"]["schema"]["properties"]["age"]["type"] == "integer"
        assert OutputSchema(from_attrs).schema == json_schema_of(Person)

    def test_unsupported_target_is_rejected_at_call_time(self) -> None:
        """Something that is neither a schema, a pydantic model nor an attrs class is a TypeError at once."""
        with pytest.raises(TypeError, match="JSON schema dict"):
            ops.structured_output(42)
