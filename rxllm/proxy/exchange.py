"""The exchange core: everything a proxied request does that does not depend on its dialect.

One request, whatever its wire protocol, goes through :func:`handle`:

1. **Read**: the body is read (size-checked) and decoded; nesting depth is checked.
2. **Translate**: the dialect's ``translate`` makes a :class:`~rxllm.proxy.dialect.Call`.
3. **Admit**: only then is a concurrency slot taken (``global_max_parallel_requests``).
4. **Route and fail over**: the router's plan is tried in order; each attempt holds a
   :class:`~rxllm.proxy.router.Lease` released exactly once, on every exit path. An attempt
   that fails before its first chunk (or times out waiting for it) is replaced by the next
   deployment; after the first chunk the deployment is committed.
5. **Stream or collect**: chunks (renamed to the client's model name) go to the dialect's
   encoder, or into a response builder for a non-streaming answer. Cost and usage are metered
   once per attempt (:func:`~rxllm.operators.tap_cost`'s meter and report, run in the
   attempt's feed rather than as one more observer layer).
6. **Backpressure**: the upstream is *pulled* by a task the exchange owns, which stops
   pulling once ``stream_buffer_size`` bytes are waiting for a slow client; the writer awaits
   each write's drain. A client that stops reading therefore stops the upstream read too
   (the upstream's TCP window fills), and the proxy holds a bounded amount per stream.
7. **Keepalive**: after ``keepalive_interval`` seconds without a write, the dialect's
   keepalive bytes are sent (even before the first chunk: the 200 and the headers are then
   committed, and a later failure is reported as the dialect's error event).
8. **Disconnect → dispose**: a client that leaves cancels the upstream request (at once with
   ``handler_cancellation``, else within the watchdog's period).
9. **One log line**: :class:`Outcome` is filled in as the request goes and logged once as
   ``rxllm.proxy.request``; ``ProxyState.outcome_hooks`` receive it too (for metrics).
"""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Final, Literal

import attrs
import orjson
from aiohttp import web
from reactivex import Observable, abc

import rxllm
from rxllm._fastnew import positional_new
from rxllm._log import get_logger
from rxllm.builder import ResponseBuilder
from rxllm.errors import APIError, BadRequestError, InternalServerError, MalformedStreamError, Timeout, as_api_error
from rxllm.operators import CostReport, detect_repeated_chunks, split_think_tags, tap_cost, tap_otel
from rxllm.operators._detect_repeated_chunks import RepeatTracker
from rxllm.operators._tap_cost import Outcome as ReportOutcome
from rxllm.operators._tap_cost import _Meter, build_report
from rxllm.providers.openai import RAW_EVENTS, RawEvent
from rxllm.proxy.auth import KeyChecker
from rxllm.proxy.config import Deployment, ProxyConfig
from rxllm.proxy.cors import CorsPolicy
from rxllm.proxy.dialect import SSE_HEADERS, Call, Context, Dialect, ErrorInfo, StreamEncoder
from rxllm.proxy.errors import ProxyError, error_info, error_status
from rxllm.proxy.router import DeploymentState, Lease, Router
from rxllm.proxy.validation import BLOCKED_PARAMS, bad_request, check_depth
from rxllm.settings import check_repeated_chunk_limit, settings
from rxllm.streams import PullableObservable, PullSource, _aclose, pulling
from rxllm.types import ChatCompletionChunk, Usage

__all__ = [
    "OUTCOME",
    "PROXY_STATE",
    "WATCH_INTERVAL",
    "AbortReason",
    "Exchange",
    "Outcome",
    "ProxyState",
    "admit",
    "handle",
    "new_request_id",
    "read_json",
]

_log = get_logger("rxllm.proxy")
#: ``tap_cost``'s logger: a failing report callback is logged there, as the operator does.
_cost_log = get_logger("rxllm")

#: How often the watchdog looks for clients that left, idle streams, keepalives and shutdown.
WATCH_INTERVAL: Final = 0.2

AbortReason = Literal["disconnected", "shutdown", "idle_timeout"]

#: The pull task gives the loop a turn at least every this many chunks.
_YIELD_EVERY: Final = 128


# --------------------------------------------------------------------------- per-request outcome


class Outcome:
    """What happened to one request: the log line's fields, and what metrics read.

    Filled in as the request goes; complete when the ``rxllm.proxy.request`` line is logged
    (then every ``ProxyState.outcome_hooks`` callable receives it).

    Attributes:
        request_id: The request id (``X-Request-Id``).
        method: The HTTP method.
        path: The request path.
        dialect: The dialect's name (``"chat"``), ``None`` for other routes.
        model: The model name the client asked for.
        deployment: The id of the deployment that served (or last tried) it.
        attempts: Deployments tried.
        tried: The ids of the deployments tried, in order (a retry repeats one).
        stream: Whether the client asked for a stream.
        status: The HTTP status the client got (499: it left first).
        outcome: ``"completed"``, ``"error"`` or ``"cancelled"``.
        error: The exception that ended the request, if any.
        report: The cost report of the attempt that served it.
        start: Loop time at arrival; ``first_at`` at the first chunk, ``end`` at the end.
    """

    __slots__ = (
        "attempts",
        "deployment",
        "dialect",
        "end",
        "error",
        "first_at",
        "method",
        "model",
        "outcome",
        "path",
        "report",
        "request_id",
        "start",
        "status",
        "stream",
        "tried",
    )

    def __init__(self, request_id: str, method: str, path: str, start: float) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.start = start
        self.dialect: str | None = None
        self.model: str | None = None
        self.deployment: str | None = None
        self.attempts = 0
        self.tried: list[str] = []
        self.stream: bool | None = None
        self.status = 200
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.report: CostReport | None = None
        self.first_at: float | None = None
        self.end: float | None = None

    def __repr__(self) -> str:
        return f"Outcome({self.request_id!r}, status={self.status}, outcome={self.result!r}, model={self.model!r})"

    @property
    def result(self) -> str:
        """``outcome``, or what the status implies when it was not set."""
        if self.outcome is not None:
            return self.outcome
        return "error" if self.error is not None or self.status >= 400 else "completed"

    @property
    def ttft(self) -> float | None:
        """Seconds from arrival to the first chunk (``None``: none came)."""
        return None if self.first_at is None else self.first_at - self.start

    @property
    def duration(self) -> float | None:
        """Seconds from arrival to the end (``None`` while in flight)."""
        return None if self.end is None else self.end - self.start

    @property
    def error_type(self) -> str | None:
        """The class name of the error that ended the request."""
        return None if self.error is None else type(self.error).__name__

    @property
    def usage(self) -> Usage | None:
        """Tokens of the attempt that served the request (estimated when the upstream sent none)."""
        report = self.report
        if report is None:
            return None
        return Usage(
            report.prompt_tokens, report.completion_tokens, report.total_tokens, estimated=report.usage_estimated
        )

    @property
    def cost(self) -> float | None:
        """USD, when the model has a price."""
        return None if self.report is None else self.report.cost


OUTCOME: Final = web.RequestKey("rxllm.proxy.outcome", Outcome)


# --------------------------------------------------------------------------- app state


@attrs.define
class ProxyState:
    """The app's live state (``app[PROXY_STATE]``): config, router, dialects, requests in flight.

    Attributes:
        outcome_hooks: Called with every finished request's :class:`Outcome` (after its log
            line); a hook that raises is logged and ignored.
        detach: Serves a chat stream whose generation must outlive its client (resumable
            streams, :mod:`rxllm.proxy.resumable`): ``(request, dialect, context, outcome,
            plan, release)``; it calls ``release()`` exactly once, when the generation ends.
    """

    config: ProxyConfig
    router: Router
    checker: KeyChecker | None
    secrets: list[str] = attrs.field(repr=False)
    cors: CorsPolicy = attrs.field(factory=lambda: CorsPolicy(()))
    dialects: dict[str, Dialect] = attrs.field(factory=dict)
    route_dialects: dict[str, Dialect] = attrs.field(factory=dict)
    outcome_hooks: list[Callable[[Outcome], Any]] = attrs.field(factory=list)
    created: int = attrs.field(factory=lambda: int(time.time()))
    in_flight: int = 0
    active: set[Exchange] = attrs.field(factory=set)
    draining: bool = False
    watchdog: asyncio.Task[None] | None = None
    detach: Callable[..., Awaitable[web.StreamResponse]] | None = None

    def describe(self, exc: BaseException) -> ErrorInfo:
        """``exc`` as a dialect-neutral, secret-free :class:`ErrorInfo`."""
        return error_info(exc, self.secrets)


PROXY_STATE: Final = web.AppKey("rxllm.proxy.state", ProxyState)


# --------------------------------------------------------------------------- one attempt

_CHUNK_NAMES: Final = tuple(f.name for f in attrs.fields(ChatCompletionChunk))
#: Every field of a chunk, in order (init=False ones too, which ``attrs.evolve`` would drop).
_CHUNK_FIELDS: Final = operator.attrgetter(*_CHUNK_NAMES)
_MODEL_AT: Final = _CHUNK_NAMES.index("model")
_ID_AT: Final = _CHUNK_NAMES.index("id")


def _chunk_builder() -> Callable[..., ChatCompletionChunk]:
    """A chunk from every field's value, at slot-store cost (:func:`~rxllm._fastnew.positional_new`, else attrs)."""
    try:
        build = positional_new(ChatCompletionChunk)
    except TypeError:  # pragma: no cover - a layout the fast constructor refuses
        fields: tuple[attrs.Attribute[Any], ...] = tuple(attrs.fields(ChatCompletionChunk))

        def slow(*values: Any) -> ChatCompletionChunk:
            given = {str(f.alias or f.name): v for f, v in zip(fields, values, strict=True) if f.init}
            base = ChatCompletionChunk(**given)
            for f, v in zip(fields, values, strict=True):
                if not f.init:
                    object.__setattr__(base, f.name, v)
            return base

        return slow

    return build


_new_chunk: Final = _chunk_builder()


class _Metering:
    """``tap_cost``'s work for one attempt, done in its feed: one observer layer (and its subscription) less.

    The same meter as the operator (:class:`rxllm.operators._tap_cost._Meter`, fed every chunk
    before anything else looks at it), the same report, made exactly once: when the stream
    completes or fails (before the feed sees the end) or when the attempt is disposed first
    (``"cancelled"``). A callback that raises is logged as ``rxllm.tap_cost.on_report_failed``.
    """

    __slots__ = ("messages", "meter", "model", "on_report", "pricing", "reported")

    def __init__(self, on_report: Callable[[CostReport], Any], pricing: Any, model: str, messages: Any) -> None:
        self.on_report = on_report
        self.pricing = pricing
        self.model = model
        self.messages = messages
        self.meter = _Meter(time.monotonic)  # the operator's clock outside virtual time
        self.reported = False

    def finish(self, outcome: ReportOutcome, error: BaseException | None) -> None:
        if self.reported:
            return
        self.reported = True
        try:
            self.on_report(
                build_report(
                    self.meter,
                    outcome,
                    error,
                    model=self.model,
                    llm_provider=None,
                    pricing=self.pricing,
                    messages=self.messages,
                )
            )
        except Exception:
            # a broken report callback must not break (or re-run) the stream it watches
            _cost_log.exception("rxllm.tap_cost.on_report_failed", model=self.model or self.meter.chunk_model)


class _Feed:
    """The observer side of one attempt: what arrived, whether it ended, one waiter each way.

    All callbacks run on the proxy's loop (the exchange's pull task drives the upstream), so
    no locks. A streaming feed encodes each chunk at once and keeps the bytes (``parts``,
    ``buffered`` bytes) for the writer; a collecting feed folds chunks into a builder.
    """

    __slots__ = (
        "aborted",
        "buffered",
        "builder",
        "chunk_id",
        "chunks",
        "done",
        "drain_waiter",
        "encode",
        "error",
        "first_at",
        "loop",
        "metering",
        "model",
        "parts",
        "ping_due",
        "raw",
        "relay",
        "rename",
        "repeats",
        "usage",
        "waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        model: str,
        *,
        encode: Callable[[ChatCompletionChunk], bytes] | None = None,
        builder: ResponseBuilder | None = None,
        relay: Callable[[ChatCompletionChunk, str | bytes], bytes | None] | None = None,
        rename: Callable[[ChatCompletionChunk, str], bytes] | None = None,
        chunk_id: str | None = None,
    ) -> None:
        self.loop = loop
        # the looping-model guard, here rather than as an operator: one observer layer less per
        # chunk (set by Exchange._open; None: the detect_repeated_chunks operator is piped instead)
        self.repeats: RepeatTracker | None = None
        # the cost meter, here rather than as tap_cost (set by Exchange._source; None: the
        # operator is piped instead)
        self.metering: _Metering | None = None
        self.model = model
        self.chunk_id = chunk_id  # set: every chunk gets this id (resumable streams' key)
        self.encode = encode
        self.builder = builder
        # passthrough: the upstream's own event data, for chunks nothing rewrote (see _Attempt._pull)
        self.relay = relay
        self.raw: RawEvent | None = RawEvent() if relay is not None else None
        # the encoder writes a chunk under the client's model name itself (no renamed chunk built)
        self.rename = rename if chunk_id is None else None
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.done = False
        self.error: Exception | None = None
        self.aborted: AbortReason | None = None
        self.chunks = 0
        self.first_at: float | None = None
        self.parts: list[bytes] = []
        self.buffered = 0
        self.ping_due = False
        self.usage: Usage | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def drained(self) -> None:
        """The writer took the buffered bytes: let the pull task go on."""
        self.buffered = 0
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_next(self, chunk: ChatCompletionChunk) -> None:
        metering = self.metering
        if metering is not None and isinstance(chunk, ChatCompletionChunk):
            # first, as tap_cost sits upstream of everything the feed does
            try:
                metering.meter.add(chunk)
            except Exception as exc:  # a chunk the meter cannot read: an error, never skipped
                error = as_api_error(exc)
                metering.finish("error", error)
                self.on_error(error)
                return
        if self.done:
            return
        repeats = self.repeats
        if repeats is not None:
            repeated = repeats.check(chunk)
            if repeated is not None:
                # what detect_repeated_chunks raises (LiteLLM's message); the pull task stops
                self.fail(
                    InternalServerError(
                        f"The model is repeating the same chunk = {repeated}.", model=chunk.model or None
                    )
                )
                return
        model = self.model
        chunk_id = self.chunk_id
        rename = None
        if chunk.model != model or (chunk_id is not None and chunk.id != chunk_id):
            rename = self.rename
            if rename is None or not chunk.model:  # else the encoder renames the wire dict itself
                rename = None
                chunk = self._renamed(chunk, model, chunk_id)
        if self.first_at is None:
            self.first_at = self.loop.time()
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        try:
            encode = self.encode
            if encode is not None:
                if rename is not None:
                    data: bytes | None = rename(chunk, model)
                else:
                    raw = self.raw
                    data = None
                    if raw is not None and raw.chunk is chunk and raw.data is not None:
                        assert self.relay is not None
                        data = self.relay(chunk, raw.data)  # None: the encoder must rewrite it
                    if data is None:
                        data = encode(chunk)
                if data:
                    self.parts.append(data)
                    self.buffered += len(data)
            else:
                assert self.builder is not None
                self.builder.add(chunk)
        except Exception as exc:
            self.fail(
                MalformedStreamError(
                    f"an upstream chunk could not be relayed ({type(exc).__name__}); the stream was ended"
                )
            )
            return
        self.wake()

    @staticmethod
    def _renamed(chunk: ChatCompletionChunk, model: str, chunk_id: str | None) -> ChatCompletionChunk:
        """``chunk`` under the client's model name (and the stream's id when set), every other field kept."""
        values = list(_CHUNK_FIELDS(chunk))
        values[_MODEL_AT] = model
        if chunk_id is not None:
            values[_ID_AT] = chunk_id
        return _new_chunk(*values)

    def fail(self, error: Exception) -> None:
        if not self.done:
            self.error = error
            self.done = True
        self.wake()
        self.drained()

    def on_error(self, error: Exception) -> None:
        metering = self.metering
        if metering is not None:
            metering.finish("error", error)  # the error as it came, as tap_cost reports it
        if not isinstance(error, APIError):
            # the library should only ever send typed errors; whatever slipped through came
            # from reading the upstream's stream, so the client is told so (502), typed
            _log.warning("rxllm.proxy.untyped_stream_error", error=type(error).__name__)
            error = MalformedStreamError(f"the upstream's stream could not be read ({type(error).__name__})")
        self.fail(error)

    def on_completed(self) -> None:
        metering = self.metering
        if metering is not None:
            metering.finish("completed", None)  # before the writer sees the end (it reads the report)
        self.done = True
        self.wake()

    def abort(self, reason: AbortReason) -> None:
        """Stop waiting: the handler sees ``aborted`` at its next turn."""
        if self.aborted is None:
            self.aborted = reason
        self.wake()
        self.drained()

    def due_ping(self) -> None:
        self.ping_due = True
        self.wake()

    async def wait(self) -> None:
        """Sleep until the next callback (or abort, or keepalive)."""
        waiter = self.loop.create_future()
        self.waiter = waiter
        await waiter

    async def wait_drained(self) -> None:
        waiter = self.loop.create_future()
        self.drain_waiter = waiter
        await waiter


class _Attempt:
    """One deployment tried for a request: its lease, its feed and its subscription."""

    __slots__ = ("_disposable", "_started", "_task", "feed", "lease")

    def __init__(self, lease: Lease, feed: _Feed) -> None:
        self.lease = lease
        self.feed = feed
        self._disposable: abc.DisposableBase | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False  # subscribed or pulling: a disposal before the end is a cancellation

    def start(self, source: Observable[ChatCompletionChunk], buffer_limit: int) -> None:
        """Start pulling the upstream: straight from the provider, or through a subscription.

        With nothing between the provider and the feed (``rxllm.stream``'s own Observable:
        the feed guards against loops and meters the cost itself), the exchange's task
        iterates the provider directly, as an exclusive consumer of a
        :class:`~rxllm.streams.PullableObservable` may: no subscription, no observer chain.
        Otherwise it subscribes and adopts the provider's pull source, so it can still pause it.
        """
        feed = self.feed
        loop = asyncio.get_running_loop()
        if isinstance(source, PullableObservable) and source.__class__ is PullableObservable and not source.steps:
            self._started = True
            self._task = loop.create_task(self._pull_direct(source.factory, buffer_limit))
            return
        adopted: list[PullSource[Any]] = []

        def adopt(pull: PullSource[Any]) -> bool:
            if adopted:
                return False
            adopted.append(pull)
            return True

        with pulling(adopt):
            self._disposable = source.subscribe(feed.on_next, feed.on_error, feed.on_completed)
        self._started = True
        if adopted:
            self._task = loop.create_task(self._pull(adopted[0], buffer_limit))

    async def _pull(self, source: PullSource[Any], limit: int) -> None:
        """Drive the upstream, pausing while ``limit`` bytes wait for the client."""
        feed = self.feed
        if feed.raw is not None:
            RAW_EVENTS.set(feed.raw)  # this task's context: the provider's generator runs in it
        turns = 0
        try:
            while await source.pull():
                if feed.done or feed.aborted:
                    break
                if feed.buffered >= limit:
                    await feed.wait_drained()
                    if feed.done or feed.aborted:
                        break
                turns += 1
                if not turns % _YIELD_EVERY:
                    await asyncio.sleep(0)  # a source that never waits must not starve the loop
        except asyncio.CancelledError:
            pass  # disposal: pull() has closed the iterator (or aclose below does)
        except Exception as exc:  # an observer raised: a bug, but never a silent hang
            feed.fail(MalformedStreamError(f"the upstream stream could not be relayed ({type(exc).__name__})"))
        finally:
            await source.aclose()

    async def _pull_direct(self, factory: Callable[[], AsyncIterable[Any]], limit: int) -> None:
        """:meth:`_pull` for the provider's own iterable: the same pauses, ends and error rules as a pull source.

        The iterable's own errors reach the feed as they are; an error raised by the feed
        itself arrives typed; the iterator is closed however the loop ends (a disposal
        cancels this task).
        """
        feed = self.feed
        if feed.raw is not None:
            RAW_EVENTS.set(feed.raw)  # this task's context: the provider's generator runs in it
        iterator: AsyncIterator[Any] | None = None
        turns = 0
        try:
            try:
                iterator = aiter(factory())
                step = iterator.__anext__
            except Exception as exc:
                feed.on_error(exc)
                return
            on_next = feed.on_next
            while True:
                try:
                    item = await step()
                except StopAsyncIteration:
                    try:
                        feed.on_completed()
                    except Exception as exc:
                        feed.on_error(as_api_error(exc))
                    return
                except Exception as exc:
                    feed.on_error(exc)  # the provider's own (typed) error
                    return
                try:
                    on_next(item)
                except Exception as exc:
                    feed.on_error(as_api_error(exc))
                    return
                if feed.done or feed.aborted:
                    return
                if feed.buffered >= limit:
                    await feed.wait_drained()
                    if feed.done or feed.aborted:
                        return
                turns += 1
                if not turns % _YIELD_EVERY:
                    await asyncio.sleep(0)  # a source that never waits must not starve the loop
        except asyncio.CancelledError:
            pass  # disposal: the iterator is closed below
        except Exception as exc:  # the feed raised: a bug, but never a silent hang
            feed.fail(MalformedStreamError(f"the upstream stream could not be relayed ({type(exc).__name__})"))
        finally:
            if iterator is not None:
                await _aclose(iterator)

    def dispose(self) -> None:
        """Cancel the upstream request (idempotent)."""
        disposable, self._disposable = self._disposable, None
        if disposable is not None:
            disposable.dispose()
        if self._started:
            self._started = False
            metering = self.feed.metering
            if metering is not None:
                metering.finish("cancelled", None)  # a no-op once the stream has ended
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def close(self, *, failed: bool) -> None:
        """Dispose and release the lease (both idempotent: the lease is released once)."""
        self.dispose()
        self.lease.release(failed=failed)


class _Report:
    """``tap_cost``'s callback for one attempt: the outcome gets the report, the router its tokens."""

    __slots__ = ("candidate", "outcome", "router")

    def __init__(self, outcome: Outcome, router: Router, candidate: DeploymentState) -> None:
        self.outcome = outcome
        self.router = router
        self.candidate = candidate

    def __call__(self, report: CostReport) -> None:
        self.outcome.report = report
        self.router.add_tokens(self.candidate, report.total_tokens)


def _retryable(exc: BaseException) -> bool:
    """Whether another deployment might succeed where this one failed (not a bad request)."""
    if isinstance(exc, BadRequestError):
        return False
    return error_status(exc) not in (400, 404, 413, 422)


# --------------------------------------------------------------------------- the exchange


class Exchange:
    """A dialect request in flight, as the handler, the watchdog and shutdown see it.

    Attributes:
        dialect: The dialect serving it.
        context: The translated call and request identity.
        outcome: Its :class:`Outcome`.
        attempt: The current attempt (replaced on failover).
        idle_timeout: Seconds without upstream activity before the stream is ended.
        last_active: Loop time of the last upstream activity the writer saw.
        last_write: Loop time of the last write to the client (for keepalives).
        response: The streamed response once its headers are sent.
    """

    __slots__ = (
        "_protocol",
        "_request",
        "_state",
        "aborted",
        "attempt",
        "context",
        "dialect",
        "encoder",
        "idle_timeout",
        "last_active",
        "last_write",
        "outcome",
        "response",
    )

    def __init__(
        self, request: web.Request, state: ProxyState, dialect: Dialect, context: Context, outcome: Outcome
    ) -> None:
        self._request = request
        self._protocol = request.protocol
        self._state = state
        self.dialect = dialect
        self.context = context
        self.outcome = outcome
        self.attempt: _Attempt | None = None
        self.encoder: StreamEncoder | None = None
        self.aborted: AbortReason | None = None
        self.idle_timeout: float | None = None
        now = asyncio.get_running_loop().time()
        self.last_active = now
        self.last_write = now
        self.response: web.StreamResponse | None = None

    def _chunk_id(self) -> str | None:
        """The id every streamed chunk gets (``None``: the upstream's; resumable streams set theirs)."""
        return None

    # -- watchdog / shutdown side

    def transport_alive(self) -> bool:
        """Whether the client's connection is still open."""
        protocol = self._protocol  # the request's, kept: the watchdog asks every exchange 5 times a second
        transport = None if protocol is None else protocol.transport
        return transport is not None and not transport.is_closing()

    def abort(self, reason: AbortReason) -> None:
        """End the request early (the handler finishes it and logs the reason)."""
        if self.aborted is None:
            self.aborted = reason
        attempt = self.attempt
        if attempt is not None:
            attempt.feed.abort(reason)

    def dispose(self) -> None:
        """Cancel the current attempt's upstream request (idempotent)."""
        if self.attempt is not None:
            self.attempt.dispose()

    def watch(self, now: float, keepalive: float | None) -> None:
        """One watchdog turn: disconnects, idle upstreams, due keepalives."""
        attempt = self.attempt
        if not self.transport_alive():
            self.dispose()
            self.abort("disconnected")
            return
        if attempt is None:
            return
        feed = attempt.feed
        idle = self.idle_timeout
        if idle is not None and feed.chunks and not feed.done and now - self.last_active > idle:
            self.abort("idle_timeout")
        elif (
            keepalive is not None
            and now - self.last_write >= keepalive  # first: almost always false
            and self.encoder is not None
            and self.dialect.keepalive is not None
        ):
            self.last_write = now
            feed.due_ping()

    # -- the upstream

    def _source(
        self, deployment: Deployment, candidate: DeploymentState, *, guarded: bool = False, feed: _Feed | None = None
    ) -> Observable[ChatCompletionChunk]:
        """``rxllm.stream`` for one deployment, guarded against looping models and metered.

        A model stuck repeating itself fails the stream with ``InternalServerError`` (before
        the first chunk the next deployment is tried; after it, the dialect's error event),
        as LiteLLM's proxy does with ``REPEATED_STREAMING_CHUNK_LIMIT``.
        """
        call = self.context.call
        params: dict[str, Any] = {**deployment.params}
        params.update((k, v) for k, v in call.params.items() if k not in BLOCKED_PARAMS)
        if deployment.api_base is not None:
            params["api_base"] = deployment.api_base
        if deployment.api_key is not None:
            params["api_key"] = deployment.api_key
        if deployment.timeout is not None:
            params["timeout"] = deployment.timeout
        if deployment.stream_timeout is not None:
            params["stream_timeout"] = deployment.stream_timeout
        outcome = self.outcome
        on_report = _Report(outcome, self._state.router, candidate)
        otel = self._state.config.otel

        # each operator applied in turn (what ``pipe`` does, without composing identities)
        source = rxllm.stream(deployment.model, call.messages, **params)
        if deployment.think_tags is not None:
            source = split_think_tags(**deployment.think_tags)(source)
        if not guarded:  # else the repeated-chunk guard runs in the attempt's _Feed (_open)
            source = detect_repeated_chunks(partial_response=False)(source)
        if feed is not None and not otel:
            # the feed meters the chunks itself (tap_cost's report, one observer layer less);
            # with tracing on, the operator stays where it was, ahead of tap_otel
            feed.metering = _Metering(on_report, deployment.pricing, deployment.model, call.messages)
        else:
            source = tap_cost(on_report, pricing=deployment.pricing, model=deployment.model, messages=call.messages)(
                source
            )
        if otel:
            attributes = {"rxllm.deployment": deployment.id, "rxllm.request_id": outcome.request_id}
            source = tap_otel(model=deployment.model, messages=call.messages, attributes=attributes)(source)
        return source

    async def _open(self, plan: list[DeploymentState], make_feed: Callable[[], _Feed]) -> _Attempt:
        """Start the first deployment in ``plan`` that produces a chunk (or ends cleanly).

        Raises:
            APIError: The last attempt's error when every deployment failed before its first chunk.
        """
        state = self._state
        router = state.router
        outcome = self.outcome
        last: BaseException | None = None
        for candidate in plan:
            lease = await router.lease(candidate)
            if lease is None:
                continue
            deployment = lease.deployment
            outcome.deployment = deployment.id
            outcome.attempts += 1
            outcome.tried.append(deployment.id)
            attempt = _Attempt(lease, make_feed())
            self.attempt = attempt
            if self.aborted is not None:
                attempt.feed.abort(self.aborted)
            try:
                limit = check_repeated_chunk_limit(settings.repeated_chunk_limit)
            except ValueError:
                limit = None  # the operator reports the bad setting, as it always did
            if limit is not None:
                attempt.feed.repeats = RepeatTracker(limit)
            try:
                source = self._source(deployment, candidate, guarded=limit is not None, feed=attempt.feed)
                attempt.start(source, state.config.stream_buffer_size)
            except Exception as exc:  # validation or a mock error: raised before any I/O
                error = _before_io(exc)
                attempt.close(failed=_retryable(error))
                last = error
                if not _retryable(error):
                    break
                continue
            self.idle_timeout = deployment.stream_timeout
            try:
                await self._first(attempt.feed, deployment.timeout)
            except TimeoutError:
                attempt.close(failed=True)
                last = Timeout(
                    f"no response within {deployment.timeout:g} s (the deployment's timeout)",
                    llm_provider=deployment.model.partition("/")[0],
                    model=deployment.model,
                )
                continue
            except BaseException:
                attempt.close(failed=False)
                raise
            feed = attempt.feed
            if feed.aborted is not None or feed.chunks or feed.error is None:
                return attempt
            attempt.close(failed=_retryable(feed.error))
            last = feed.error
            if not _retryable(last):
                break
        if last is None:
            raise ProxyError(
                f"every deployment of {self.context.call.model!r} is at its requests-per-minute limit; retry later",
                status_code=429,
                code="rate_limit_exceeded",
                retry_after=1.0,
            )
        raise last

    async def _first(self, feed: _Feed, limit: float | None) -> None:
        """Wait for the first chunk, the end or an abort (sending keepalives meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        async with asyncio.timeout_at(deadline):
            while not (feed.chunks or feed.done or feed.aborted):
                if feed.ping_due:
                    feed.ping_due = False
                    await self._ping()
                    continue
                await feed.wait()

    async def _ping(self) -> None:
        """Write the dialect's keepalive (committing the response's headers if need be)."""
        keepalive = self.dialect.keepalive
        if keepalive is None:
            return
        try:
            response = await self._prepare()
            await response.write(keepalive)
        except ConnectionError:
            self.abort("disconnected")

    async def _prepare(self) -> web.StreamResponse:
        response = self.response
        if response is None:
            headers = {**SSE_HEADERS, **self.dialect.stream_headers, "X-Request-Id": self.outcome.request_id}
            response = web.StreamResponse(headers=headers)
            self.response = response
            await response.prepare(self._request)
        return response

    def _abort_error(self, reason: AbortReason) -> APIError:
        if reason == "shutdown":
            self.outcome.outcome = "cancelled"
            return ProxyError("the proxy is shutting down", status_code=503, retry_after=1.0)
        if reason == "idle_timeout":
            return Timeout("the upstream sent nothing for longer than the deployment's stream_timeout")
        self.outcome.outcome = "cancelled"
        return ProxyError("the client disconnected", status_code=499)

    def _final_usage(self, feed: _Feed) -> Usage | None:
        if feed.usage is not None:
            return feed.usage
        return self.outcome.usage

    # -- non-streaming

    async def complete(self, plan: list[DeploymentState]) -> web.Response:
        """Collect the stream into the dialect's one JSON answer."""
        loop = asyncio.get_running_loop()
        call = self.context.call
        attempt = await self._open(plan, lambda: _Feed(loop, call.model, builder=ResponseBuilder(call.messages)))
        feed = attempt.feed
        failed = False
        try:
            self.outcome.first_at = feed.first_at
            limit = attempt.lease.deployment.timeout
            try:
                async with asyncio.timeout(limit):
                    while not (feed.done or feed.aborted):
                        await feed.wait()
            except TimeoutError:
                failed = True
                raise Timeout(
                    f"the response did not complete within {limit:g} s (the deployment's timeout)",
                    model=attempt.lease.deployment.model,
                ) from None
            if feed.aborted is not None:
                raise self._abort_error(feed.aborted)
            if feed.error is not None:
                failed = _retryable(feed.error)
                raise feed.error
            assert feed.builder is not None
            try:
                response = feed.builder.build()
                body = self.dialect.respond(response, self.context)
                data = orjson.dumps(body)
            except Exception as exc:
                failed = True
                raise MalformedStreamError(
                    f"the upstream's answer could not be assembled ({type(exc).__name__})"
                ) from None
            return web.Response(body=data, content_type="application/json")
        finally:
            attempt.close(failed=failed)

    # -- streaming

    async def stream(self, plan: list[DeploymentState]) -> web.StreamResponse:
        """Stream the dialect's events, written in batches as they arrive."""
        loop = asyncio.get_running_loop()
        encoder = self.encoder = self.dialect.stream_encoder(self.context)
        model = self.context.call.model
        relay = getattr(encoder, "relay", None) if self._state.config.stream_passthrough else None
        # an encoder that writes a chunk under another model name itself (the chat dialect)
        rename = getattr(encoder, "renamed", None)
        try:
            chunk_id = self._chunk_id()
            if chunk_id is not None:
                relay = None  # every chunk's id is rewritten (resumable streams)
            attempt = await self._open(
                plan,
                lambda: _Feed(loop, model, encode=encoder.chunk, chunk_id=chunk_id, relay=relay, rename=rename),
            )
        except APIError as exc:
            if self.response is None:
                raise
            await self._end_with_error(exc)  # headers were committed by a keepalive
            return self.response
        feed = attempt.feed
        failed = False
        try:
            if feed.aborted is not None and not feed.chunks and self.response is None:
                raise self._abort_error(feed.aborted)
            response = await self._prepare()
            outcome = self.outcome
            outcome.first_at = feed.first_at
            # the writer, here rather than in a coroutine of its own (one frame less per open
            # stream, one level less per wake-up): the feed is written out until it ends
            write = response.write
            try:
                while True:
                    parts = feed.parts
                    if parts:
                        feed.parts = []
                        feed.drained()
                        self.last_active = self.last_write = loop.time()
                        await write(parts[0] if len(parts) == 1 else b"".join(parts))
                        continue
                    if feed.aborted is not None:
                        if feed.aborted == "disconnected":
                            outcome.outcome = "cancelled"
                            return response
                        error = self._abort_error(feed.aborted)
                        outcome.error = error
                        attempt.dispose()
                        await write(encoder.error(self._state.describe(error)))
                        break
                    if feed.done:
                        if feed.error is not None:
                            outcome.error = feed.error
                            outcome.outcome = "error"
                            await write(encoder.error(self._state.describe(feed.error)))
                            await response.write_eof()
                            failed = True  # the upstream failed: its lease is released as failed
                            return response
                        await write(encoder.end(self._final_usage(feed)))
                        outcome.outcome = "completed"
                        break
                    if feed.ping_due:
                        feed.ping_due = False
                        if self.dialect.keepalive is not None:
                            await write(self.dialect.keepalive)
                        continue
                    await feed.wait()
                await response.write_eof()
            except ConnectionError:
                outcome.outcome = "cancelled"
            return response
        finally:
            attempt.close(failed=failed)

    async def _end_with_error(self, error: BaseException) -> None:
        self.outcome.error = error
        self.outcome.outcome = "error"
        assert self.response is not None and self.encoder is not None
        try:
            await self.response.write(self.encoder.error(self._state.describe(error)))
            await self.response.write_eof()
        except ConnectionError:
            self.outcome.outcome = "cancelled"


def _before_io(exc: Exception) -> Exception:
    """A failure while setting up the call (before any I/O) as a typed error."""
    if isinstance(exc, APIError):
        if isinstance(exc, BadRequestError) and exc.message.startswith("messages"):
            return ProxyError(exc.message, status_code=400, param="messages")
        return exc
    # the library refused these arguments without a typed error: the request is at fault
    _log.warning("rxllm.proxy.untyped_setup_error", error=type(exc).__name__)
    return ProxyError(f"the request could not be prepared ({type(exc).__name__})", status_code=400)


# --------------------------------------------------------------------------- the handler


def _too_large(config: ProxyConfig) -> ProxyError:
    limit = config.max_request_size
    return ProxyError(
        f"the request body is larger than this proxy's limit of {limit} bytes ({limit / 1048576:g} MiB)",
        status_code=413,
        code="request_too_large",
    )


async def read_json(request: web.Request, config: ProxyConfig) -> Any:
    """The request body, size-checked and decoded.

    Raises:
        ProxyError: 413 when too large, 400 when empty, not JSON, or nested too deeply.
    """
    length = request.content_length
    if length is not None and length > config.max_request_size:
        raise _too_large(config)
    try:
        # (not skipped when the body has already arrived: asking aiohttp whether it has,
        # ``request.content.is_eof()``, caches ``content`` in a dict the request keeps, 208 B
        # per open stream, more than the timer costs)
        async with asyncio.timeout(config.body_timeout):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(config) from None
    except TimeoutError:
        raise ProxyError(
            f"the request body did not arrive within {config.body_timeout:g} s (the proxy's body_timeout)",
            status_code=408,
            code="request_timeout",
        ) from None
    if not raw:
        raise ProxyError("the request body is empty: send a JSON object", status_code=400)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(f"the request body is not valid JSON: {exc}", status_code=400) from None
    check_depth(body)
    return body


async def handle(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    """Serve one dialect request (see the module docstring for the steps).

    Raises:
        APIError: Failures before the response started; the app's middleware renders them in
            the dialect's error shape.
    """
    state = request.app[PROXY_STATE]
    outcome = request[OUTCOME]
    outcome.dialect = dialect.name
    if state.draining:
        raise ProxyError("the proxy is shutting down", status_code=503, retry_after=1.0)
    config = state.config
    body = await read_json(request, config)
    call: Call = dialect.translate(body, request)
    del body  # the call holds what it needs; the rest of the decoded body is not kept for the stream's life
    outcome.model = call.model
    outcome.stream = call.stream
    plan = await _full_plan(state, call.model)
    admit(call, plan, config)
    # the slot is taken only now: a client dripping its body holds no slot while it does
    limit = config.max_parallel_requests
    shared = state.router.shared
    if not await shared.enter(limit):  # across every worker and instance when shared
        raise ProxyError(
            f"too many concurrent requests (limit {limit}); retry shortly",
            status_code=429,
            code="too_many_requests",
            retry_after=1.0,
        )
    state.in_flight += 1
    detached = False
    try:
        context = Context(call=call, request_id=outcome.request_id, created=int(time.time()))
        if call.stream and state.detach is not None:
            detached = True  # the slot is released when the generation ends, not the request
            return await state.detach(request, dialect, context, outcome, plan, functools.partial(_release, state))
        exchange = Exchange(request, state, dialect, context, outcome)
        state.active.add(exchange)
        try:
            if call.stream:
                return await exchange.stream(plan)
            return await exchange.complete(plan)
        finally:
            state.active.discard(exchange)
            exchange.dispose()
    finally:
        if not detached:
            _release(state)


def _release(state: ProxyState) -> None:
    """Give back the concurrency slot :func:`handle` took (a detached generation calls it when it ends)."""
    state.in_flight -= 1
    state.router.shared.leave()


async def _full_plan(state: ProxyState, model: str) -> list[DeploymentState]:
    """The router's plan, then the fallback models' plans, stretched to ``num_retries + 1`` attempts."""
    router = state.router
    config = state.config
    plan = await router.aplan(model)
    for name in config.fallbacks_for(model):
        try:
            plan += await router.aplan(name)
        except ProxyError:
            continue  # that fallback is at its rpm limit: skip it
    retries = config.num_retries
    if retries is not None and plan and len(plan) < retries + 1:
        plan = [plan[i % len(plan)] for i in range(retries + 1)]
    return plan


def _prompt_chars(messages: Any) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    total += len(text)
    return total


def admit(call: Call, plan: list[DeploymentState], config: ProxyConfig) -> None:
    """Refuse calls that one client could use to freeze the proxy or bypass its upstream.

    - ``n`` above ``max_n``;
    - ``mock_*`` fields in the request, unless mocks are allowed and every deployment that
      could serve it is a ``mock/`` model (else any client could make a real deployment
      "answer" with its own text);
    - for mock models: prompts over ``mock_max_prompt_chars`` (also counting ``n`` copies of
      an echo) and ``max_tokens`` over ``mock_max_tokens``.

    Raises:
        ProxyError: 400 naming the field.
    """
    params = call.params
    n = params.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > config.max_n:
        raise bad_request(f"n must be at most {config.max_n} on this proxy, got {n}", "n")
    mock_fields = sorted(k for k in params if k.startswith("mock_"))
    every_mock = all(s.deployment.is_mock_model for s in plan)
    if mock_fields and not (config.allow_mock_models and every_mock):
        raise bad_request(
            f"{mock_fields[0]} is only accepted for mock/ models, with allow_mock_models on", mock_fields[0]
        )
    if not any(s.deployment.is_mock for s in plan):
        return
    copies = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    chars = _prompt_chars(call.messages) * copies
    if chars > config.mock_max_prompt_chars:
        raise bad_request(
            f"mock models answer prompts of at most {config.mock_max_prompt_chars} characters (times n), got {chars}",
            "messages",
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > config.mock_max_tokens:
            raise bad_request(f"{name} must be at most {config.mock_max_tokens} for mock models, got {value}", name)


def new_request_id() -> str:
    """A fresh request id: ``req_`` and 32 random hex digits (``os.urandom``: no UUID object per request)."""
    return "req_" + os.urandom(16).hex()
