"""rxllm's streaming proxy (``rxllm serve``): every dialect, any provider.

Build the app with :func:`create_app` from a :class:`ProxyConfig` (:func:`load_config` reads
LiteLLM's ``config.yaml`` shape) and run it with :func:`serve` or any aiohttp runner. Wire
protocols are :class:`Dialect` values (see :mod:`rxllm.proxy.dialect`), one module each in
:mod:`rxllm.proxy.dialects`, over one shared exchange core (:mod:`rxllm.proxy.exchange`).
"""

from __future__ import annotations

from rxllm.proxy.app import PROXY_STATE, ProxyState, create_app, make_runner, serve
from rxllm.proxy.auth import KeyChecker, is_loopback
from rxllm.proxy.config import ENV_MASTER_KEY, ConfigError, Deployment, ProxyConfig, load_config, parse_config
from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo, StreamEncoder
from rxllm.proxy.errors import ProxyError
from rxllm.proxy.exchange import OUTCOME, Outcome
from rxllm.proxy.router import Router

__all__ = [
    "ENV_MASTER_KEY",
    "OUTCOME",
    "PROXY_STATE",
    "Call",
    "ConfigError",
    "Context",
    "Deployment",
    "Dialect",
    "ErrorInfo",
    "KeyChecker",
    "Outcome",
    "ProxyConfig",
    "ProxyError",
    "ProxyState",
    "Router",
    "StreamEncoder",
    "create_app",
    "is_loopback",
    "load_config",
    "make_runner",
    "parse_config",
    "serve",
]
