"""rxllm's OpenAI-compatible streaming proxy (``rxllm serve``).

Build the app with :func:`create_app` from a :class:`ProxyConfig` (:func:`load_config` reads
LiteLLM's ``config.yaml`` shape) and run it with :func:`serve` or any aiohttp runner.
"""

from __future__ import annotations

from rxllm.proxy.app import PROXY_STATE, ProxyState, create_app, serve
from rxllm.proxy.auth import KeyChecker, is_loopback
from rxllm.proxy.config import ENV_MASTER_KEY, ConfigError, Deployment, ProxyConfig, load_config, parse_config
from rxllm.proxy.errors import ProxyError
from rxllm.proxy.router import Router

__all__ = [
    "ENV_MASTER_KEY",
    "PROXY_STATE",
    "ConfigError",
    "Deployment",
    "KeyChecker",
    "ProxyConfig",
    "ProxyError",
    "ProxyState",
    "Router",
    "create_app",
    "is_loopback",
    "load_config",
    "parse_config",
    "serve",
]
