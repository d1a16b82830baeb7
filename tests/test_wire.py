"""The field-table codec (rxllm._wire) and the fast constructor (rxllm._fastnew): tables that lie fail at import."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    chunk_dicts,
    delta_dicts,
    function_delta_dicts,
    response_dicts,
    stream_choice_dicts,
    tool_call_delta_dicts,
    usage_dicts,
)

from rxllm import types
from rxllm._fastnew import positional_new, slotted_base
from rxllm._wire import EMPTY, Kind, reference_decoder, verify, wire, wire_class

WIRE_CLASSES = [getattr(types, name) for name in types.__all__ if isinstance(getattr(types, name), type)]


class TestEveryWireClass:
    @pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda c: c.__name__)
    def test_verifies(self, cls: type[Any]) -> None:
        """Every public wire class's generated codec passes verification (as it did at import)."""
        verify(cls)

        keys = {f.metadata["rxllm.wire"].key or f.name for f in attrs.fields(cls)[:-1]}
        assert cls._known == keys

    @pytest.mark.parametrize("cls", WIRE_CLASSES, ids=lambda c: c.__name__)
    def test_known_keys_are_the_fields_but_extra(self, cls: type[Any]) -> None:
        """The known keys are exactly the declared fields (extra holds the rest)."""
        names = [f.name for f in attrs.fields(cls)]

        assert names[-1] == "extra"
        assert list(cls._fields) == names[:-1]

    def test_unknown_keys_go_to_extra_and_back(self) -> None:
        """An unknown key at any level is kept in that level's extra and written back."""
        wire_dict = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "hi", "x_delta": 1}, "finish_reason": None, "x_c": [2]}],
            "x_top": {"a": 1},
        }
        chunk = types.ChatCompletionChunk.from_dict(wire_dict)

        assert chunk.extra == {"x_top": {"a": 1}}
        assert chunk.choices[0].extra == {"x_c": [2]}
        assert chunk.choices[0].delta.extra == {"x_delta": 1}
        assert chunk.to_dict() == wire_dict

    def test_no_unknown_keys_share_the_empty_mapping(self) -> None:
        """Objects without unknown keys all share the one immutable empty mapping."""
        chunk = types.ChatCompletionChunk.from_dict({"id": "c", "choices": [{"delta": {"content": "x"}}]})

        assert chunk.extra is EMPTY and chunk.choices[0].extra is EMPTY

    def test_fast_classes_are_still_frozen(self) -> None:
        """A chunk built by the fast constructor is the frozen class itself."""
        chunk = types.ChatCompletionChunk.from_dict({"id": "c"})

        assert type(chunk) is types.ChatCompletionChunk
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            chunk.id = "other"  # type: ignore[misc]


def _table(**fields: Any) -> type[Any]:
    """A fresh class over the given attrs fields (plus extra), not yet decorated."""
    body: dict[str, Any] = {"__annotations__": {name: "Any" for name in [*fields, "extra"]}}
    body.update(fields)
    body["extra"] = attrs.field(default=EMPTY, hash=False)
    return type("Probe", (types._Wire,), body)


class TestTablesThatLie:
    def test_a_field_missing_from_the_table_fails(self) -> None:
        """An attrs field not declared with wire() is refused when the class is made."""
        cls = attrs.frozen(_table(name=wire(None), forgotten=attrs.field(default=None)))

        with pytest.raises(TypeError, match=r"Probe\.forgotten is not declared with wire\(\)"):
            wire_class()(cls)

    def test_extra_must_be_last(self) -> None:
        """A table whose last field is not ``extra`` is refused."""
        body: dict[str, Any] = {"__annotations__": {"extra": "Any", "name": "Any"}}
        body.update(extra=attrs.field(default=EMPTY), name=wire(None))
        cls = attrs.frozen(type("Probe", (types._Wire,), body))

        with pytest.raises(TypeError, match="last field must be 'extra'"):
            wire_class()(cls)

    def test_a_key_declared_twice_fails(self) -> None:
        """Two fields reading the same wire key are refused."""
        cls = attrs.frozen(_table(a=wire(None), b=wire(None, key="a")))

        with pytest.raises(TypeError, match="wire key twice"):
            wire_class()(cls)

    def test_a_symmetric_swap_fails_verification(self) -> None:
        """A decoder that puts two same-typed keys into each other's fields fails verify()."""
        cls = wire_class()(attrs.frozen(_table(role=wire(None), content=wire(None))))
        swapped = cls._wire_decode

        def decode(d: Mapping[str, Any]) -> Any:
            good = swapped(d)
            return cls(good.content, good.role, good.extra)

        cls._wire_decode = staticmethod(decode)
        cls.from_dict = classmethod(lambda klass, d: decode(d))

        with pytest.raises(TypeError, match=r"Probe\.role reads 'Probe\.content' from key 'role'"):
            verify(cls)

    def test_a_lossy_encoder_fails_verification(self) -> None:
        """An encoder that drops a key fails verify(): the round trip must be lossless."""
        cls = wire_class()(attrs.frozen(_table(role=wire(None), content=wire(None))))
        cls.to_dict = lambda self: {"role": self.role, **self.extra}

        with pytest.raises(TypeError, match=r"does not round-trip.*content"):
            verify(cls)

    def test_adding_a_field_is_one_line(self) -> None:
        """A new field declared with wire() decodes, encodes and is known, with no other code."""
        cls = wire_class()(attrs.frozen(_table(content=wire(None), audio=wire(None))))

        obj = cls.from_dict({"content": "hi", "audio": "b64", "other": 1})

        assert (obj.content, obj.audio, dict(obj.extra)) == ("hi", "b64", {"other": 1})
        assert "audio" in cls._known
        assert obj.to_dict() == {"content": "hi", "audio": "b64", "other": 1}

    def test_kinds_round_trip(self) -> None:
        """Nested objects, lists of them, tuples, JSON text, flags and dicts all round-trip."""
        inner = wire_class()(attrs.frozen(_table(v=wire(None))))
        cls = wire_class()(
            attrs.frozen(
                _table(
                    one=wire(None, kind=inner),
                    many=wire(None, kind=(inner,)),
                    seq=wire(None, kind=Kind.TUPLE),
                    text=wire(None, kind=Kind.JSON_TEXT),
                    flag=wire(False, kind=Kind.FLAG),
                    blocks=wire(None, kind=Kind.DICTS),
                )
            )
        )
        wire_dict = {"one": {"v": 1}, "many": [{"v": 2}], "seq": [1, 2], "text": "{}", "flag": True, "blocks": [{}]}

        obj = cls.from_dict(wire_dict)

        assert obj.one == inner(1) and obj.many == (inner(2),) and obj.seq == (1, 2)
        assert obj.to_dict() == wire_dict
        assert cls.from_dict({"text": {"a": 1}}).text == '{"a":1}'


class TestFastConstructorRefuses:
    def test_a_class_without_slotted_base(self) -> None:
        """A frozen class whose fields are not in a slotted_base() base is refused (layout unknown)."""
        cls = attrs.frozen(_table(a=wire(None)))

        with pytest.raises(TypeError, match="not in a slotted_base"):
            positional_new(cls)

    def test_a_layout_change(self) -> None:
        """A class over a base whose slots no longer match its fields (one field gone) is refused."""

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Good(types._Wire):
            a: Any = None
            b: Any = None

        fewer = type("Fewer", (Good.__mro__[1],), {"__annotations__": {"a": "Any"}, "a": None})
        fewer = attrs.frozen(weakref_slot=False)(fewer)

        with pytest.raises(TypeError, match=r"slot layout \('a', 'b'\) is not its fields in order \('a',\)"):
            positional_new(fewer)

    def test_fields_swapped_against_the_slots(self) -> None:
        """Fields declared in another order than the base's slots (a symmetric swap) are refused."""

        @slotted_base
        class Half(types._Wire):
            a: Any = None
            b: Any = None

        swapped = type("Swapped", (Half.__mro__[1],), {"__annotations__": {"b": "Any", "a": "Any"}, "a": None})
        swapped = attrs.frozen(weakref_slot=False)(swapped)

        with pytest.raises(TypeError, match="slot layout"):
            positional_new(swapped)

    def test_a_validator(self) -> None:
        """A field with a validator is refused: the fast path would skip it."""

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Checked(types._Wire):
            a: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))

        with pytest.raises(TypeError, match="'a' has a validator"):
            positional_new(Checked)

    def test_a_post_init_hook(self) -> None:
        """A class with __attrs_post_init__ is refused: the fast path would not run it."""

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Hooked(types._Wire):
            a: int = 0

            def __attrs_post_init__(self) -> None:
                pass

        with pytest.raises(TypeError, match="__attrs_post_init__"):
            positional_new(Hooked)

    def test_builds_the_frozen_class(self) -> None:
        """What it builds is the frozen class, equal to the one attrs' __init__ builds."""

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Pair(types._Wire):
            a: int = 0
            b: str = ""

        new = positional_new(Pair)

        assert new(1, "x") == Pair(1, "x") and type(new(1, "x")) is Pair


class TestFastDecoder:
    @staticmethod
    def _fast(**fields: Any) -> type[Any]:
        body: dict[str, Any] = {"__annotations__": {name: "Any" for name in [*fields, "extra"]}}
        body.update(fields)
        body["extra"] = attrs.field(default=EMPTY, hash=False)
        cls = slotted_base(type("Fast", (types._Wire,), body))
        return wire_class(fast=True)(attrs.frozen(weakref_slot=False)(cls))

    def test_lists_of_one_and_of_many(self) -> None:
        """A list of one nested object and a list of several decode alike (one has no comprehension)."""
        inner = self._fast(v=wire(None))
        outer = self._fast(many=wire((), kind=(inner,)), name=wire(None))

        one = outer.from_dict({"many": [{"v": 1}], "name": "a"})
        two = outer.from_dict({"many": [{"v": 1}, {"v": 2}]})

        assert one.many == (inner(1),) and two.many == (inner(1), inner(2)) and outer.from_dict({}).many == ()
        assert type(one) is outer and type(one.many[0]) is inner
        assert one.to_dict() == {"many": [{"v": 1}], "name": "a"}

    def test_a_decoder_that_leaves_a_field_unset_fails_verification(self) -> None:
        """A fast decoder that forgets to store a slot is refused by verify(), naming the field."""
        cls = self._fast(role=wire(None), content=wire(None))
        sibling = type(cls._wire_decode({"role": "r"}))  # the frozen class; build a blank one by hand
        blank_base = cls.__mro__[1]

        def decode(d: Mapping[str, Any]) -> Any:
            o = object.__new__(type("Blank", (blank_base,), {"__slots__": ()}))
            o.role = d.get("role")
            o.extra = EMPTY
            o.__class__ = sibling
            return o

        cls._wire_decode = staticmethod(decode)
        cls.from_dict = classmethod(lambda klass, d: decode(d))

        with pytest.raises(TypeError, match=r"Fast\.from_dict leaves field 'content' unset"):
            verify(cls)


class TestHiddenKeys:
    WIRE = {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}], "obfuscation": "V3a", "x": 1}

    def test_extra_still_shows_obfuscation(self) -> None:
        """OpenAI's obfuscation padding reads from extra and item access as before."""
        chunk = types.ChatCompletionChunk.from_dict(self.WIRE)

        assert chunk.extra == {"x": 1, "obfuscation": "V3a"}
        assert chunk["obfuscation"] == "V3a" and chunk.get("obfuscation") == "V3a"

    def test_no_extra_dict_for_obfuscation_alone(self) -> None:
        """A chunk whose only unmodelled key is obfuscation keeps the shared empty mapping in its slot."""
        chunk = types.ChatCompletionChunk.from_dict({"id": "c", "obfuscation": "V3a"})

        assert types.ChatCompletionChunk._unknown_keys(chunk) is EMPTY
        assert chunk.extra == {"obfuscation": "V3a"}

    def test_round_trips_and_compares(self) -> None:
        """to_dict writes it back; it takes part in equality, evolve and pickling, like any extra key."""
        import pickle

        chunk = types.ChatCompletionChunk.from_dict(self.WIRE)
        other = types.ChatCompletionChunk.from_dict({**self.WIRE, "obfuscation": "zz"})

        assert chunk.to_dict() == {
            **self.WIRE,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        }
        assert chunk != other
        assert attrs.evolve(chunk, id="d").to_dict()["obfuscation"] == "V3a"
        assert pickle.loads(pickle.dumps(chunk)) == chunk
        assert types.ChatCompletionChunk(extra={"obfuscation": "q"}).to_dict()["obfuscation"] == "q"

    def test_not_assignable(self) -> None:
        """extra stays frozen, whatever it is made of."""
        chunk = types.ChatCompletionChunk.from_dict(self.WIRE)

        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            chunk.extra = {}  # type: ignore[misc]

    def test_positional_signature_is_unchanged(self) -> None:
        """The hidden key is no __init__ argument: the nine positional fields stay as they were."""
        chunk = types.ChatCompletionChunk(
            "c", (), 1, "m", "chat.completion.chunk", None, None, None, {"obfuscation": "V"}
        )

        assert chunk.extra == {"obfuscation": "V"} and chunk.to_dict()["obfuscation"] == "V"

    def test_a_hidden_key_must_stay_out_of_init(self) -> None:
        """A hidden key declared as an __init__ argument is refused (it would shift the positional fields)."""
        from rxllm._wire import hidden_key

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Leaky(types._Wire):
            a: Any = wire(None)  # noqa: RUF009 - wire() is a field specifier
            _pad: Any = attrs.field(default=None, metadata=hidden_key("pad"))
            extra: Any = attrs.field(default=EMPTY, hash=False)

        with pytest.raises(TypeError, match="hidden key needs init/eq/repr off"):
            wire_class(fast=True)(Leaky)


#: (class, strategy of its wire dicts) for the classes whose decoders inline nested ones
_DECODED = [
    (types.ChatCompletionChunk, chunk_dicts()),
    (types.StreamChoice, stream_choice_dicts()),
    (types.Delta, delta_dicts()),
    (types.ToolCallDelta, tool_call_delta_dicts()),
    (types.FunctionDelta, function_delta_dicts()),
    (types.Usage, usage_dicts()),
    (types.ModelResponse, response_dicts()),
]


class TestInlinedDecoders:
    @pytest.mark.parametrize(("cls", "dicts"), _DECODED, ids=lambda v: getattr(v, "__name__", ""))
    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_agree_with_the_reference_decoder(self, cls: type[Any], dicts: Any, data: st.DataObject) -> None:
        """from_dict (nested classes inlined) and the call-per-object decoder build equal objects from any wire dict."""
        wire_dict = data.draw(dicts)

        inlined = cls.from_dict(wire_dict)
        reference = reference_decoder(cls)(wire_dict)

        assert type(inlined) is type(reference) is cls
        assert inlined == reference and hash(inlined) == hash(reference)
        assert repr(inlined) == repr(reference)
        assert inlined.to_dict() == reference.to_dict() == wire_dict
        assert pickle.loads(pickle.dumps(inlined)) == reference

    def test_one_and_several_choices_and_tool_calls_decode_alike(self) -> None:
        """Lists of one (decoded inline) and of several (through the nested decoder) hold the same objects."""
        call = {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}
        choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
        one = types.ChatCompletionChunk.from_dict({"id": "c", "choices": [choice]})
        two = types.ChatCompletionChunk.from_dict({"id": "c", "choices": [choice, {**choice, "index": 1}]})
        pair = types.ChatCompletionChunk.from_dict(
            {"id": "c", "choices": [{**choice, "delta": {"tool_calls": [call, {**call, "index": 1}]}}]}
        )

        assert one.choices[0] == two.choices[0] and type(two.choices[1]) is types.StreamChoice
        assert pair.choices[0].delta.tool_calls is not None
        assert pair.choices[0].delta.tool_calls[0] == one.choices[0].delta.tool_calls[0]  # type: ignore[index]
        assert type(one.choices[0].delta.tool_calls[0].function) is types.FunctionDelta  # type: ignore[index]

    @pytest.mark.parametrize(
        "wire_dict",
        [
            {"choices": ["not a choice"]},
            {"choices": [{"delta": ["not", "a", "delta"]}]},
            {"choices": [{"delta": {"tool_calls": [7]}}]},
            {"choices": [{"delta": {"tool_calls": [{"function": "f"}]}}]},
        ],
    )
    def test_a_nested_value_of_the_wrong_shape_fails_alike(self, wire_dict: dict[str, Any]) -> None:
        """A nested value that is not an object raises the same exception type inlined as through the decoder."""
        reference = reference_decoder(types.ChatCompletionChunk)
        with pytest.raises(AttributeError):
            reference(wire_dict)
        with pytest.raises(AttributeError):
            types.ChatCompletionChunk.from_dict(wire_dict)

    def test_an_inlined_nested_table_that_lies_fails_at_class_creation(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A nested class whose rows swap two fields, inlined into its parent, makes the parent's creation fail."""
        from rxllm import _wire

        inner = TestFastDecoder._fast(role=wire(None), content=wire(None))
        honest = _wire._rows

        def swapped(cls: type[Any]) -> list[Any]:
            rows = honest(cls)
            if cls is inner:  # the inner's own table is fine; only the copy inlined into the parent lies
                (n0, k0, s0, d0), (n1, k1, s1, d1) = rows[0], rows[1]
                rows[0], rows[1] = (n1, k0, s0, d0), (n0, k1, s1, d1)
            return rows

        monkeypatch.setattr(_wire, "_rows", swapped)
        with pytest.raises(TypeError, match=r"reads .* from key 'one'"):
            TestFastDecoder._fast(one=wire(None, kind=inner))

    @pytest.mark.parametrize(
        "delta",
        [
            {"content": "hi"},
            {"content": ""},
            {"content": None},
            {"reasoning_content": "hm"},
            {"refusal": "no"},
            {"role": "assistant"},
            {"x_unknown": 1},
            {"content": "hi", "role": "assistant"},
            {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": None}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": "x", "x_unknown": 1}}]},
            {"tool_calls": [{"index": 0}, {"index": 1, "id": "b"}]},
            {"tool_calls": []},
            {"tool_calls": None},
            {"tool_calls": [{"index": 0}], "role": "assistant"},
        ],
    )
    def test_a_solo_key_alone_decodes_as_the_general_path(self, delta: dict[str, Any]) -> None:
        """A delta holding one key (the solo shortcut, or not) equals the reference decoder's, extra included."""
        wire_dict = {"id": "c", "choices": [{"index": 0, "delta": delta}]}

        fast = types.ChatCompletionChunk.from_dict(wire_dict)
        reference = reference_decoder(types.ChatCompletionChunk)(wire_dict)

        assert fast == reference and fast.to_dict() == reference.to_dict()
        assert dict(fast.choices[0].delta.extra) == dict(reference.choices[0].delta.extra)
        assert types.Delta.from_dict(delta) == reference_decoder(types.Delta)(delta)
        checked = types.ChatCompletionChunk._wire_checked(wire_dict)
        assert checked is not None and checked == fast and checked.to_dict() == fast.to_dict()

    def test_solo_is_refused_on_a_field_that_is_not_plain(self) -> None:
        """solo on a field with a non-None default (or a non-atom kind) fails when the class is made."""
        with pytest.raises(TypeError, match="solo is for a plain field"):
            TestFastDecoder._fast(name=wire("x", solo=True))
        with pytest.raises(TypeError, match="solo is for a plain field"):
            TestFastDecoder._fast(seq=wire(None, kind=Kind.TUPLE, solo=True))
        with pytest.raises(TypeError, match="solo keys need every key optional"):
            TestFastDecoder._fast(must=wire(), name=wire(None, solo=True))


class TestBlankSibling:
    def test_refuses_what_positional_new_refuses(self) -> None:
        """A class not over a slotted_base() base, or whose fields no longer match the slots, is refused."""
        from rxllm._fastnew import blank_sibling

        @attrs.frozen(weakref_slot=False)
        @slotted_base
        class Good(types._Wire):
            a: Any = None
            b: Any = None

        fewer = attrs.frozen(weakref_slot=False)(
            type("Fewer", (Good.__mro__[1],), {"__annotations__": {"a": "Any"}, "a": None})
        )

        with pytest.raises(TypeError, match="not in a slotted_base"):
            blank_sibling(attrs.frozen(_table(a=wire(None))))
        with pytest.raises(TypeError, match="is not its fields in order"):
            blank_sibling(fewer)

    def test_fills_and_becomes_the_frozen_class(self) -> None:
        """A blank sibling, every slot stored, swapped to the frozen class, equals the attrs-built object."""
        from rxllm._fastnew import blank_sibling

        sibling = blank_sibling(types.Delta)
        obj = sibling()
        for f in attrs.fields(types.Delta):
            setattr(obj, f.name, "hi" if f.name == "content" else f.default)
        obj.__class__ = types.Delta

        assert obj == types.Delta(content="hi") and hash(obj) == hash(types.Delta(content="hi"))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj.content = "x"  # type: ignore[misc]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and list positions) to a value inside a wire dict, the root excluded."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        out.append((*path, key))
        out.extend(_paths(inner, (*path, key)))
    return out


#: Values a malformed stream may hold where the model wants something else.
_odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["content", "index", "x"]), st.integers() | st.text(max_size=2), max_size=2),
)


@st.composite
def mangled_chunk_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A chunk wire dict with up to three values (anywhere in it) replaced by values of any type."""
    wire_dict = draw(chunk_dicts())
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(wire_dict)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        target: Any = wire_dict
        for step in parents:
            target = target[step]
        target[last] = draw(_odd_values)
    return wire_dict


def _hash(obj: Any) -> Any:
    """The hash, or a marker for an object holding a mangled, unhashable value."""
    try:
        return hash(obj)
    except TypeError:
        return "unhashable"


class TestCheckedDecoder:
    @settings(max_examples=100, deadline=None)
    @given(wire_dict=mangled_chunk_dicts())
    def test_agrees_with_chunk_problem(self, wire_dict: dict[str, Any]) -> None:
        """The checked decoder returns the from_dict chunk exactly when chunk_problem finds nothing, else None."""
        from rxllm._validate import chunk_problem

        try:
            expected = types.ChatCompletionChunk.from_dict(wire_dict)
        except (AttributeError, TypeError, KeyError, ValueError):
            try:  # a payload from_dict cannot read: the checked decoder raises too, or gives up first
                assert types.ChatCompletionChunk._wire_checked(wire_dict) is None
            except (AttributeError, TypeError, KeyError, ValueError):
                pass
            return
        checked = types.ChatCompletionChunk._wire_checked(wire_dict)
        if chunk_problem(expected) is not None:
            assert checked is None
            return
        assert checked is not None and type(checked) is types.ChatCompletionChunk
        assert checked == expected and repr(checked) == repr(expected) and _hash(checked) == _hash(expected)
        assert checked.to_dict() == expected.to_dict() and dict(checked.extra) == dict(expected.extra)

    @pytest.mark.parametrize(
        ("wire_dict", "why"),
        [
            ({"id": 5}, "id"),
            ({"created": "now"}, "created"),
            ({"choices": [{"index": -1}]}, "choices[0].index"),
            ({"choices": [{"index": True}]}, "a bool index"),
            ({"choices": [{"delta": {"content": 3}}]}, "a solo content"),
            ({"choices": [{"delta": {"content": ["a"], "role": "assistant"}}]}, "content"),
            ({"choices": [{"delta": {"tool_calls": [{"index": 0}, {"index": "1"}]}}]}, "the second tool call"),
            ({"choices": [{"delta": {}}, {"index": 1, "finish_reason": 1}]}, "the second choice"),
            ({"usage": {"prompt_tokens": -1}}, "usage"),
            ({"usage": {"prompt_tokens_details": {"cached_tokens": 1.5}}}, "usage details"),
        ],
    )
    def test_gives_up_on_each_kind_of_fault(self, wire_dict: dict[str, Any], why: str) -> None:
        """Each check, inlined or through a nested decoder, makes the checked decoder return None."""
        from rxllm._validate import chunk_problem

        assert chunk_problem(types.ChatCompletionChunk.from_dict(wire_dict)) is not None, why
        assert types.ChatCompletionChunk._wire_checked(wire_dict) is None, why

    def test_classes_without_checks_share_the_plain_decoder(self) -> None:
        """A class that declares no check (nor nests one) has no second decoder."""
        assert types.ChoiceLogprobs._wire_checked is types.ChoiceLogprobs._wire_decode
        assert types.ChatCompletionChunk._wire_checked is not types.ChatCompletionChunk._wire_decode

    def test_a_checked_decoder_that_disagrees_fails_verification(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """verify() runs the checked decoder on a sound probe: refusing it, or building another object, fails."""
        cls = types.StreamChoice
        monkeypatch.setattr(cls, "_wire_checked", staticmethod(lambda d: None))
        with pytest.raises(TypeError, match="checked decoder refuses its sound probe"):
            verify(cls)
        monkeypatch.setattr(cls, "_wire_checked", staticmethod(lambda d: cls.from_dict({**d, "index": 7})))
        with pytest.raises(TypeError, match="checked decoder builds another object"):
            verify(cls)

    def test_an_unknown_check_is_refused(self) -> None:
        """wire(check=...) accepts only the Check kinds."""
        with pytest.raises(TypeError, match="unknown check"):
            wire(None, check="positive")
