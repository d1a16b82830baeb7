"""Resumable streams (``general_settings.resumable_streams: true``): a generation outlives its client.

With resumable streams on, a streamed chat completion (or Responses stream) is served in two halves:

- a **generation**: the usual exchange (routing, failover, leases, cost), run by a task of its
  own, whose encoded SSE events are appended, one log entry per event, to a
  :class:`~rxllm.stream_log.StreamLog` keyed by the response id (``chatcmpl-…``, also every
  chunk's ``id`` and the ``X-Response-Id`` header). It holds its concurrency slot until the
  upstream ends, whether or not anyone is listening;
- **readers**: the client that asked, and any client that reconnects, to any instance, with
  ``GET /v1/chat/completions/{id}/stream`` and ``Last-Event-ID`` (or ``?after=N``). A reader
  gets exactly the events after that id, then the live ones; each SSE event carries ``id:``.
  A reader that leaves disposes only itself.

``POST /v1/chat/completions/{id}/cancel`` stops a generation: at once on the instance that runs
it, at its next event elsewhere (through the log's cancel flag). Readers then end with an
error event (``StreamCancelledError``, 499).

Responses streams (``POST /v1/responses``) work the same way, in that dialect's terms: the key
is the response id (``resp_…``, the id of the response object in every event), each event's
``id:`` is its ``sequence_number`` (log position minus one), a reader resumes with
``GET /v1/responses/{id}?stream=true&starting_after=N`` or ``Last-Event-ID: N`` (events with
``sequence_number`` > N), and ``POST /v1/responses/{id}/cancel`` stops it; a reader whose log
ends with an error gets ``error`` + ``response.failed``, numbered on from its last event.
``GET /v1/responses/{id}`` without ``stream=true`` stays the dialect's own (the response
store). Other dialects (Anthropic Messages, UI streams) are served plain.

Where the events live: every instance keeps its own generations' events in memory (its
readers read there, with no round trip), and, when ``router_settings.redis_url`` is set,
also in Redis Streams (:class:`~rxllm.integrations.redis_log.RedisStreamLog`), which is
what readers on other instances read. Without Redis, resumption works within one process.
If Redis cannot be reached when a stream starts, the stream is served as a plain stream
(not resumable; ``rxllm.proxy.resumable_unavailable`` is logged) and Redis is tried again
for later streams; if Redis is lost while a generation runs, its readers end with a
``ResumptionLostError`` event, as the stream cannot be resumed any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final, cast

import attrs
import orjson
from aiohttp import web
from reactivex import Observable

from rxllm._log import get_logger
from rxllm.dialects.responses import ResponsesEncoder
from rxllm.errors import BadRequestError
from rxllm.proxy.config import ProxyConfig
from rxllm.proxy.dialect import SSE_HEADERS, Call, Context, Dialect, ErrorInfo
from rxllm.proxy.errors import ProxyError
from rxllm.proxy.exchange import OUTCOME, PROXY_STATE, Exchange, Outcome, ProxyState
from rxllm.proxy.router import DeploymentState
from rxllm.stream_log import (
    LogEvent,
    LogWriter,
    MemoryStreamLog,
    ResumptionLostError,
    StreamCancelledError,
    StreamLog,
    StreamLogError,
    StreamNotFoundError,
    parse_event_id,
)

__all__ = ["RESUMABLE", "Resumable", "new_response_id"]

_log = get_logger("rxllm.proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Seconds after a failed Redis open before new streams try Redis again.
_RETRY_AFTER: Final = 1.0


def new_response_id(prefix: str = "chatcmpl-") -> str:
    """A fresh, unguessable response id (the stream's key), ``chatcmpl-…`` unless told otherwise."""
    return prefix + uuid.uuid4().hex


class _Sink:
    """Where a generation "writes": each SSE event becomes one entry in the logs.

    Stands in for the :class:`aiohttp.web.StreamResponse` the exchange would write to;
    keepalive comments are dropped (live readers send their own).
    """

    def __init__(self, generation: _Generation) -> None:
        self._generation = generation
        self.prepared = True
        self.status = 200

    async def write(self, data: bytes) -> None:
        self._generation.events(data)

    async def write_eof(self) -> None:
        return None


class _Generation(Exchange):
    """An exchange whose output goes to the stream logs, not to a client."""

    __slots__ = ("cancelled", "key", "local", "lost", "prepared", "sink", "started", "writer")

    def __init__(
        self,
        request: web.Request,
        state: ProxyState,
        dialect: Dialect,
        context: Context,
        outcome: Outcome,
        key: str,
        local: MemoryStreamLog,
    ) -> None:
        super().__init__(request, state, dialect, context, outcome)
        self.key = key
        self.local = local
        self.writer: LogWriter | None = None
        self.sink = _Sink(self)
        #: Done at the first event (or keepalive): the client's answer can start.
        self.started = asyncio.get_running_loop().create_future()
        self.prepared = False
        self.cancelled: StreamLogError | None = None
        self.lost = False

    def transport_alive(self) -> bool:
        """Always: a generation runs on when its client leaves."""
        return True

    def _chunk_id(self) -> str | None:
        """For chat, every chunk's id is the stream's key (what the client resumes with)."""
        return self.key if self.dialect.name == "chat" else None

    async def _prepare(self) -> web.StreamResponse:
        self.response = cast(web.StreamResponse, self.sink)
        self.prepared = True
        return self.response

    def events(self, data: bytes) -> None:
        """Append each SSE event in ``data`` (comments dropped) to both logs."""
        if self.cancelled is not None or not data:
            return
        started = self.started
        if not started.done():
            # the first event, or a keepalive before it: the client's answer starts (its key
            # goes to Redis with these events, in one batch)
            started.set_result(None)
        items = [part + b"\n\n" for part in data.split(b"\n\n") if part and not part.startswith(b":")]
        if not items:
            return
        try:
            self.local._append(self.key, items)
        except StreamLogError as exc:
            self.stop(exc)
            return
        writer = self.writer
        if writer is not None:
            writer.write_many(items)

    def stop(self, error: StreamLogError) -> None:
        """End the generation early (cancelled, or its shared log was lost)."""
        if self.cancelled is None:
            self.cancelled = error
            self.lost = isinstance(error, ResumptionLostError)
        self.dispose()
        self.abort("disconnected")


def _chat_keyed(dialect: Dialect, key: str) -> Dialect:
    return dialect  # the exchange gives every chunk the key as its id (_Generation._chunk_id)


def _chat_failure(dialect: Dialect, context: Context, key: str, next_id: int, info: ErrorInfo) -> bytes:
    return dialect.stream_encoder(context).error(info)


def _responses_keyed(dialect: Dialect, key: str) -> Dialect:
    from rxllm.proxy.dialects.responses import ResponsesStream

    return attrs.evolve(dialect, stream_encoder=lambda ctx: ResponsesStream(ctx, response_id=key))


def _responses_failure(dialect: Dialect, context: Context, key: str, next_id: int, info: ErrorInfo) -> bytes:
    # numbered on from the last event the reader has; response.created only if it has none
    encoder = ResponsesEncoder(model=context.call.model or None, response_id=key, sequence_start=next_id)
    return encoder.fail_with(info.status, info.message, code=info.code, param=info.param)


@attrs.frozen
class _Kind:
    """How one dialect's streams are made resumable.

    Attributes:
        dialect: The dialect's name.
        prefix: The response id's prefix (the stream's key is the response id).
        offset: Log position minus SSE ``id:`` (0: ids are positions, 1 for Responses, whose
            ids are the events' ``sequence_number`` values, which start at 0).
        position_param: The query parameter a reader may give its position in.
        keyed: The dialect, with an encoder whose events carry the key as their id.
        failure: The terminal events for a reader whose log ended with an error
            (``next_id``: the SSE id the next event would have had).
        cancel_object: The ``object`` of a cancel answer.
    """

    dialect: str
    prefix: str
    offset: int
    position_param: str
    keyed: Callable[[Dialect, str], Dialect]
    failure: Callable[[Dialect, Context, str, int, ErrorInfo], bytes]
    cancel_object: str

    def position(self, request: web.Request) -> int:
        """The log position a reader asks to read after (``Last-Event-ID``, else the query parameter).

        Raises:
            ProxyError: 400 naming the header or parameter, for a value that is not an event id.
        """
        header = request.headers.get("Last-Event-ID")
        name, raw = ("Last-Event-ID", header) if header is not None else (self.position_param, None)
        if raw is None:
            raw = request.query.get(self.position_param, "")
        try:
            if not raw.strip():
                return 0
            return parse_event_id(raw) + self.offset
        except BadRequestError as exc:
            raise ProxyError(exc.message, status_code=400, param=name) from None


_KINDS: Final[dict[str, _Kind]] = {
    "chat": _Kind("chat", "chatcmpl-", 0, "after", _chat_keyed, _chat_failure, "chat.completion.cancel"),
    "responses": _Kind("responses", "resp_", 1, "starting_after", _responses_keyed, _responses_failure, "response"),
}


@attrs.define
class Resumable:
    """The app's resumable-stream machinery (``app[RESUMABLE]``).

    Attributes:
        local: This instance's generations' events (and, without Redis, the only log).
        shared: The Redis log readers on other instances read (``None``: no Redis).
        generations: Running generations by response id.
    """

    config: ProxyConfig
    local: MemoryStreamLog
    shared: StreamLog | None = None
    generations: dict[str, _Generation] = attrs.field(factory=dict)
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    closing: set[asyncio.Future[None]] = attrs.field(factory=set)
    shared_down_until: float = 0.0
    shared_down: bool = False

    @classmethod
    def from_config(cls, config: ProxyConfig) -> Resumable:
        """Memory always; Redis too when ``router_settings`` names one."""
        local = MemoryStreamLog(maxlen=config.resumable_stream_maxlen, ttl=config.resumable_stream_ttl)
        shared: StreamLog | None = None
        if config.redis_url is not None:
            from rxllm.integrations.redis_log import RedisStreamLog

            shared = RedisStreamLog(
                config.redis_url, maxlen=config.resumable_stream_maxlen, ttl=config.resumable_stream_ttl
            )
        return cls(config, local, shared)

    # -- starting a generation

    def _shared_answered(self, error: StreamLogError | None) -> bool:
        """Record how Redis answered a stream's first write: ``False`` (and a warning, once per outage) if it failed."""
        if error is not None:
            if not self.shared_down:
                self.shared_down = True
                _log.warning(
                    "rxllm.proxy.resumable_unavailable",
                    error=type(error).__name__,
                    fallback="plain streams (not resumable) until Redis answers again",
                )
            self.shared_down_until = time.monotonic() + _RETRY_AFTER
            return False
        if self.shared_down:
            self.shared_down = False
            _log.warning("rxllm.proxy.resumable_recovered")
        return True

    async def detach(
        self,
        request: web.Request,
        dialect: Dialect,
        context: Context,
        outcome: Outcome,
        plan: list[DeploymentState],
        release: Callable[[], None],
    ) -> web.StreamResponse:
        """Start a generation for a chat stream and serve its events to this client."""
        state = request.app[PROXY_STATE]
        kind = _KINDS.get(dialect.name)
        if kind is None:
            return await self._plain(request, state, dialect, context, outcome, plan, release)
        if self.shared is not None and time.monotonic() < self.shared_down_until:
            return await self._plain(request, state, dialect, context, outcome, plan, release)
        key = new_response_id(kind.prefix)
        started: list[_Generation] = []
        confirmed = False

        def on_error(error: StreamLogError) -> None:
            if not started:
                return
            if confirmed:
                started[0].stop(error)  # Redis lost mid-run: its readers end with the error
            else:
                started[0].writer = None  # Redis away at the start: this stream is served plain

        writer: LogWriter | None = None
        if self.shared is not None:
            # the key is created in Redis with the first events (one batch, shared with the
            # other streams' writes), before this client sees anything
            writer = LogWriter(self.shared, key, on_error=on_error, create=True, lazy_create=True)
        renamed = kind.keyed(dialect, key)
        self.local.open_now(key)
        generation = _Generation(request, state, renamed, context, outcome, key, self.local)
        generation.writer = writer
        started.append(generation)
        self.generations[key] = generation
        state.active.add(generation)
        task = asyncio.get_running_loop().create_task(self._run(generation, plan, release), name=f"rxllm-gen-{key}")
        self.tasks.add(task)
        task.add_done_callback(_retrieved)
        task.add_done_callback(self.tasks.discard)
        # wait for the first event (or a failure before it: then the client gets its HTTP status)
        await asyncio.wait({generation.started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not generation.started.done():
            if writer is not None:
                writer.abandon()
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
            raise ProxyError("the stream ended before it started", status_code=502)
        plain = False
        if writer is not None:
            await writer.wait_opened()
            confirmed = writer.error is None
            plain = not self._shared_answered(writer.error)
        if not plain:
            return await relay(request, state, dialect, context, self.local.read_batches(key), key, kind, 0)

        def leave() -> None:
            # a plain stream: the client leaving ends the generation, as without resumable streams
            if key in self.generations:
                generation.stop(StreamCancelledError("the client left a stream that could not be made resumable"))

        return await relay(
            request, state, dialect, context, self.local.read_batches(key), key, kind, 0, plain=True, on_exit=leave
        )

    async def _plain(
        self,
        request: web.Request,
        state: ProxyState,
        dialect: Dialect,
        context: Context,
        outcome: Outcome,
        plan: list[DeploymentState],
        release: Callable[[], None],
    ) -> web.StreamResponse:
        """A stream served as without resumable streams (disconnect disposes the upstream)."""
        exchange = Exchange(request, state, dialect, context, outcome)
        state.active.add(exchange)
        try:
            return await exchange.stream(plan)
        finally:
            state.active.discard(exchange)
            exchange.dispose()
            release()

    async def _run(self, generation: _Generation, plan: list[DeploymentState], release: Callable[[], None]) -> None:
        """Run the generation to its end; then end both logs and give the slot back."""
        state = generation._state
        key = generation.key
        error: BaseException | None = None
        try:
            await generation.stream(plan)
        except asyncio.CancelledError:
            error = StreamCancelledError("the proxy stopped the generation (shutdown)")
            raise
        except Exception as exc:  # before the first event: the waiting client raises it
            error = exc
            if generation.started.done():  # pragma: no cover - the exchange writes its own error event
                _log.error("rxllm.proxy.generation_failed", response_id=key, error=type(exc).__name__)
            raise
        finally:
            state.active.discard(generation)
            generation.dispose()
            self.generations.pop(key, None)
            end: BaseException | None = generation.cancelled or (error if not generation.started.done() else None)
            if generation.prepared and error is None and not generation.started.done():
                generation.started.set_result(None)  # answered with no event: readers get the end
            self.local.finish_now(key, end)
            writer = generation.writer
            if writer is not None:
                writer.close(end)
                closed = writer.closed
                if closed is not None and not closed.done():
                    self.closing.add(closed)  # shutdown lets the end marker reach Redis
                    closed.add_done_callback(self.closing.discard)
            release()
            _log.debug("rxllm.proxy.generation_end", response_id=key, outcome=generation.outcome.result)

    # -- readers and cancel

    def _source(self, key: str, after: int) -> Observable[LogEvent] | Observable[tuple[int, list[bytes]]] | None:
        if key in self.generations or self.local_has(key):
            return self.local.read_batches(key, after)
        if self.shared is not None:
            return self.shared.read(key, after)
        return None

    def local_has(self, key: str) -> bool:
        """Whether this instance's memory holds ``key``'s events."""
        entry = self.local._live(key, self.local._clock())
        return entry is not None

    async def resume(self, request: web.Request, kind: _Kind | None = None) -> web.StreamResponse:
        """``GET /v1/chat/completions/{id}/stream`` (or, for Responses, ``GET /v1/responses/{id}?stream=true``).

        Serves the events after the reader's position (``Last-Event-ID``, or ``?after=N`` /
        ``?starting_after=N``), then the live ones, then the end.
        """
        kind = kind or _KINDS["chat"]
        state = request.app[PROXY_STATE]
        key = request.match_info["response_id"]
        after = kind.position(request)
        if not key.startswith(kind.prefix) or not await self._exists(key):
            raise ProxyError(
                f"no resumable stream {key!r} (it never existed here, or it expired)",
                status_code=404,
                code="stream_not_found",
            )
        source = self._source(key, after)
        assert source is not None
        dialect = state.dialects[kind.dialect]
        outcome = request[OUTCOME]
        outcome.dialect = kind.dialect
        outcome.stream = True
        context = Context(
            call=Call(model="", messages=(), stream=True), request_id=outcome.request_id, created=int(time.time())
        )
        return await relay(request, state, dialect, context, source, key, kind, after)

    async def _exists(self, key: str) -> bool:
        """Whether this instance's memory or the shared log knows ``key``.

        Raises:
            ProxyError: 503 when only the shared log could know and it cannot be reached.
        """
        if self.local_has(key):
            return True
        if self.shared is None:
            return False
        try:
            return await self.shared.info(key) is not None
        except StreamLogError as exc:
            raise _log_unreachable() from exc

    def route_handlers(
        self, dialect: Dialect, routes: tuple[web.AbstractRouteDef, ...]
    ) -> tuple[list[web.AbstractRouteDef], list[tuple[str, str, Handler]]]:
        """The resumable routes of ``dialect``, and its own extra routes with the retrieve one wrapped.

        Chat: ``GET {base}/{id}/stream`` and ``POST {base}/{id}/cancel``. Responses:
        ``GET {base}/{id}?stream=true`` (the dialect's own ``GET {base}/{id}`` answers the
        other requests) and ``POST {base}/{id}/cancel``. Other dialects: none (their streams
        are served plain).

        Returns:
            The dialect's extra routes to register (some wrapped), and the new routes as
            ``(method, path, handler)``.
        """
        kind = _KINDS.get(dialect.name)
        if kind is None:
            return list(routes), []
        resume = functools.partial(self.resume, kind=kind)
        cancel = functools.partial(self.cancel, kind=kind)
        added: list[tuple[str, str, Handler]] = []
        kept: list[web.AbstractRouteDef] = list(routes)
        for base in dialect.routes:
            added.append(("POST", base + "/{response_id}/cancel", cancel))
            if kind.dialect == "chat":
                added.append(("GET", base + "/{response_id}/stream", resume))
                continue
            path = base + "/{response_id}"
            own: Handler | None = None
            for i, route in enumerate(kept):
                if isinstance(route, web.RouteDef) and route.method == "GET" and route.path == path:
                    own = route.handler
                    del kept[i]
                    break
            added.append(("GET", path, _stream_or(resume, own)))
        return kept, added

    async def cancel(self, request: web.Request, kind: _Kind | None = None) -> web.Response:
        """``POST /v1/chat/completions/{id}/cancel`` (``/v1/responses/{id}/cancel``): stop the generation.

        At once on the instance that runs it, at its next event elsewhere. Answers ``{"id",
        "object", "cancelled", "status"}`` (``object`` is ``response`` for Responses):
        ``cancelled`` is false for a stream that had already ended (``status`` says how); 404
        for an unknown id.
        """
        kind = kind or _KINDS["chat"]
        key = request.match_info["response_id"]
        if not key.startswith(kind.prefix):
            raise ProxyError(f"no resumable stream {key!r}", status_code=404, code="stream_not_found")
        generation = self.generations.get(key)
        if generation is not None:
            generation.stop(StreamCancelledError(f"the stream {key!r} was cancelled"))
            if self.shared is not None:
                with contextlib.suppress(StreamLogError):
                    await self.shared.cancel(key)
            return _cancelled(kind, key, True, "cancelled")
        try:
            info = await self.local.info(key)
            log: StreamLog = self.local
            if info is None and self.shared is not None:
                info = await self.shared.info(key)
                log = self.shared
            if info is None:
                raise ProxyError(f"no resumable stream {key!r}", status_code=404, code="stream_not_found")
            if info.end is not None:
                return _cancelled(kind, key, False, "completed" if info.end.error_type is None else "failed")
            await log.cancel(key)
        except StreamLogError as exc:
            raise _log_unreachable() from exc
        return _cancelled(kind, key, True, "cancelled")

    # -- lifecycle

    async def aclose(self) -> None:
        """Stop running generations (their readers get the shutdown error event) and close Redis."""
        for generation in list(self.generations.values()):
            generation.dispose()
            generation.abort("shutdown")
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*self.tasks, return_exceptions=True)
        for task in list(self.tasks):
            task.cancel()
        if self.closing:
            await asyncio.wait(set(self.closing), timeout=2.0)
        if self.shared is not None:
            await self.shared.aclose()


RESUMABLE: Final = web.AppKey("rxllm.proxy.resumable", Resumable)


def _log_unreachable() -> ProxyError:
    """The 503 a reconnect or cancel gets while the stream log cannot be reached (retry soon)."""
    return ProxyError(
        "resumable streams are unavailable right now (the stream log cannot be reached)",
        status_code=503,
        retry_after=1.0,
    )


def _retrieved(task: asyncio.Task[None]) -> None:
    """Mark a generation's exception as seen (its waiting client raised it, or had left)."""
    if not task.cancelled():
        task.exception()


def _cancelled(kind: _Kind, key: str, cancelled: bool, status: str) -> web.Response:
    body = {"id": key, "object": kind.cancel_object, "cancelled": cancelled, "status": status}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


_TRUE: Final = frozenset({"true", "1", "yes"})


def _stream_or(resume: Handler, own: Handler | None) -> Handler:
    """``resume`` for ``?stream=true``, else the dialect's own handler (404 without one)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("stream", "").lower() in _TRUE:
            return await resume(request)
        if own is None:
            key = request.match_info.get("response_id", "")
            raise ProxyError(f"response {key!r} was not found", status_code=404, param="response_id", code="not_found")
        return await own(request)

    return handler


async def relay(
    request: web.Request,
    state: ProxyState,
    dialect: Dialect,
    context: Context,
    source: Observable[LogEvent] | Observable[tuple[int, list[bytes]]],
    key: str,
    kind: _Kind,
    after: int,
    *,
    plain: bool = False,
    on_exit: Callable[[], None] | None = None,
) -> web.StreamResponse:
    """Write a log's events to the client as SSE, each with its ``id:``, until the end.

    ``after`` is the log position the reader starts after. A log that ends with an error
    (cancelled, lost, not found) adds the dialect's terminal error events (without ``id:``:
    they are not in the log). ``plain``: no ``id:`` lines and no ``X-Response-Id`` (a stream
    that could not be made resumable); ``on_exit`` runs when the relay ends, however it ends.
    The client leaving disposes only this reader.
    """
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []  # framed output, ids in
    ended: list[BaseException | None] = []
    waiter: list[asyncio.Future[None]] = []
    offset = kind.offset
    position = after  # the last log position delivered

    def wake() -> None:
        if waiter and not waiter[0].done():
            waiter[0].set_result(None)

    def on_next(event: LogEvent | tuple[int, list[bytes]]) -> None:
        nonlocal position
        if isinstance(event, LogEvent):
            start, datas = int(event.id), [event.data]
        else:
            start, datas = event
        if plain:
            pending.extend(datas)
        else:
            first = start - offset
            pending.extend([b"id: %d\n%s" % (first + i, data) for i, data in enumerate(datas)])
        position = start + len(datas) - 1
        wake()

    def on_error(error: Exception) -> None:
        ended.append(error)
        wake()

    def on_completed() -> None:
        ended.append(None)
        wake()

    headers = {**SSE_HEADERS, **dialect.stream_headers}
    if not plain:
        headers["X-Response-Id"] = key
    subscription = source.subscribe(on_next, on_error, on_completed)
    try:
        if ended and not pending and isinstance(ended[0], StreamNotFoundError):
            raise ProxyError(ended[0].message, status_code=404, code="stream_not_found")
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        keepalive = state.config.keepalive_interval
        try:
            while True:
                if pending:
                    out = pending[0] if len(pending) == 1 else b"".join(pending)
                    pending.clear()
                    await response.write(out)
                    continue
                if ended:
                    error = ended[0]
                    if error is not None:
                        info = state.describe(error)
                        await response.write(kind.failure(dialect, context, key, position - offset + 1, info))
                    break
                waiter[:] = [loop.create_future()]
                try:
                    async with asyncio.timeout(keepalive):
                        await waiter[0]
                except TimeoutError:
                    if dialect.keepalive is not None:
                        await response.write(dialect.keepalive)
            await response.write_eof()
        except ConnectionError:
            request[OUTCOME].outcome = "cancelled"
        return response
    finally:
        subscription.dispose()
        if on_exit is not None:
            on_exit()
