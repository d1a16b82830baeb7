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
      cors_allowed_origins: []              # web origins whose pages may call the proxy
      resumable_streams: false              # keep streams' events so clients can resume them
      resumable_stream_ttl: 3600            # seconds a stream's events are kept
      resumable_stream_maxlen: 10000        # events kept per stream
    router_settings:                        # state shared by every worker and instance
      redis_url: os.environ/REDIS_URL       # or LiteLLM's redis_host / redis_port / redis_password
      redis_cache_ttl: 0.1                  # seconds the cached shared state is trusted

Every problem is reported as :class:`ConfigError` naming where it is
(``model_list[1].litellm_params.rpm``), so a bad file fails at startup, not at the first
request. Secrets (``api_key``, ``master_key``) never appear in reprs or error messages.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import attrs
import yaml

__all__ = [
    "ENV_MASTER_KEY",
    "ConfigError",
    "Deployment",
    "ProxyConfig",
    "load_config",
    "normalize_origin",
    "parse_config",
]

#: litellm_params names whose values are secrets (never shown, scrubbed from every message).
_SECRET_PARAM: Final = re.compile(r"(key|secret|token|password|passwd|credential)s?$", re.IGNORECASE)

#: The environment variable that sets the master key when the config does not.
ENV_MASTER_KEY: Final = "RXLLM_MASTER_KEY"

_ENV_PREFIX: Final = "os.environ/"

#: litellm_params the proxy interprets itself; everything else is passed to rxllm.stream().
_TRANSPORT: Final = frozenset(
    {"model", "api_base", "base_url", "api_key", "rpm", "tpm", "timeout", "stream_timeout"}
)

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
        "max_n",
        "header_timeout",
        "body_timeout",
        "listen_backlog",
        "mock_max_prompt_chars",
        "mock_max_tokens",
        "resumable_streams",
        "resumable_stream_ttl",
        "resumable_stream_maxlen",
        "cors_allowed_origins",
    }
)

#: router_settings the proxy reads (LiteLLM's Redis spelling, or one URL).
_ROUTER_KEYS: Final = frozenset(
    {"redis_url", "redis_host", "redis_port", "redis_password", "redis_db", "redis_cache_ttl"}
)


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
        timeout: Seconds to connect and to wait for the first chunk.
        stream_timeout: Seconds allowed between chunks once streaming.
        params: The other ``litellm_params`` (``mock_response``, ``temperature``...), passed on
            (its repr hides ``extra_headers`` values and key-like entries).
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
        max_n: The largest ``n`` (choices per request) accepted (more: HTTP 400).
        header_timeout: Seconds a connection may take to send a request's headers before it
            is closed (also the idle limit between requests on a kept-alive connection).
        body_timeout: Seconds a client may take to send a request body (more: HTTP 408).
        listen_backlog: Connections the kernel queues before the proxy accepts them.
        mock_max_prompt_chars: Largest prompt (characters) a mock model accepts.
        mock_max_tokens: Largest ``max_tokens`` (per choice) a mock model accepts.
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
    max_n: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    listen_backlog: int = 2048
    mock_max_prompt_chars: int = 256 * 1024
    mock_max_tokens: int = 32768
    redis_url: str | None = attrs.field(default=None, repr=False)
    redis_cache_ttl: float = 0.1
    resumable_streams: bool = False
    resumable_stream_ttl: float = 3600.0
    resumable_stream_maxlen: int = 10_000
    cors_allowed_origins: tuple[str, ...] = ()

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


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Read and validate a YAML config file (or the defaults when ``path`` is ``None``).

    ``RXLLM_MASTER_KEY`` sets the master key when the file does not.

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
    return parse_config({} if data is None else data, environ=env)


def parse_config(data: Any, *, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Validate a decoded config (the YAML's top-level mapping).

    Args:
        data: ``{"model_list": [...], "general_settings": {...}}``.
        environ: Where ``os.environ/NAME`` values and ``RXLLM_MASTER_KEY`` are looked up.

    Raises:
        ConfigError: Naming the first invalid entry.
    """
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping with 'model_list', got {type(data).__name__}")
    raw_list = data.get("model_list") or []
    if not isinstance(raw_list, list):
        raise ConfigError("model_list must be a list of {model_name, litellm_params} entries")
    deployments = tuple(_deployment(entry, i, env) for i, entry in enumerate(raw_list))
    ids = [d.id for d in deployments]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"model_list: two deployments share model_info.id {dup!r}")

    general = data.get("general_settings") or {}
    if not isinstance(general, Mapping):
        raise ConfigError("general_settings must be a mapping")
    unknown = sorted(set(general) - _GENERAL_KEYS)
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
    cooldown = _number(general.get("cooldown_time", 5.0), "general_settings.cooldown_time", zero=True)
    keepalive = _number(general.get("keepalive_interval", 15.0), "general_settings.keepalive_interval", zero=True)
    buffer_kb = _number(general.get("stream_buffer_kb", 256), "general_settings.stream_buffer_kb")
    max_n = _integer(general.get("max_n", 16), "general_settings.max_n")
    header_timeout = _number(general.get("header_timeout", 10.0), "general_settings.header_timeout")
    body_timeout = _number(general.get("body_timeout", 30.0), "general_settings.body_timeout")
    backlog = _integer(general.get("listen_backlog", 2048), "general_settings.listen_backlog")
    mock_prompt = _integer(general.get("mock_max_prompt_chars", 256 * 1024), "general_settings.mock_max_prompt_chars")
    mock_tokens = _integer(general.get("mock_max_tokens", 32768), "general_settings.mock_max_tokens")
    origins = _origins(general.get("cors_allowed_origins"), "general_settings.cors_allowed_origins")
    allow_mock = general.get("allow_mock_models", True)
    if not isinstance(allow_mock, bool):
        raise ConfigError("general_settings.allow_mock_models must be true or false")
    resumable = general.get("resumable_streams", False)
    if not isinstance(resumable, bool):
        raise ConfigError("general_settings.resumable_streams must be true or false")
    stream_ttl = _number(general.get("resumable_stream_ttl", 3600.0), "general_settings.resumable_stream_ttl")
    stream_maxlen = _integer(general.get("resumable_stream_maxlen", 10_000), "general_settings.resumable_stream_maxlen")
    redis_url, cache_ttl = _router_settings(data.get("router_settings"), env)
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
        max_n=max_n,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        listen_backlog=backlog,
        mock_max_prompt_chars=mock_prompt,
        mock_max_tokens=mock_tokens,
        cors_allowed_origins=origins,
        redis_url=redis_url,
        redis_cache_ttl=cache_ttl,
        resumable_streams=resumable,
        resumable_stream_ttl=stream_ttl,
        resumable_stream_maxlen=stream_maxlen,
    )


def _router_settings(raw: Any, env: Mapping[str, str]) -> tuple[str | None, float]:
    """``router_settings``: the Redis URL (from ``redis_url`` or LiteLLM's host/port/password)."""
    router = raw or {}
    if not isinstance(router, Mapping):
        raise ConfigError("router_settings must be a mapping")
    unknown = sorted(set(router) - _ROUTER_KEYS)
    if unknown:
        raise ConfigError(
            f"router_settings: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_ROUTER_KEYS))}"
        )
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


def _deployment(entry: Any, i: int, env: Mapping[str, str]) -> Deployment:
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
    api_base = _resolve(params.get("api_base", params.get("base_url")), f"{where_p}.api_base", env)
    if api_base is not None and (not isinstance(api_base, str) or not api_base.startswith(("http://", "https://"))):
        raise ConfigError(f"{where_p}.api_base must be an http(s) URL")
    api_key = _secret(params.get("api_key"), f"{where_p}.api_key", env)
    rpm = params.get("rpm")
    rpm = None if rpm is None else _integer(rpm, f"{where_p}.rpm")
    tpm = params.get("tpm")
    tpm = None if tpm is None else _integer(tpm, f"{where_p}.tpm")
    timeout = params.get("timeout")
    timeout = None if timeout is None else _number(timeout, f"{where_p}.timeout")
    stream_timeout = params.get("stream_timeout")
    stream_timeout = None if stream_timeout is None else _number(stream_timeout, f"{where_p}.stream_timeout")
    rest = {k: _resolve(v, f"{where_p}.{k}", env) for k, v in params.items() if k not in _TRANSPORT}
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
    )


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
