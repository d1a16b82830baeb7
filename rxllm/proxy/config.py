"""The proxy's configuration: LiteLLM's ``config.yaml`` shape, validated up front.

A config names deployments under public model names and sets server-wide limits::

    model_list:
      - model_name: gpt-4o                  # what clients send as "model"
        litellm_params:
          model: openai/gpt-4o              # what rxllm.stream() is called with
          api_base: https://api.openai.com/v1
          api_key: os.environ/OPENAI_API_KEY
          rpm: 500                          # requests per minute this deployment takes
          tpm: 200000                       # tokens per minute (prompt + completion)
          timeout: 30                       # seconds to the first chunk (and to connect)
          stream_timeout: 60                # seconds allowed between chunks
      - model_name: gpt-4o                  # a second deployment: load-balanced, failover
        litellm_params: {model: azure_openai/gpt-4o, api_base: ..., api_key: ...}
    general_settings:
      master_key: os.environ/RXLLM_MASTER_KEY
      max_request_size_mb: 16
      global_max_parallel_requests: 1000
      shutdown_grace_period: 10
      allow_mock_models: true
      keepalive_interval: 15                # seconds of silence before an SSE keepalive (0: off)
      stream_buffer_kb: 256                 # bytes held per stream for a slow client
      max_n: 16                             # largest "n" (choices per request) accepted
      header_timeout: 10                    # seconds a client may take to send its headers
      body_timeout: 30                      # seconds a client may take to send its body
      listen_backlog: 2048                  # connections the kernel queues before accept()
      stream_passthrough: true              # forward upstream event bytes when nothing needs rewriting
      gc_tuning: true                       # rxllm serve freezes its start-up objects, collects less often
      gc_gen0_threshold: 50000              # allocations between young-generation collections (tuned)
      event_loop: asyncio                   # or uvloop (pip install 'rxllm[uvloop]'), or auto
      cors_allowed_origins: []              # web origins whose pages may call the proxy
      responses_store_size: 0               # /v1/responses answers kept for previous_response_id (0: none)
      resumable_streams: false              # keep streams' events so clients can resume them
      resumable_stream_ttl: 3600            # seconds a stream's events are kept
      resumable_stream_maxlen: 10000        # events kept per stream
    router_settings:                        # state shared by every worker and instance
      redis_url: os.environ/REDIS_URL       # or LiteLLM's redis_host / redis_port / redis_password
      redis_cache_ttl: 0.1                  # seconds the cached shared state is trusted

Every problem is reported as :class:`ConfigError` naming where it is
(``model_list[1].litellm_params.rpm``), so a bad file fails at startup, not at the first
request. Secrets (``api_key``, ``master_key``) never appear in reprs or error messages.

Nothing is ignored silently. The sections LiteLLM users bring are read too:
``environment_variables`` (set before ``os.environ/NAME`` references are resolved, and in
the process's environment when the app is created), ``litellm_settings`` and
``router_settings`` (``num_retries``, ``request_timeout`` / ``timeout``, ``fallbacks``,
``default_fallbacks``, ``routing_strategy``, ``cooldown_time``, ``disable_cooldowns``, and
``callbacks: ["prometheus", "otel"]``). Every other key is either refused with a
:class:`ConfigError` that names it (when ignoring it would change what the proxy promises:
Redis, budgets, caching, guardrails) or reported in :attr:`ProxyConfig.warnings`, which
``rxllm serve`` prints at startup and :func:`~rxllm.proxy.create_app` logs.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import attrs
import yaml

from rxllm.proxy.eventloop import EVENT_LOOPS, uvloop_installed

__all__ = [
    "ENV_MASTER_KEY",
    "ConfigError",
    "Deployment",
    "ProxyConfig",
    "load_config",
    "normalize_origin",
    "parse_config",
    "with_model",
]

#: litellm_params names whose values are secrets (never shown, scrubbed from every message).
_SECRET_PARAM: Final = re.compile(r"(key|secret|token|password|passwd|credentials?)$", re.IGNORECASE)

#: The environment variable that sets the master key when the config does not.
ENV_MASTER_KEY: Final = "RXLLM_MASTER_KEY"

_ENV_PREFIX: Final = "os.environ/"

_PRICE_KEYS: Final = frozenset({"input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost"})

#: litellm_params the proxy interprets itself; everything else is passed to rxllm.stream().
_TRANSPORT: Final = frozenset(
    {"model", "api_base", "base_url", "api_key", "rpm", "tpm", "timeout", "stream_timeout", "split_think_tags"}
)

#: The keyword arguments ``split_think_tags`` accepts in a deployment's ``litellm_params``.
_THINK_TAG_KEYS: Final = frozenset({"open_tag", "close_tag", "implicit_open"})

_GENERAL_KEYS: Final = frozenset(
    {
        "master_key",
        "max_request_size_mb",
        "global_max_parallel_requests",
        "shutdown_grace_period",
        "allow_mock_models",
        "cooldown_time",
        "keepalive_interval",
        "stream_buffer_kb",
        "metrics",
        "otel",
        "max_n",
        "header_timeout",
        "body_timeout",
        "listen_backlog",
        "gc_tuning",
        "gc_gen0_threshold",
        "event_loop",
        "stream_passthrough",
        "mock_max_prompt_chars",
        "mock_max_tokens",
        "cors_allowed_origins",
        "responses_store_size",
        "resumable_streams",
        "resumable_stream_ttl",
        "resumable_stream_maxlen",
    }
)

#: router_settings naming the Redis that workers and instances share (LiteLLM's spelling, or one URL).
_REDIS_KEYS: Final = frozenset(
    {"redis_url", "redis_host", "redis_port", "redis_password", "redis_db", "redis_cache_ttl"}
)

#: LiteLLM's general_settings this proxy does not implement, and why (a ConfigError names them).
_GENERAL_REFUSED: Final = {
    "database_url": "rxllm serve keeps no database (no virtual keys, no spend logs)",
    "store_model_in_db": "rxllm serve keeps no database",
    "max_budget": "budgets are not enforced by rxllm serve",
    "litellm_key_header_name": "rxllm serve reads the key from 'Authorization: Bearer' only",
    "custom_auth": "custom auth hooks are not supported",
    "enforce_user_param": "not supported",
}
#: LiteLLM's general_settings that are harmless to ignore here (a warning names them).
_GENERAL_IGNORED: Final = {
    "alerting": "alerting integrations are not supported; scrape /metrics instead",
    "alerting_threshold": "alerting is not supported",
    "proxy_batch_write_at": "there are no spend logs to batch",
    "disable_spend_logs": "rxllm serve writes no spend logs (each request is one log line)",
    "background_health_checks": "health checks are /health/liveliness and /health/readiness",
    "health_check_interval": "there are no background health checks",
    "max_parallel_requests": "use global_max_parallel_requests (all requests) or litellm_params.rpm",
    "infer_model_from_keys": "not supported",
    "allowed_routes": "every route is served",
    "public_routes": "only the health routes skip authentication",
    "ui_access_mode": "there is no admin UI",
}

#: What litellm_settings / router_settings keys rxllm serve understands (``_setting`` reads them).
_SUPPORTED_SETTINGS: Final = frozenset(
    {
        "num_retries",
        "request_timeout",
        "timeout",
        "fallbacks",
        "default_fallbacks",
        "routing_strategy",
        "cooldown_time",
        "disable_cooldowns",
        "callbacks",
        "success_callback",
        "failure_callback",
        "json_logs",
        "turn_off_message_logging",
    }
)
#: Keys refused because ignoring them would silently break a promise of the user's config.
_REFUSED_SETTINGS: Final = {
    "cache": "response caching is not supported yet",
    "cache_params": "response caching is not supported yet",
    "max_budget": "budgets are not enforced by rxllm serve",
    "budget_duration": "budgets are not enforced by rxllm serve",
    "provider_budget_config": "budgets are not enforced by rxllm serve",
    "guardrails": "guardrails are not supported",
    "max_end_user_budget": "budgets are not enforced by rxllm serve",
}
#: Keys that change nothing essential here; each is named in a warning.
_IGNORED_SETTINGS: Final = {
    "drop_params": "rxllm passes every parameter to the provider, which rejects what it does not support",
    "modify_params": "rxllm never rewrites a request's messages",
    "set_verbose": "configure the 'rxllm' logger instead (logging or structlog)",
    "telemetry": "rxllm sends no telemetry",
    "context_window_fallbacks": "only failures before the first chunk fail over (fallbacks)",
    "content_policy_fallbacks": "only failures before the first chunk fail over (fallbacks)",
    "allowed_fails": "one failure puts a deployment in cooldown (cooldown_time)",
    "allowed_fails_policy": "one failure puts a deployment in cooldown (cooldown_time)",
    "retry_policy": "retries follow num_retries for every retryable error",
    "retry_after": "retries are immediate, on the next deployment when there is one",
    "enable_pre_call_checks": "context-window pre-call checks are not supported",
    "routing_strategy_args": "the router takes no arguments",
    "model_group_alias": "not supported in the config",
    "request_timeout_retries": "not supported",
    "redact_user_api_key_info": "rxllm never logs keys",
    "enable_json_schema_validation": "not supported",
}
_ROUTING_SUPPORTED: Final = frozenset({"simple-shuffle", "least-busy"})
_ROUTING_LITELLM: Final = frozenset(
    {"usage-based-routing", "usage-based-routing-v2", "latency-based-routing", "cost-based-routing"}
)
_CALLBACKS_SUPPORTED: Final = frozenset({"prometheus", "otel"})

_TOP_LEVEL: Final = frozenset(
    {"model_list", "general_settings", "litellm_settings", "router_settings", "environment_variables"}
)
_TOP_LEVEL_REFUSED: Final = {
    "include": "'include' of other config files is not supported yet: merge them into one file",
    "guardrails": "guardrails are not supported",
    "credential_list": "named credentials are not supported: put api_key in litellm_params",
}

#: Deployment parameters the mock provider reads (documented in the README's config reference).
MOCK_PARAMS: Final = ("mock_response", "mock_tool_calls", "mock_delay", "mock_fail_after", "mock_fail_with")
#: litellm_params passed on to rxllm.stream() without a word (OpenAI parameters and the mock's).
_KNOWN_PASSTHROUGH: Final = frozenset(
    {
        *MOCK_PARAMS,
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "user",
        "reasoning_effort",
        "stream_options",
        "extra_headers",
        "api_version",
        "thinking",
        "top_k",
    }
)
#: litellm_params LiteLLM's router reads that rxllm does not use; each is named in a warning.
_PARAMS_IGNORED: Final = {
    "weight": "load is balanced by requests in flight",
    "order": "deployments are tried least busy first",
    "max_parallel_requests": "use rpm, or general_settings.global_max_parallel_requests",
    "max_retries": "use router_settings.num_retries",
    "num_retries": "use router_settings.num_retries",
    "drop_params": "parameters are passed on as given",
    "use_in_pass_through": "there are no pass-through routes",
}


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and why."""


def _secret_values(params: Mapping[str, Any]) -> Iterator[str]:
    """The secret values among ``litellm_params``: key-like names and every ``extra_headers`` value."""
    for name, value in params.items():
        if name in ("extra_headers", "headers") and isinstance(value, Mapping):
            yield from (v for v in value.values() if isinstance(v, str) and v)
        elif _SECRET_PARAM.search(name) and isinstance(value, str) and value:
            yield value


def _redacted(params: Mapping[str, Any]) -> str:
    """``params`` for a repr: secret values and header values as ``***``."""
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("extra_headers", "headers") and isinstance(value, Mapping):
            shown[name] = dict.fromkeys(value, "***")
        elif _SECRET_PARAM.search(name):
            shown[name] = "***"
        else:
            shown[name] = value
    return repr(shown)


@attrs.frozen
class Deployment:
    """One upstream a public model name can be served by.

    Attributes:
        id: A stable name for logs (``model_info.id``, else ``"<model_name>#<n>"``).
        model_name: The public name clients ask for.
        model: The ``provider/model`` string given to :func:`rxllm.stream`.
        api_base: The upstream endpoint, if not the provider's default.
        api_key: The upstream key (resolved from ``os.environ/NAME``); never shown.
        rpm: Requests per minute this deployment accepts (``None``: unlimited).
        tpm: Tokens (prompt + completion) per minute this deployment accepts (``None``: unlimited).
        timeout: Seconds to connect and to wait for the first chunk (passed to :func:`rxllm.stream`,
            where it also bounds each read unless ``stream_timeout`` is set).
        stream_timeout: Seconds allowed between chunks once streaming.
        params: The other ``litellm_params`` (``mock_response``, ``temperature``...), passed on
            (its repr hides ``extra_headers`` values and key-like entries).
        think_tags: ``ops.split_think_tags`` keyword arguments when the deployment's model
            thinks inline in ``<think>`` tags (``split_think_tags: true`` or a mapping of
            ``open_tag``/``close_tag``/``implicit_open``), else ``None``.
        pricing: This deployment's own price (``input_cost_per_token``,
            ``output_cost_per_token``, optionally ``cache_read_input_token_cost``), used
            instead of rxllm's price table.
    """

    id: str
    model_name: str
    model: str
    api_base: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    rpm: int | None = None
    tpm: int | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict, repr=_redacted)
    think_tags: Mapping[str, Any] | None = None
    pricing: Mapping[str, float] | None = None

    @property
    def is_mock_model(self) -> bool:
        """Whether this deployment's model is a ``mock/`` model (never leaves the process)."""
        return self.model.startswith("mock/")

    @property
    def is_mock(self) -> bool:
        """Whether this deployment never leaves the process (mock model or mock response)."""
        return (
            self.model.startswith("mock/")
            or self.params.get("mock_response") is not None
            or self.params.get("mock_tool_calls") is not None
        )


@attrs.frozen
class ProxyConfig:
    """Everything the proxy app needs; build it with :func:`load_config` or :func:`parse_config`.

    Attributes:
        deployments: Every deployment, in file order.
        master_key: The bearer key clients must send (``None``: no auth); never shown.
        max_request_size: Largest request body in bytes (larger: HTTP 413).
        max_parallel_requests: Chat requests served at once (more: HTTP 429).
        shutdown_grace_period: Seconds in-flight streams get to finish at shutdown.
        allow_mock_models: Serve ``mock/*`` models not in ``model_list`` (offline use, tests).
        cooldown_time: Seconds a deployment that failed is tried last.
        keepalive_interval: Seconds without a write before a stream gets a keepalive (the
            dialect's: ``: ping`` comments, Anthropic's ``ping`` event); ``None``: never.
        stream_buffer_size: Bytes of encoded events held per stream for a client that reads
            slowly; past it the proxy stops reading the upstream until the client catches up.
        num_retries: Attempts after the first for a request that fails before its first
            chunk (``None``: each deployment of the model once). Retries go to the model's
            other deployments first, then again to the same ones.
        fallbacks: Model name -> model names tried, in order, once its deployments failed.
        default_fallbacks: Fallbacks for every model without its own.
        routing_strategy: LiteLLM's name for the routing in use (least busy, ties rotate).
        metrics: Serve Prometheus metrics at ``GET /metrics``.
        otel: Trace each upstream attempt with OpenTelemetry (``ops.tap_otel``).
        environment: ``environment_variables`` (set by :meth:`apply_environment`); never shown.
        warnings: One message per setting that was read but has no effect here.
        max_n: The largest ``n`` (choices per request) accepted (more: HTTP 400).
        header_timeout: Seconds a connection may take to send a request's headers before it
            is closed (also the idle limit between requests on a kept-alive connection).
        body_timeout: Seconds a client may take to send a request body (more: HTTP 408).
        listen_backlog: Connections the kernel queues before the proxy accepts them.
        stream_passthrough: Forward an OpenAI-compatible upstream's own event data to chat
            clients when nothing in the chunk needs rewriting (the client's model name is the
            upstream's, the usage is wanted or absent, no normalizing, no id renaming); every
            chunk is still parsed, checked for loops and metered.
        gc_tuning: Whether :func:`~rxllm.proxy.serve` tunes the garbage collector for a server
            (:mod:`rxllm.proxy.tuning`): start-up objects frozen, young collections every
            ``gc_gen0_threshold`` allocations instead of 700.
        gc_gen0_threshold: Net container allocations between young-generation collections
            when ``gc_tuning`` is on.
        event_loop: The event loop ``rxllm serve`` runs on: ``"asyncio"`` (the standard
            one), ``"uvloop"`` (``pip install 'rxllm[uvloop]'``) or ``"auto"`` (uvloop when
            installed); see :mod:`rxllm.proxy.eventloop`.
        mock_max_prompt_chars: Largest prompt (characters) a mock model accepts.
        mock_max_tokens: Largest ``max_tokens`` (per choice) a mock model accepts.
        cors_allowed_origins: Web origins (``"http://localhost:3000"``) whose pages may call
            the proxy from a browser (``"*"``: any). A request whose ``Origin`` header is not
            among them is refused (403) before anything else happens; default: none.
        responses_store_size: How many ``/v1/responses`` answers the proxy keeps in memory
            for ``previous_response_id``, ``item_reference`` and ``GET /v1/responses/{id}``
            (0, the default: none, and such requests are a 400).
        redis_url: Where the router state shared by workers and instances lives
            (``router_settings.redis_url``, or ``redis_host``/``redis_port``/``redis_password``);
            ``None``: each worker keeps its own. Never shown (it may hold a password).
        redis_cache_ttl: Seconds the router trusts its cached copy of the shared state
            (in-flight counts, cooldowns) before it reads Redis again.
        resumable_streams: Keep every stream's events in a stream log (Redis when configured,
            else this process's memory), so clients can reconnect and resume.
        resumable_stream_ttl: Seconds a resumable stream's events are kept after its last one.
        resumable_stream_maxlen: Events kept per resumable stream.
        cors_allowed_origins: Web origins (``"http://localhost:3000"``) whose pages may call
            the proxy from a browser (``"*"``: any). A request whose ``Origin`` header is not
            among them is refused (403) before anything else happens; default: none.
    """

    deployments: tuple[Deployment, ...] = ()
    master_key: str | None = attrs.field(default=None, repr=False)
    max_request_size: int = 16 * 1024 * 1024
    max_parallel_requests: int = 1000
    shutdown_grace_period: float = 10.0
    allow_mock_models: bool = True
    cooldown_time: float = 5.0
    keepalive_interval: float | None = 15.0
    stream_buffer_size: int = 256 * 1024
    num_retries: int | None = None
    fallbacks: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    default_fallbacks: tuple[str, ...] = ()
    routing_strategy: str = "simple-shuffle"
    metrics: bool = False
    otel: bool = False
    environment: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    warnings: tuple[str, ...] = ()

    def fallbacks_for(self, model: str) -> tuple[str, ...]:
        """The model names to fail over to once every deployment of ``model`` failed."""
        return tuple(n for n in self.fallbacks.get(model, self.default_fallbacks) if n != model)

    def apply_environment(self) -> None:
        """Set ``environment_variables`` in the process's environment (providers read keys there)."""
        os.environ.update(self.environment)

    max_n: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    listen_backlog: int = 2048
    gc_tuning: bool = True
    gc_gen0_threshold: int = 50_000
    event_loop: str = "asyncio"
    stream_passthrough: bool = True
    mock_max_prompt_chars: int = 256 * 1024
    mock_max_tokens: int = 32768
    cors_allowed_origins: tuple[str, ...] = ()
    responses_store_size: int = 0
    redis_url: str | None = attrs.field(default=None, repr=False)
    redis_cache_ttl: float = 0.1
    resumable_streams: bool = False
    resumable_stream_ttl: float = 3600.0
    resumable_stream_maxlen: int = 10_000

    @property
    def model_names(self) -> list[str]:
        """The public model names, in first-seen order."""
        return list(dict.fromkeys(d.model_name for d in self.deployments))

    def secrets(self) -> list[str]:
        """Every configured secret (keys, key-like params, ``extra_headers`` values), for scrubbing."""
        found = [d.api_key for d in self.deployments if d.api_key]
        for deployment in self.deployments:
            found.extend(_secret_values(deployment.params))
        if self.master_key:
            found.append(self.master_key)
        if self.redis_url:
            password = urlsplit(self.redis_url).password
            if password:
                found.extend({password, unquote(password)})
        return found


def with_model(config: ProxyConfig, model: str, alias: str | None = None) -> ProxyConfig:
    """``config`` plus one deployment of ``model`` served as ``alias`` (``rxllm serve --model``).

    Keys come from the provider's usual environment variable (``OPENAI_API_KEY``...), as with
    :func:`rxllm.stream`.

    Raises:
        ConfigError: ``model`` is not a ``provider/model`` string, or ``alias`` is already a
            model name in ``config``.
    """
    model = model.strip()
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise ConfigError(f"--model must be 'provider/model' (like 'openai/gpt-4o' or 'mock/echo'), got {model!r}")
    public = (alias or model).strip()
    if not public:
        raise ConfigError("--alias must not be empty")
    if public in config.model_names:
        raise ConfigError(f"--model: the config already serves a model named {public!r}")
    deployment = Deployment(id=f"{public}#cli", model_name=public, model=model)
    return attrs.evolve(config, deployments=(*config.deployments, deployment))


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Read and validate a YAML config file (or the defaults when ``path`` is ``None``).

    ``RXLLM_MASTER_KEY`` sets the master key when the file does not. Reading the process's
    environment (``environ`` not given), the file's ``environment_variables`` are also set in
    it, as LiteLLM's proxy does at startup.

    Raises:
        ConfigError: The file is missing, is not YAML, or is not a valid config.
    """
    env = os.environ if environ is None else environ
    if path is None:
        return parse_config({}, environ=env)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(file)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {str(file)!r} is not valid YAML{at}") from None
    config = parse_config({} if data is None else data, environ=env)
    if environ is None:
        config.apply_environment()
    return config


def parse_config(data: Any, *, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Validate a decoded config (the YAML's top-level mapping).

    Args:
        data: ``{"model_list": [...], "general_settings": {...}}``.
        environ: Where ``os.environ/NAME`` values and ``RXLLM_MASTER_KEY`` are looked up.

    Raises:
        ConfigError: Naming the first invalid entry.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping with 'model_list', got {type(data).__name__}")
    notes: list[str] = []
    for key in data:
        if key in _TOP_LEVEL:
            continue
        if key in _TOP_LEVEL_REFUSED:
            raise ConfigError(f"{key}: {_TOP_LEVEL_REFUSED[key]}")
        notes.append(f"{key}: unknown top-level section, ignored (known: {', '.join(sorted(_TOP_LEVEL))})")
    environment = _environment(data.get("environment_variables"), env)
    if environment:
        env = {**env, **environment}
    settings = _settings(data, notes)
    raw_list = data.get("model_list") or []
    if not isinstance(raw_list, list):
        raise ConfigError("model_list must be a list of {model_name, litellm_params} entries")
    request_timeout = settings.get("timeout")
    deployments = tuple(_deployment(entry, i, env, notes, request_timeout) for i, entry in enumerate(raw_list))
    ids = [d.id for d in deployments]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"model_list: two deployments share model_info.id {dup!r}")

    general = data.get("general_settings") or {}
    if not isinstance(general, Mapping):
        raise ConfigError("general_settings must be a mapping")
    for key in general:
        if key in _GENERAL_REFUSED:
            raise ConfigError(f"general_settings.{key}: {_GENERAL_REFUSED[key]}")
        if key in _GENERAL_IGNORED:
            notes.append(f"general_settings.{key} is ignored: {_GENERAL_IGNORED[key]}")
    unknown = sorted(set(general) - _GENERAL_KEYS - set(_GENERAL_IGNORED))
    if unknown:
        raise ConfigError(
            f"general_settings: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_GENERAL_KEYS))}"
        )
    master_key = _secret(general.get("master_key"), "general_settings.master_key", env)
    if master_key is None:
        master_key = env.get(ENV_MASTER_KEY) or None
    size_mb = _number(general.get("max_request_size_mb", 16), "general_settings.max_request_size_mb")
    parallel = _integer(
        general.get("global_max_parallel_requests", 1000), "general_settings.global_max_parallel_requests"
    )
    grace = _number(general.get("shutdown_grace_period", 10.0), "general_settings.shutdown_grace_period", zero=True)
    cooldown = _number(
        general.get("cooldown_time", settings.get("cooldown_time", 5.0)), "general_settings.cooldown_time", zero=True
    )
    if settings.get("disable_cooldowns"):
        cooldown = 0.0
    keepalive = _number(general.get("keepalive_interval", 15.0), "general_settings.keepalive_interval", zero=True)
    buffer_kb = _number(general.get("stream_buffer_kb", 256), "general_settings.stream_buffer_kb")
    max_n = _integer(general.get("max_n", 16), "general_settings.max_n")
    header_timeout = _number(general.get("header_timeout", 10.0), "general_settings.header_timeout")
    body_timeout = _number(general.get("body_timeout", 30.0), "general_settings.body_timeout")
    backlog = _integer(general.get("listen_backlog", 2048), "general_settings.listen_backlog")
    gc_tuning = _flag(general.get("gc_tuning", True), "general_settings.gc_tuning")
    passthrough = _flag(general.get("stream_passthrough", True), "general_settings.stream_passthrough")
    gc_gen0 = _integer(general.get("gc_gen0_threshold", 50_000), "general_settings.gc_gen0_threshold")
    event_loop = _event_loop(general.get("event_loop", "asyncio"))
    mock_prompt = _integer(general.get("mock_max_prompt_chars", 256 * 1024), "general_settings.mock_max_prompt_chars")
    mock_tokens = _integer(general.get("mock_max_tokens", 32768), "general_settings.mock_max_tokens")
    origins = _origins(general.get("cors_allowed_origins"), "general_settings.cors_allowed_origins")
    store_size = general.get("responses_store_size", 0)
    if store_size != 0:
        store_size = _integer(store_size, "general_settings.responses_store_size")
    allow_mock = general.get("allow_mock_models", True)
    if not isinstance(allow_mock, bool):
        raise ConfigError("general_settings.allow_mock_models must be true or false")
    resumable = general.get("resumable_streams", False)
    if not isinstance(resumable, bool):
        raise ConfigError("general_settings.resumable_streams must be true or false")
    stream_ttl = _number(general.get("resumable_stream_ttl", 3600.0), "general_settings.resumable_stream_ttl")
    stream_maxlen = _integer(general.get("resumable_stream_maxlen", 10_000), "general_settings.resumable_stream_maxlen")
    redis_url, cache_ttl = _router_settings(settings.get("redis") or {}, env)
    metrics = _flag(general.get("metrics", False), "general_settings.metrics") or "prometheus" in settings["callbacks"]
    otel = _flag(general.get("otel", False), "general_settings.otel") or "otel" in settings["callbacks"]
    if metrics and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError("metrics (/metrics) need prometheus-client: pip install 'rxllm[prometheus]'")
    if otel and importlib.util.find_spec("opentelemetry") is None:
        raise ConfigError("otel tracing needs the OpenTelemetry API: pip install 'rxllm[otel]'")
    names = set(d.model_name for d in deployments)
    fallbacks: dict[str, tuple[str, ...]] = settings["fallbacks"]
    for source, targets in [*fallbacks.items(), ("default_fallbacks", settings["default_fallbacks"])]:
        for target in targets:
            if target not in names and not (allow_mock and target.startswith("mock/")):
                raise ConfigError(
                    f"fallbacks: {source!r} falls back to {target!r}, which is not a model_name in model_list"
                )
    return ProxyConfig(
        deployments=deployments,
        master_key=master_key,
        max_request_size=int(size_mb * 1024 * 1024),
        max_parallel_requests=parallel,
        shutdown_grace_period=grace,
        allow_mock_models=allow_mock,
        cooldown_time=cooldown,
        keepalive_interval=keepalive or None,
        stream_buffer_size=max(1024, int(buffer_kb * 1024)),
        num_retries=settings.get("num_retries"),
        fallbacks=fallbacks,
        default_fallbacks=settings["default_fallbacks"],
        routing_strategy=settings.get("routing_strategy", "simple-shuffle"),
        metrics=metrics,
        otel=otel,
        environment=environment,
        warnings=tuple(notes),
        max_n=max_n,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        listen_backlog=backlog,
        gc_tuning=gc_tuning,
        gc_gen0_threshold=gc_gen0,
        event_loop=event_loop,
        stream_passthrough=passthrough,
        mock_max_prompt_chars=mock_prompt,
        mock_max_tokens=mock_tokens,
        cors_allowed_origins=origins,
        responses_store_size=store_size,
        redis_url=redis_url,
        redis_cache_ttl=cache_ttl,
        resumable_streams=resumable,
        resumable_stream_ttl=stream_ttl,
        resumable_stream_maxlen=stream_maxlen,
    )


def _router_settings(raw: Any, env: Mapping[str, str]) -> tuple[str | None, float]:
    """``router_settings``' redis_* keys: the Redis URL (``redis_url``, or LiteLLM's host/port/password)."""
    router = raw
    cache_ttl = _number(router.get("redis_cache_ttl", 0.1), "router_settings.redis_cache_ttl", zero=True)
    url = _secret(router.get("redis_url"), "router_settings.redis_url", env)
    host = _resolve(router.get("redis_host"), "router_settings.redis_host", env)
    if url is not None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("router_settings.redis_url must start with redis://, rediss:// or unix://")
        if host is not None:
            raise ConfigError("router_settings: give redis_url or redis_host/redis_port, not both")
        return url, cache_ttl
    if host is None:
        for name in ("redis_port", "redis_password", "redis_db"):
            if router.get(name) is not None:
                raise ConfigError(f"router_settings.{name} needs router_settings.redis_host")
        return None, cache_ttl
    if not isinstance(host, str) or not host or "/" in host or "@" in host:
        raise ConfigError("router_settings.redis_host must be a host name or address")
    port = _resolve(router.get("redis_port", 6379), "router_settings.redis_port", env)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    port = _integer(port, "router_settings.redis_port")
    db = _resolve(router.get("redis_db", 0), "router_settings.redis_db", env)
    if isinstance(db, str) and db.isdigit():
        db = int(db)
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ConfigError("router_settings.redis_db must be a non-negative integer")
    password = _secret(router.get("redis_password"), "router_settings.redis_password", env)
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}", cache_ttl


def _event_loop(value: Any) -> str:
    """``general_settings.event_loop``: one of :data:`~rxllm.proxy.eventloop.EVENT_LOOPS`, installed."""
    if value not in EVENT_LOOPS:
        raise ConfigError(f"general_settings.event_loop must be one of {', '.join(EVENT_LOOPS)}, got {value!r}")
    if value == "uvloop" and not uvloop_installed():
        raise ConfigError("general_settings.event_loop: uvloop needs uvloop: pip install 'rxllm[uvloop]'")
    return str(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false")
    return value


def _environment(raw: Any, env: Mapping[str, str]) -> dict[str, str]:
    """``environment_variables``: names to values (numbers and booleans become strings)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("environment_variables must be a mapping of variable names to values")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ConfigError(f"environment_variables: {name!r} is not a valid variable name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise ConfigError(f"environment_variables.{name} must be a string (or a number)")
        out[name] = str(_resolve(value, f"environment_variables.{name}", env))
    return out


def _settings(data: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """``litellm_settings`` and ``router_settings`` merged (router_settings wins), validated."""
    merged: dict[str, Any] = {"callbacks": set(), "fallbacks": {}, "default_fallbacks": ()}
    for section in ("litellm_settings", "router_settings"):
        raw = data.get(section) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{section} must be a mapping")
        for key, value in raw.items():
            where = f"{section}.{key}"
            if not isinstance(key, str):
                raise ConfigError(f"{section}: keys must be strings, got {key!r}")
            if key.startswith("redis_"):
                if section != "router_settings" or key not in _REDIS_KEYS:
                    raise ConfigError(
                        f"{where}: not a Redis setting rxllm serve reads; router_settings takes "
                        f"{', '.join(sorted(_REDIS_KEYS))}"
                    )
                merged.setdefault("redis", {})[key] = value
                continue
            if key in _REFUSED_SETTINGS:
                raise ConfigError(f"{where}: {_REFUSED_SETTINGS[key]}")
            if key in _IGNORED_SETTINGS:
                notes.append(f"{where} is ignored: {_IGNORED_SETTINGS[key]}")
                continue
            if key not in _SUPPORTED_SETTINGS:
                notes.append(f"{where} is not a setting rxllm serve knows; ignored")
                continue
            _setting(merged, key, value, where, notes)
    return merged


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of model names")
    return tuple(value)


def _setting(merged: dict[str, Any], key: str, value: Any, where: str, notes: list[str]) -> None:
    if key == "num_retries":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a non-negative integer, got {value!r}")
        merged["num_retries"] = value
    elif key in ("request_timeout", "timeout"):
        merged["timeout"] = _number(value, where)
    elif key == "cooldown_time":
        merged["cooldown_time"] = _number(value, where, zero=True)
    elif key == "disable_cooldowns":
        merged["disable_cooldowns"] = _flag(value, where)
    elif key == "routing_strategy":
        if value in _ROUTING_LITELLM:
            notes.append(
                f"{where}: {value!r} is not supported; rxllm routes to the least busy deployment "
                "not cooling down (ties take turns)"
            )
        elif value not in _ROUTING_SUPPORTED:
            known = sorted(_ROUTING_SUPPORTED | _ROUTING_LITELLM)
            raise ConfigError(f"{where}: unknown routing strategy {value!r}; LiteLLM's are {', '.join(known)}")
        else:
            merged["routing_strategy"] = value
    elif key == "fallbacks":
        # LiteLLM's shape: [{"gpt-4o": ["claude-sonnet", ...]}, ...]
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{where} must be a list of {{model_name: [fallback names]}} mappings")
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ConfigError(f"{where}[{i}] must be a mapping {{model_name: [fallback names]}}")
            for model, targets in item.items():
                merged["fallbacks"][str(model)] = _names(targets, f"{where}[{i}].{model}")
    elif key == "default_fallbacks":
        merged["default_fallbacks"] = _names(value, where)
    elif key in ("callbacks", "success_callback", "failure_callback"):
        for name in _names(value, where):
            if name in _CALLBACKS_SUPPORTED:
                merged["callbacks"].add(name)
            else:
                notes.append(f"{where}: callback {name!r} is not supported (supported: prometheus, otel); ignored")
    # json_logs and turn_off_message_logging: what rxllm does anyway (JSON lines, no message text)


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: lower-case scheme and host, no trailing slash."""
    scheme, sep, rest = origin.strip().rstrip("/").partition("://")
    return f"{scheme.lower()}{sep}{rest.lower()}" if sep else origin.strip().lower()


def _origins(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of origins like 'http://localhost:3000' (or '*')")
    found = []
    for origin in value:
        if origin.strip() == "*":
            found.append("*")
            continue
        normal = normalize_origin(origin)
        scheme, sep, host = normal.partition("://")
        if not sep or scheme not in ("http", "https") or not host or "/" in host:
            raise ConfigError(f"{where}: {origin!r} is not an origin (scheme://host[:port], no path)")
        found.append(normal)
    return tuple(dict.fromkeys(found))


def _deployment(
    entry: Any, i: int, env: Mapping[str, str], notes: list[str], default_timeout: float | None = None
) -> Deployment:
    where = f"model_list[{i}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with model_name and litellm_params")
    name = entry.get("model_name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.model_name is required (a non-empty string)")
    params = entry.get("litellm_params")
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.litellm_params is required (a mapping with at least 'model')")
    where_p = f"{where}.litellm_params"
    model = _resolve(params.get("model"), f"{where_p}.model", env)
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where_p}.model is required: a 'provider/model' string like 'openai/gpt-4o'")
    custom = params.get("custom_llm_provider")
    if custom is not None:
        if not isinstance(custom, str) or not custom:
            raise ConfigError(f"{where_p}.custom_llm_provider must be a provider name like 'openai'")
        if not model.startswith(custom + "/"):
            model = f"{custom}/{model}"
    api_base = _resolve(params.get("api_base", params.get("base_url")), f"{where_p}.api_base", env)
    if api_base is not None and (not isinstance(api_base, str) or not api_base.startswith(("http://", "https://"))):
        raise ConfigError(f"{where_p}.api_base must be an http(s) URL")
    api_key = _secret(params.get("api_key"), f"{where_p}.api_key", env)
    rpm = params.get("rpm")
    rpm = None if rpm is None else _integer(rpm, f"{where_p}.rpm")
    tpm = params.get("tpm")
    tpm = None if tpm is None else _integer(tpm, f"{where_p}.tpm")
    timeout = params.get("timeout")
    timeout = default_timeout if timeout is None else _number(timeout, f"{where_p}.timeout")
    stream_timeout = params.get("stream_timeout")
    stream_timeout = None if stream_timeout is None else _number(stream_timeout, f"{where_p}.stream_timeout")
    think_tags = _think_tags(params.get("split_think_tags"), f"{where_p}.split_think_tags")
    rest: dict[str, Any] = {}
    pricing: dict[str, float] = {}
    for k, v in params.items():
        if k in _TRANSPORT or k == "custom_llm_provider":
            continue
        if k in _PARAMS_IGNORED:
            notes.append(f"{where_p}.{k} is ignored: {_PARAMS_IGNORED[k]}")
            continue
        if k in _PRICE_KEYS:
            pricing[k] = _number(v, f"{where_p}.{k}", zero=True)
            continue
        if k not in _KNOWN_PASSTHROUGH:
            notes.append(f"{where_p}.{k} is not a parameter rxllm knows; it is sent to the provider as given")
        rest[k] = _resolve(v, f"{where_p}.{k}", env)
    if pricing and not {"input_cost_per_token", "output_cost_per_token"} <= set(pricing):
        raise ConfigError(f"{where_p}: give both input_cost_per_token and output_cost_per_token")
    info = entry.get("model_info") or {}
    if not isinstance(info, Mapping):
        raise ConfigError(f"{where}.model_info must be a mapping")
    dep_id = info.get("id", f"{name}#{i}")
    if not isinstance(dep_id, str) or not dep_id:
        raise ConfigError(f"{where}.model_info.id must be a non-empty string")
    return Deployment(
        id=dep_id,
        model_name=name,
        model=model,
        api_base=api_base,
        api_key=api_key,
        rpm=rpm,
        tpm=tpm,
        timeout=timeout,
        stream_timeout=stream_timeout,
        params=rest,
        think_tags=think_tags,
        pricing=pricing or None,
    )


def _think_tags(value: Any, where: str) -> Mapping[str, Any] | None:
    """``split_think_tags`` in litellm_params: false/absent, true, or the operator's keywords."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, Mapping) and set(value) <= _THINK_TAG_KEYS:
        tags = {k: value[k] for k in ("open_tag", "close_tag") if k in value}
        if not all(isinstance(t, str) and t for t in tags.values()):
            raise ConfigError(f"{where}: open_tag and close_tag must be non-empty strings")
        if "implicit_open" in value and not isinstance(value["implicit_open"], bool):
            raise ConfigError(f"{where}.implicit_open must be true or false")
        return dict(value)
    raise ConfigError(f"{where} must be true, false or a mapping of {sorted(_THINK_TAG_KEYS)}")


def _resolve(value: Any, where: str, env: Mapping[str, str]) -> Any:
    """``os.environ/NAME`` becomes the variable's value (unset is an error)."""
    if isinstance(value, str) and value.startswith(_ENV_PREFIX):
        name = value[len(_ENV_PREFIX) :]
        if not name:
            raise ConfigError(f"{where}: 'os.environ/' needs a variable name")
        found = env.get(name)
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found
    return value


def _secret(value: Any, where: str, env: Mapping[str, str]) -> str | None:
    resolved = _resolve(value, where, env)
    if resolved is None or resolved == "":
        return None
    if not isinstance(resolved, str):
        # never echo the value: it may be a key typed without quotes
        raise ConfigError(f"{where} must be a string (or 'os.environ/NAME')")
    return resolved


def _number(value: Any, where: str, *, zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        bound = "a non-negative" if zero else "a positive"
        raise ConfigError(f"{where} must be {bound} number, got {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value
