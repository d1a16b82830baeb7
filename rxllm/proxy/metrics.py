"""Prometheus metrics for ``rxllm serve``: ``GET /metrics``, fed from each request's outcome.

Enabled by ``general_settings.metrics: true`` or ``litellm_settings.callbacks: ["prometheus"]``
(LiteLLM's switch); needs ``pip install "rxllm[prometheus]"`` (``prometheus-client``, imported
only when metrics are on). Every metric lives in the app's own registry, so two apps in one
process (tests, embedding) never collide. Recording happens once per request, from the
:class:`~rxllm.proxy.exchange.Outcome` the exchange fills in, and once per cooldown, from the
router: nothing runs per chunk.

Metrics (all prefixed ``rxllm_proxy_``):

========================================  =========  ===============================================
name                                      type       labels
========================================  =========  ===============================================
``requests_total``                        counter    dialect, model, deployment, status, outcome
``errors_total``                          counter    dialect, model, error_type
``in_flight_requests``                    gauge      (requests being served now; streams included)
``in_flight_streams``                     gauge      (streaming requests being served now)
``time_to_first_chunk_seconds``           histogram  dialect, model
``request_duration_seconds``              histogram  dialect, model, outcome
``tokens_total``                          counter    model, deployment, type (prompt / completion)
``cost_usd_total``                        counter    model, deployment
``upstream_attempts_total``               counter    model, deployment
``upstream_retries_total``                counter    model (an attempt on a deployment tried before)
``upstream_failovers_total``              counter    model (an attempt on another deployment)
``deployment_cooldowns_total``            counter    deployment
========================================  =========  ===============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from rxllm._log import get_logger

if TYPE_CHECKING:
    from rxllm.proxy.config import Deployment
    from rxllm.proxy.exchange import Outcome, ProxyState

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "ProxyMetrics", "install_metrics"]

_log = get_logger("rxllm.proxy")

#: Seconds: from a fast first token to a long reasoning stream.
LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_METRICS_KEY: Final = web.AppKey("rxllm.proxy.metrics", object)


class ProxyMetrics:
    """The proxy's Prometheus metrics in a registry of their own.

    Args:
        state: The app's state (read at scrape time for the in-flight gauges).
        registry: A ``prometheus_client.CollectorRegistry`` (default: a new one).

    Raises:
        ImportError: ``prometheus-client`` is not installed.
    """

    def __init__(self, state: ProxyState | None = None, registry: Any = None) -> None:
        try:
            import prometheus_client as prom
        except ImportError:  # pragma: no cover - the config refuses metrics without it
            raise ImportError("/metrics needs prometheus-client: pip install 'rxllm[prometheus]'") from None
        self._prom = prom
        self.registry = registry if registry is not None else prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter(
            "rxllm_proxy_requests",
            "Requests served, by dialect, model, deployment, HTTP status and outcome.",
            ["dialect", "model", "deployment", "status", "outcome"],
            registry=r,
        )
        self.errors = prom.Counter(
            "rxllm_proxy_errors",
            "Requests that ended with an error, by type.",
            ["dialect", "model", "error_type"],
            registry=r,
        )
        self.in_flight = prom.Gauge("rxllm_proxy_in_flight_requests", "Requests being served now.", registry=r)
        self.in_flight_streams = prom.Gauge(
            "rxllm_proxy_in_flight_streams", "Streaming requests being served now.", registry=r
        )
        if state is not None:
            self.in_flight.set_function(lambda: state.in_flight)
            self.in_flight_streams.set_function(lambda: sum(1 for e in state.active if e.context.call.stream))
        self.ttft = prom.Histogram(
            "rxllm_proxy_time_to_first_chunk_seconds",
            "Seconds from a request's arrival to its first upstream chunk.",
            ["dialect", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = prom.Histogram(
            "rxllm_proxy_request_duration_seconds",
            "Seconds from a request's arrival to its end.",
            ["dialect", "model", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = prom.Counter(
            "rxllm_proxy_tokens", "Tokens, by model, deployment and type.", ["model", "deployment", "type"], registry=r
        )
        self.cost = prom.Counter(
            "rxllm_proxy_cost_usd", "Cost in USD of the served answers.", ["model", "deployment"], registry=r
        )
        self.attempts = prom.Counter(
            "rxllm_proxy_upstream_attempts", "Upstream attempts, by deployment.", ["model", "deployment"], registry=r
        )
        self.retries = prom.Counter(
            "rxllm_proxy_upstream_retries",
            "Attempts on a deployment already tried for the request.",
            ["model"],
            registry=r,
        )
        self.failovers = prom.Counter(
            "rxllm_proxy_upstream_failovers",
            "Attempts moved to another deployment after a failure before the first chunk.",
            ["model"],
            registry=r,
        )
        self.cooldowns = prom.Counter(
            "rxllm_proxy_deployment_cooldowns",
            "Times a failure put a deployment in cooldown.",
            ["deployment"],
            registry=r,
        )

    def record(self, outcome: Outcome) -> None:
        """Count one finished request (an ``outcome_hooks`` callable)."""
        dialect = outcome.dialect or "none"
        model = outcome.model or ""
        deployment = outcome.deployment or ""
        result = outcome.result
        self.requests.labels(dialect, model, deployment, str(outcome.status), result).inc()
        if outcome.model is None:
            return  # health checks, /v1/models, requests refused before routing
        if outcome.error is not None and result == "error":
            self.errors.labels(dialect, model, type(outcome.error).__name__).inc()
        if outcome.ttft is not None:
            self.ttft.labels(dialect, model).observe(outcome.ttft)
        if outcome.duration is not None:
            self.duration.labels(dialect, model, result).observe(outcome.duration)
        report = outcome.report
        if report is not None:
            self.tokens.labels(model, deployment, "prompt").inc(report.prompt_tokens)
            self.tokens.labels(model, deployment, "completion").inc(report.completion_tokens)
            if report.cost is not None:
                self.cost.labels(model, deployment).inc(report.cost)
        previous: str | None = None
        seen: set[str] = set()
        for tried in outcome.tried:
            self.attempts.labels(model, tried).inc()
            if previous is not None:
                if tried in seen:
                    self.retries.labels(model).inc()
                else:
                    self.failovers.labels(model).inc()
            seen.add(tried)
            previous = tried

    def cooled_down(self, deployment: Deployment) -> None:
        """Count a cooldown (a router ``cooldown_hooks`` callable)."""
        self.cooldowns.labels(deployment.id).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return bytes(self._prom.generate_latest(self.registry))


def install_metrics(app: web.Application, state: ProxyState) -> ProxyMetrics:
    """Create the metrics, feed them from ``state``'s outcomes and cooldowns, and serve ``GET /metrics``.

    Returns:
        The :class:`ProxyMetrics`.
    """
    metrics = ProxyMetrics(state)
    state.outcome_hooks.append(metrics.record)
    state.router.cooldown_hooks.append(metrics.cooled_down)
    app[_METRICS_KEY] = metrics

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", serve_metrics)
    return metrics
