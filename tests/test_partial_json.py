"""The incremental partial-JSON parser: documented partial semantics, split independence, agreement with orjson."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.errors import PartialJSONError
from rxllm.partial_json import PartialJSONParser, parse_partial

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


def _text(value: Any, pretty: bool) -> str:
    return json.dumps(value, indent=1, ensure_ascii=True) if pretty else orjson.dumps(value).decode()


def _feed_split(text: str, cuts: list[int]) -> tuple[PartialJSONParser, list[Any]]:
    parser = PartialJSONParser()
    partials = []
    last = 0
    for cut in [*sorted({c % (len(text) + 1) for c in cuts}), len(text)]:
        if cut > last:
            parser.feed(text[last:cut])
            partials.append((cut, parser.value))
            last = cut
    return parser, partials


class TestPartialSemantics:
    @pytest.mark.parametrize(
        ("text", "partial"),
        [
            ("", None),
            ("{", {}),
            ('{"a"', {}),
            ('{"a":', {}),
            ('{"a": "Hel', {"a": "Hel"}),
            ('{"a": 12', {}),
            ('{"a": 12,', {"a": 12}),
            ('{"a": -', {}),
            ('{"a": 1.5e', {}),
            ('{"a": tru', {}),
            ('{"a": true', {"a": True}),
            ('{"a": [1, 2', {"a": [1]}),
            ('{"a": [1, {"b": nul', {"a": [1, {}]}),
            ('{"a": "x\\u00', {"a": "x"}),
            ('{"a": "x\\u00e9', {"a": "xé"}),
            ('{"a": "\\ud83d', {"a": ""}),
            ('{"a": "\\ud83d\\ude00', {"a": "😀"}),
            ('{"a": "q\\', {"a": "q"}),
            ("[[[", [[[]]]),
            ('"abc', "abc"),
            ("12", None),
        ],
    )
    def test_unfinished_values(self, text: str, partial: Any) -> None:
        """Strings grow; keys wait for their value; numbers, literals and escapes are withheld until complete."""
        assert parse_partial(text) == partial

    def test_finish_releases_a_trailing_number(self) -> None:
        """A top-level number is complete only at the end of the text."""
        parser = PartialJSONParser()
        parser.feed("12")

        assert parser.value is None
        assert parser.finish() == 12
        assert parser.done

    @pytest.mark.parametrize(
        "text", ["[1,]", '{"a" 1}', "tx", "01", "[1 2]", '{"a":1}}', '"\\x"', '"\\udc00"', "{", ""]
    )
    def test_invalid_or_incomplete_text_raises_a_typed_error(self, text: str) -> None:
        """finish() raises PartialJSONError (a ValueError) where orjson rejects the text too."""
        parser = PartialJSONParser()
        parser.feed(text)

        with pytest.raises(PartialJSONError):
            parser.finish()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(text)

    def test_an_error_freezes_the_partial_value(self) -> None:
        """After a syntax error the value stays at the last valid state and later fragments are ignored."""
        parser = PartialJSONParser()
        parser.feed('{"a": 1, "b": [2] x')
        parser.feed(', "c": 3}')

        assert parser.value == {"a": 1, "b": [2]}
        assert parser.error is not None
        assert parser.error.position == 18

    def test_snapshots_keep_their_moment(self) -> None:
        """A snapshot taken earlier still reads as the value at that moment after the parser moved on."""
        parser = PartialJSONParser()
        parser.feed('{"a": "He')
        early = parser.snapshot()
        parser.feed('llo", "b": [1, 2], "c": {"d": "e"}}')

        assert early.value() == {"a": "He"}
        assert parser.value == {"a": "Hello", "b": [1, 2], "c": {"d": "e"}}


class TestSplitIndependence:
    @settings(max_examples=80, deadline=None)
    @given(json_values, st.booleans(), st.lists(st.integers(0, 10_000), max_size=30))
    def test_final_value_equals_orjson_for_any_split(self, value: Any, pretty: bool, cuts: list[int]) -> None:
        """Fed in any fragments, finish() returns what orjson parses from the whole text."""
        text = _text(value, pretty)
        parser, _ = _feed_split(text, cuts)

        assert parser.finish() == orjson.loads(text)

    @settings(max_examples=80, deadline=None)
    @given(json_values, st.booleans(), st.lists(st.integers(0, 10_000), max_size=30))
    def test_partial_values_depend_only_on_the_text_so_far(self, value: Any, pretty: bool, cuts: list[int]) -> None:
        """The partial value after k characters is the same however they were split, and the last equals the parse."""
        text = _text(value, pretty)
        _, partials = _feed_split(text, cuts)

        for cut, partial in partials:
            assert partial == parse_partial(text[:cut])
        if isinstance(value, (dict, list)):
            assert partials[-1][1] == orjson.loads(text)

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet='{}[],:"\\ntrufalsel0123456789.-eE ', max_size=20), st.integers(1, 5))
    def test_accepts_exactly_what_orjson_accepts(self, text: str, step: int) -> None:
        """On arbitrary JSON-ish text the parser succeeds where orjson does, with the same value, else raises."""
        parser = PartialJSONParser()
        for i in range(0, len(text), step):
            parser.feed(text[i : i + step])
        try:
            want = orjson.loads(text)
        except orjson.JSONDecodeError:
            with pytest.raises(PartialJSONError):
                parser.finish()
        else:
            assert parser.finish() == want
