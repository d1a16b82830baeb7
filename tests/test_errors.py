"""The error hierarchy: LiteLLM's names, status codes, keywords, pickling, status mapping."""

from __future__ import annotations

import pickle

import pytest

import rxllm
from rxllm.errors import error_for_status, resolve_error_class
from rxllm.types import ModelResponse

STATUS = {
    "BadRequestError": 400,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "Timeout": 408,
    "UnprocessableEntityError": 422,
    "RateLimitError": 429,
    "InternalServerError": 500,
    "BadGatewayError": 502,
    "ServiceUnavailableError": 503,
    "APIConnectionError": 500,
    "APIError": 500,
}


class TestHierarchy:
    @pytest.mark.parametrize(("name", "status"), sorted(STATUS.items()))
    def test_names_and_status_codes(self, name: str, status: int) -> None:
        """Each LiteLLM error name exists on rxllm with its status code and keyword constructor."""
        cls = getattr(rxllm, name)
        err = cls(message="boom", llm_provider="openai", model="gpt-4o")

        assert err.status_code == status
        assert (err.message, err.llm_provider, err.model) == ("boom", "openai", "gpt-4o")
        assert isinstance(err, rxllm.APIError)

    def test_context_window_is_a_bad_request(self) -> None:
        """ContextWindowExceededError is caught by handlers of BadRequestError."""
        assert issubclass(rxllm.ContextWindowExceededError, rxllm.BadRequestError)

    def test_str_names_class_provider_and_model(self) -> None:
        """The message a person reads says what failed and where."""
        err = rxllm.InternalServerError(message="The model is repeating", llm_provider="openai", model="gpt-4o")

        assert str(err) == "rxllm.InternalServerError: openai/gpt-4o: The model is repeating"

    def test_pickles_with_state(self) -> None:
        """Errors survive pickling (process pools, multiprocessing) with every field."""
        partial = ModelResponse(id="x")
        err = rxllm.RateLimitError(message="slow down", llm_provider="groq", model="m", retry_after=2.5)
        err.partial_response = partial

        back = pickle.loads(pickle.dumps(err))

        assert type(back) is rxllm.RateLimitError
        assert (back.message, back.retry_after, back.partial_response) == ("slow down", 2.5, partial)

    def test_partial_response_attached_once(self) -> None:
        """with_partial_response keeps the first partial response it is given."""
        first, second = ModelResponse(id="a"), ModelResponse(id="b")
        err = rxllm.APIError(message="x").with_partial_response(first).with_partial_response(second)

        assert err.partial_response is first


class TestErrorForStatus:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, rxllm.BadRequestError),
            (401, rxllm.AuthenticationError),
            (403, rxllm.PermissionDeniedError),
            (404, rxllm.NotFoundError),
            (408, rxllm.Timeout),
            (413, rxllm.RequestTooLargeError),
            (422, rxllm.UnprocessableEntityError),
            (429, rxllm.RateLimitError),
            (500, rxllm.InternalServerError),
            (502, rxllm.BadGatewayError),
            (503, rxllm.ServiceUnavailableError),
            (529, rxllm.InternalServerError),
            (418, rxllm.BadRequestError),
        ],
    )
    def test_maps_status_to_class(self, status: int, cls: type) -> None:
        """HTTP statuses map to the class LiteLLM would raise, keeping the exact status."""
        err = error_for_status(status, "nope", llm_provider="openai", model="m")

        assert type(err) is cls
        assert err.status_code == status

    def test_retry_after_header_is_kept(self) -> None:
        """A 429's Retry-After header becomes retry_after seconds."""
        err = error_for_status(429, "slow", headers={"Retry-After": "7"})

        assert isinstance(err, rxllm.RateLimitError)
        assert err.retry_after == 7.0

    def test_context_length_message_is_recognised(self) -> None:
        """A 400 about the context length is a ContextWindowExceededError."""
        err = error_for_status(400, "This model's maximum context length is 128000 tokens")

        assert type(err) is rxllm.ContextWindowExceededError


class TestResolveErrorClass:
    def test_dotted_names(self) -> None:
        """'rxllm.X' and bare 'X' both resolve."""
        assert resolve_error_class("rxllm.RateLimitError") is rxllm.RateLimitError
        assert resolve_error_class("Timeout") is rxllm.Timeout

    def test_unknown_name_lists_known(self) -> None:
        """An unknown name is a BadRequestError that lists the valid names."""
        with pytest.raises(rxllm.BadRequestError, match="RateLimitError"):
            resolve_error_class("rxllm.NoSuchError")
