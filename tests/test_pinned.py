"""Behaviours a review found unpinned: each test fails for a plausible one-line regression."""

from __future__ import annotations

import pytest
from _chunks import chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.builder import ResponseBuilder, stream_chunk_builder
from rxllm.errors import APIError
from rxllm.proxy import KeyChecker
from rxllm.sse import ServerSentEvent, SSEDecoder
from rxllm.types import CompletionTokensDetails, PromptTokensDetails, Usage
from rxllm.usage import UsageAccumulator


def merged(*usages: Usage) -> Usage:
    acc = UsageAccumulator()
    for usage in usages:
        acc.add(usage)
    return acc.result()


class TestFinishReason:
    def test_the_last_non_null_finish_reason_wins(self) -> None:
        """A choice that reports 'length' and later 'stop' is rebuilt as 'stop' (the last one)."""
        chunks = [chunk("a", finish="length"), chunk("b"), chunk(None, finish="stop"), chunk(None)]

        response = stream_chunk_builder(chunks)

        assert response.choices[0].finish_reason == "stop"

    def test_a_later_null_does_not_erase_it(self) -> None:
        """A chunk without a finish_reason after the final one leaves it in place."""
        builder = ResponseBuilder()
        for c in [chunk("a"), chunk(None, finish="tool_calls"), chunk(None)]:
            builder.add(c)

        assert builder.build().choices[0].finish_reason == "tool_calls"


class TestUsageMerge:
    def test_the_last_positive_prompt_count_wins(self) -> None:
        """Two positive prompt counts: the later one is kept (Gemini repeats running totals)."""
        usage = merged(Usage(3, 0, 3), Usage(5, 2, 7))

        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 2, 7)

    def test_a_later_zero_keeps_the_earlier_count(self) -> None:
        """Anthropic's message_delta sends prompt 0 after message_start's count: the count stays."""
        usage = merged(Usage(11, 0, 11), Usage(0, 4, 4))

        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 4, 15)

    def test_a_details_zero_does_not_erase_an_earlier_count(self) -> None:
        """cached_tokens=7 then cached_tokens=0: the merged details still say 7."""
        first = Usage(10, 0, 10, prompt_tokens_details=PromptTokensDetails(cached_tokens=7))
        later = Usage(
            10,
            3,
            13,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=0),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=2),
        )

        usage = merged(first, later)

        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 7
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == 2

    def test_a_details_count_is_replaced_by_a_later_positive_one(self) -> None:
        """cached_tokens=7 then 9: the later positive value wins."""
        usage = merged(
            Usage(1, 0, 1, prompt_tokens_details=PromptTokensDetails(cached_tokens=7)),
            Usage(1, 0, 1, prompt_tokens_details=PromptTokensDetails(cached_tokens=9)),
        )

        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 9

    @pytest.mark.parametrize(
        ("flags", "estimated"),
        [((True, True), True), ((True, False), False), ((False, True), False), ((False, False), False)],
    )
    def test_estimated_only_when_every_part_is(self, flags: tuple[bool, bool], estimated: bool) -> None:
        """The merged usage is an estimate only if all the merged parts were estimates."""
        usage = merged(Usage(1, 0, 1, estimated=flags[0]), Usage(0, 1, 1, estimated=flags[1]))

        assert usage.estimated is estimated


class TestProxyAuthScheme:
    @pytest.mark.parametrize("header", ["Basic sk-master", "sk-master", "Token sk-master", "Bearer", "Bearer  "])
    def test_only_bearer_carries_the_key(self, header: str) -> None:
        """The master key under any scheme but Bearer (or with no token) is refused with 401."""
        checker = KeyChecker("sk-master")

        with pytest.raises(APIError) as caught:
            checker.check({"Authorization": header})

        assert caught.value.status_code == 401

    def test_bearer_is_accepted_in_any_case(self) -> None:
        """'Bearer' and 'bearer' both carry the key (the scheme is case-insensitive)."""
        checker = KeyChecker("sk-master")

        checker.check({"Authorization": "Bearer sk-master"})
        checker.check({"Authorization": "bearer sk-master"})


class TestSSEFieldValue:
    @pytest.mark.parametrize(
        "body",
        [
            b"data:  two\n\n",  # the one-line fast path
            b"event: message\ndata:  two\n\n",  # the general block path
            b"id: 1\ndata:  two\n\n",
        ],
    )
    def test_exactly_one_leading_space_is_stripped(self, body: bytes) -> None:
        """'data:  two' carries ' two': one space after the colon goes, the second stays."""
        events = SSEDecoder().feed(body)

        assert [e.data for e in events] == [" two"]

    def test_other_fields_keep_their_extra_spaces_too(self) -> None:
        """event and id values also lose exactly one leading space."""
        (event,) = SSEDecoder().feed(b"event:  spaced\nid:  7\ndata: x\n\n")

        assert (event.event, event.id) == (" spaced", " 7")

    @settings(max_examples=60, deadline=None)
    @given(
        spaces=st.integers(min_value=0, max_value=4),
        value=st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=12
        ),
        extra_field=st.booleans(),
    )
    def test_value_round_trips(self, spaces: int, value: str, extra_field: bool) -> None:
        """'data: ' + s decodes to s for any s, whatever leading spaces it has."""
        payload = " " * spaces + value
        body = (b"event: e\n" if extra_field else b"") + b"data: " + payload.encode() + b"\n\n"

        events = SSEDecoder().feed(body)

        assert events == [ServerSentEvent(payload, "e" if extra_field else "message", "")]


class TestMutationSurvivors:
    """Behaviours the mutation check (tests/mutation_check.py) showed no test pinned."""

    def test_builder_tool_calls_mid_stream(self) -> None:
        """ResponseBuilder.tool_calls() returns the calls of a choice while it streams."""
        builder = ResponseBuilder()
        builder.add(chunk(tools=[{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a"'}}]))

        calls = builder.tool_calls(0)

        assert [(c.id, c.function.name) for c in calls] == [("call_1", "f")]
        assert builder.tool_calls(3) == ()

    def test_details_extra_keys_merge(self) -> None:
        """Unknown keys of usage details reported in different chunks are all kept."""
        first = Usage(1, 0, 1, prompt_tokens_details=PromptTokensDetails.from_dict({"audio_tokens": 2}))
        later = Usage(1, 1, 2, prompt_tokens_details=PromptTokensDetails.from_dict({"cached_tokens": 0, "x_new": 5}))

        details = merged(first, later).prompt_tokens_details

        assert details is not None
        assert details.to_dict()["x_new"] == 5
        assert details.to_dict()["audio_tokens"] == 2

    def test_encode_data_with_an_event_name(self) -> None:
        """encode_data(event=...) writes the event line before the data line."""
        from rxllm.sse import encode_data

        assert encode_data(b"{}", event="restart") == b"event: restart\ndata: {}\n\n"
        assert encode_data(b"{}") == b"data: {}\n\n"

    def test_event_size_limit_counts_each_event_alone(self) -> None:
        """Many small one-line events in one read pass a small max_event_size (it is per event)."""
        decoder = SSEDecoder(max_event_size=64)
        body = b"".join(b"data: " + str(i).encode() * 10 + b"\n\n" for i in range(20))

        events = decoder.feed(body)

        assert len(events) == 20

    @pytest.mark.parametrize(("value", "limit"), [(1, 1), (5, 5), (5.0, 5), ("12", 12)])
    def test_limit_accepts_integral_values(self, value: object, limit: int) -> None:
        """1 (the smallest), 5, 5.0 and '12' are limits; they are integers."""
        from rxllm.settings import check_repeated_chunk_limit

        assert check_repeated_chunk_limit(value) == limit

    @pytest.mark.parametrize("value", [5.5, True, None, "x", 0])
    def test_limit_refuses_others(self, value: object) -> None:
        """5.5, True, None, 'x' and 0 are not limits."""
        from rxllm.settings import check_repeated_chunk_limit

        with pytest.raises(ValueError, match="REPEATED_STREAMING_CHUNK_LIMIT"):
            check_repeated_chunk_limit(value)

    def test_repeated_chunk_error_carries_an_unfinished_partial(self) -> None:
        """The looping stream's partial response leaves the unfinished choice's finish_reason None."""
        import reactivex

        from rxllm import operators as ops
        from rxllm.errors import InternalServerError

        errors: list[BaseException] = []
        chunks = [chunk("How are you today?")] * 5
        reactivex.from_iterable(chunks).pipe(ops.detect_repeated_chunks(2)).subscribe(on_error=errors.append)

        (error,) = errors
        assert isinstance(error, InternalServerError)
        assert error.partial_response is not None
        assert error.partial_response.choices[0].finish_reason is None

    def test_cost_report_provider_from_the_model_prefix(self) -> None:
        """Without llm_provider, tap_cost's report takes the provider from 'prefix/model'."""
        import reactivex

        from rxllm import operators as ops

        reports: list[ops.CostReport] = []
        reactivex.from_iterable([chunk("hi", model="x")]).pipe(
            ops.tap_cost(reports.append, model="anthropic/claude-sonnet-4-5")
        ).subscribe()

        assert reports[0].provider == "anthropic"

    def test_retry_stream_with_one_attempt_is_valid(self) -> None:
        """retry_stream(1) is allowed (no retries); only 0 and below are refused."""
        import reactivex

        from rxllm import operators as ops

        seen: list[object] = []
        reactivex.from_iterable([chunk("a")]).pipe(ops.retry_stream(1)).subscribe(seen.append)

        assert len(seen) == 1
        with pytest.raises(ValueError, match="at least 1"):
            ops.retry_stream(0)


class TestErrorText:
    @pytest.mark.parametrize(
        ("provider", "model", "where"),
        [
            ("openai", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
            ("openai", "gpt-4o-mini", "openai/gpt-4o-mini"),
            (None, "gpt-4o", "gpt-4o"),
            ("groq", None, "groq"),
        ],
    )
    def test_the_provider_is_named_once(self, provider: str | None, model: str | None, where: str) -> None:
        """str(error) names provider and model once, whether or not the model carries its prefix."""
        error = APIError("boom", llm_provider=provider, model=model)

        assert str(error) == f"rxllm.APIError: {where}: boom"

    def test_an_upstream_redirect_is_reported_as_a_bad_gateway(self) -> None:
        """An APIError carrying a 3xx (a refused redirect) is a 502 to clients; a bug is a 500."""
        from rxllm.errors import error_status

        assert error_status(APIError("redirected", status_code=307)) == 502
        assert error_status(APIError("limited", status_code=429)) == 429
        assert error_status(ValueError("bug")) == 500
