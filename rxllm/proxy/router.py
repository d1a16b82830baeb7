"""Choosing deployments: load balancing, per-deployment rpm limits, failover order.

Every request gets a *plan*: the deployments of its model name in the order to try them.
The first is the least busy deployment that is under its rpm limit and not cooling down
after a failure (ties rotate, so equal deployments take turns); the rest follow in the same
order and are tried only when an attempt fails before its first chunk. Bookkeeping is a few
integers and a deque of timestamps per deployment: O(deployments) per request, nothing per
chunk. Where it lives is a :class:`~rxllm.proxy.shared_state.RouterState`: this process's
memory by default (**per worker**), or Redis (``router_settings.redis_url``), shared by every
worker and instance.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rxllm.proxy.config import Deployment, ProxyConfig
from rxllm.proxy.errors import ProxyError
from rxllm.proxy.shared_state import WINDOW, LocalState, RouterState

__all__ = ["DeploymentState", "Lease", "Router"]

_WINDOW = WINDOW


class DeploymentState:
    """One deployment plus its live counters (requests in flight, recent starts, last failure)."""

    __slots__ = ("deployment", "failed_at", "in_flight", "position", "starts", "tokens")

    def __init__(self, deployment: Deployment, position: int) -> None:
        self.deployment = deployment
        self.position = position
        self.in_flight = 0
        self.starts: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()
        self.failed_at: float | None = None

    def __repr__(self) -> str:
        return f"DeploymentState(id={self.deployment.id!r}, in_flight={self.in_flight})"

    def rpm_used(self, now: float) -> int:
        """Requests started in the last minute."""
        starts = self.starts
        while starts and now - starts[0] >= _WINDOW:
            starts.popleft()
        return len(starts)

    def has_capacity(self, now: float) -> bool:
        """Whether one more request fits under the rpm limit."""
        rpm = self.deployment.rpm
        return rpm is None or self.rpm_used(now) < rpm


class Lease:
    """One attempt's claim on a deployment: released exactly once, whatever happens.

    :meth:`Router.acquire` counts the attempt (in flight, rpm); :meth:`release` undoes the
    in-flight count and records the outcome. Releasing twice is a no-op, so every exit path
    (success, failure, timeout, cancellation, a client leaving) may call it safely.
    """

    __slots__ = ("_router", "released", "state")

    def __init__(self, router: Router, state: DeploymentState) -> None:
        self._router = router
        self.state = state
        self.released = False

    def __repr__(self) -> str:
        return f"Lease({self.state.deployment.id!r}, released={self.released})"

    @property
    def deployment(self) -> Deployment:
        """The deployment this attempt runs on."""
        return self.state.deployment

    def release(self, *, failed: bool) -> None:
        """End the attempt (idempotent); ``failed`` puts the deployment in cooldown."""
        if self.released:
            return
        self.released = True
        self._router.finish(self.state, failed=failed)


class Router:
    """Deployments per public model name, and the order to try them in.

    Args:
        config: The proxy config (deployments, ``allow_mock_models``, ``cooldown_time``).
        clock: Monotonic seconds (tests pass a fake one).
        state: Where the counters live (default: :class:`~rxllm.proxy.shared_state.LocalState`,
            this process's memory).
    """

    def __init__(
        self, config: ProxyConfig, *, clock: Callable[[], float] = time.monotonic, state: RouterState | None = None
    ) -> None:
        self._clock = clock
        #: The bookkeeping's home (in-process, or shared through Redis).
        self.shared: RouterState = state if state is not None else LocalState(clock)
        self._cooldown = config.cooldown_time
        self._allow_mock = config.allow_mock_models
        self._groups: dict[str, list[DeploymentState]] = {}
        self._turn: dict[str, int] = {}
        #: Called with a deployment each time a failure puts it in cooldown (metrics).
        self.cooldown_hooks: list[Callable[[Deployment], object]] = []
        for deployment in config.deployments:
            group = self._groups.setdefault(deployment.model_name, [])
            group.append(DeploymentState(deployment, len(group)))

    @property
    def model_names(self) -> list[str]:
        """The configured public model names, in config order (ad-hoc mock models excluded)."""
        return list(self._groups)

    def plan(self, model: str) -> list[DeploymentState]:
        """The deployments to try for ``model``, best first.

        Raises:
            ProxyError: 404 for an unknown model (listing the configured ones); 429 when every
                deployment is at its rpm limit.
        """
        group = self._groups.get(model)
        if group is None:
            return self._adhoc_mock(model)
        now = self._clock()
        turn = self._turn.get(model, 0)
        self._turn[model] = turn + 1
        n = len(group)
        cooldown = self._cooldown
        shared = self.shared
        waits = [shared.wait(s, now) for s in group]
        ready = [s for s, w in zip(group, waits, strict=True) if w is None]
        if not ready:
            wait = min(w for w in waits if w is not None)
            raise ProxyError(
                f"every deployment of {model!r} is at its requests-per-minute limit; retry later",
                status_code=429,
                code="rate_limit_exceeded",
                retry_after=max(1.0, round(wait, 1)),
            )

        if len(ready) == 1:
            return ready  # nothing to order (most model names have one deployment)

        def key(s: DeploymentState) -> tuple[bool, int, int]:
            return (shared.cooling(s, now, cooldown), shared.in_flight(s), (s.position - turn) % n)

        ready.sort(key=key)
        return ready

    def _adhoc_mock(self, model: str) -> list[DeploymentState]:
        if self._allow_mock and model.startswith("mock/") and len(model) > 5:
            # not stored: clients choose these names, so keeping them would let them grow memory
            return [DeploymentState(Deployment(id=model, model_name=model, model=model), 0)]
        names = self.model_names
        known = ", ".join(names) if names else "none configured"
        hint = " (or a mock/* model such as mock/echo)" if self._allow_mock else ""
        raise ProxyError(
            f"the model {model!r} does not exist on this proxy; available models: {known}{hint}",
            status_code=404,
            param="model",
            code="model_not_found",
        )

    async def aplan(self, model: str) -> list[DeploymentState]:
        """:meth:`plan`, after refreshing the shared state's cached view (when it is stale).

        Raises:
            ProxyError: As :meth:`plan`.
        """
        group = self._groups.get(model)
        if group is not None:
            await self.shared.refresh(group)
        return self.plan(model)

    def start(self, state: DeploymentState) -> bool:
        """Count an attempt on ``state`` in this process; ``False`` (nothing counted) if at its limits."""
        return self.shared.start_now(state)

    async def lease(self, state: DeploymentState) -> Lease | None:
        """Count an attempt (atomically across instances when shared) as a :class:`Lease`.

        Returns ``None`` (nothing counted) when the deployment is at its rpm/tpm limit.
        """
        return Lease(self, state) if await self.shared.start(state) else None

    def add_tokens(self, state: DeploymentState, tokens: int) -> None:
        """Count an attempt's tokens (prompt + completion) against its deployment's tpm window."""
        self.shared.add_tokens(state, tokens)

    def groups(self) -> list[DeploymentState]:
        """Every configured deployment's state."""
        return [s for group in self._groups.values() for s in group]

    def acquire(self, state: DeploymentState) -> Lease | None:
        """:meth:`start` as a :class:`Lease` to release once; ``None`` if at the rpm limit."""
        return Lease(self, state) if self.start(state) else None

    def in_flight(self) -> dict[str, int]:
        """Attempts in flight per configured deployment id (leak checks, metrics)."""
        return {s.deployment.id: s.in_flight for group in self._groups.values() for s in group}

    def finish(self, state: DeploymentState, *, failed: bool) -> None:
        """An attempt on ``state`` ended; a failure puts it in cooldown."""
        self.shared.finish(state, failed=failed)
        if failed and self._cooldown > 0:
            for hook in self.cooldown_hooks:
                hook(state.deployment)
