"""Router state shared through a real Redis by two proxy instances: exact limits, shared cooldowns, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis_support import RedisServer
from structlog.testing import capture_logs

from rxllm.proxy import PROXY_STATE, ConfigError, parse_config
from rxllm.proxy.shared_state import LocalState, RedisState
from tests.proxy.proxy_support import USER, ProxyServer, mock_entry, running

pytestmark = pytest.mark.usefixtures("redis_url")


def shared_config(redis_url: str, *entries: dict[str, Any], **general: Any) -> Any:
    """A config whose router state lives in the test Redis (cache always stale: plans read it)."""
    return parse_config(
        {
            "model_list": list(entries),
            "general_settings": general,
            "router_settings": {"redis_url": redis_url, "redis_cache_ttl": 0},
        },
        environ={},
    )


@contextlib.asynccontextmanager
async def instances(cfg: Any, count: int = 2) -> AsyncIterator[list[ProxyServer]]:
    """``count`` proxy instances (separate apps, separate router states) on one Redis."""
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(running(cfg)) for _ in range(count)]
        for server in servers:
            state = server.app[PROXY_STATE].router.shared
            assert isinstance(state, RedisState)
            state._heartbeat = 0.05  # recovery probes come quickly in these tests
        yield servers


def shared(server: ProxyServer) -> RedisState:
    state = server.app[PROXY_STATE].router.shared
    assert isinstance(state, RedisState)
    return state


async def post(session: aiohttp.ClientSession, server: ProxyServer, model: str = "m", **body: Any) -> int:
    async with session.post(
        server.make_url("/v1/chat/completions"), json={"model": model, "messages": USER, **body}
    ) as response:
        await response.read()
        return response.status


async def totals(state: RedisState) -> tuple[dict[str, int], int]:
    """In-flight counts per deployment and the global slot count, summed over instances in Redis."""
    client = state._clients.get()
    per_deployment: dict[str, int] = {}
    global_slots = 0
    for member in await client.smembers(state._instances):
        values = await client.hgetall(f"{state._prefix}inst:{member.decode()}")
        for field, value in values.items():
            name = field.decode()
            if name == "g":
                global_slots += int(value)
            else:
                per_deployment[name[2:]] = per_deployment.get(name[2:], 0) + int(value)
    return per_deployment, global_slots


class TestConfig:
    def test_litellm_host_port_password_spelling_builds_a_url(self) -> None:
        """redis_host/redis_port/redis_password become one URL; the password is a secret."""
        cfg = parse_config(
            {"router_settings": {"redis_host": "10.0.0.5", "redis_port": "6380", "redis_password": "os.environ/PW"}},
            environ={"PW": "p@ss/word"},
        )

        assert cfg.redis_url == "redis://:p%40ss%2Fword@10.0.0.5:6380/0"
        assert "p@ss/word" in cfg.secrets() and "p%40ss" not in repr(cfg)

    def test_bad_router_settings_name_the_setting(self) -> None:
        """Unknown redis_* keys, a URL without a scheme, or a port without a host fail at load."""
        with pytest.raises(ConfigError, match="redis_sentinel"):
            parse_config({"router_settings": {"redis_sentinel": "x"}}, environ={})
        with pytest.raises(ConfigError, match="redis_url must start"):
            parse_config({"router_settings": {"redis_url": "localhost:6379"}}, environ={})
        with pytest.raises(ConfigError, match="redis_port needs"):
            parse_config({"router_settings": {"redis_port": 6379}}, environ={})

    def test_without_redis_the_state_is_per_worker(self) -> None:
        """No router_settings: the in-process state of before, documented as per worker."""
        from rxllm.proxy.app import router_state

        state = router_state(parse_config({}, environ={}))

        assert isinstance(state, LocalState) and state.per_worker


class TestAcrossInstances:
    async def test_rpm_limit_admits_exactly_l_across_two_instances(self, redis_url: str) -> None:
        """rpm: 5 on one deployment: 12 concurrent requests spread over A and B, exactly 5 served."""
        cfg = shared_config(redis_url, mock_entry("m", rpm=5, mock_response="ok"))
        async with instances(cfg) as (a, b), aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(*(post(session, (a, b)[i % 2]) for i in range(12)))

        assert sorted(statuses) == [200] * 5 + [429] * 7

    async def test_global_concurrency_limit_holds_across_instances(self, redis_url: str) -> None:
        """global_max_parallel_requests: 1 with a slot held on A: B refuses with 429, then serves."""
        cfg = shared_config(redis_url, mock_entry("m", mock_response="ok"), global_max_parallel_requests=1)
        async with instances(cfg) as (a, b), aiohttp.ClientSession() as session:
            assert await shared(a).enter(1)
            refused = await post(session, b)
            shared(a).leave()
            await shared(a).flush()
            served = await post(session, b)

        assert (refused, served) == (429, 200)

    async def test_cooldown_after_a_failure_on_one_instance_is_seen_by_the_other(self, redis_url: str) -> None:
        """A deployment that failed on A is tried last by B's plan (until its cooldown ends)."""
        cfg = shared_config(
            redis_url,
            {**mock_entry("m", mock_response="rxllm.InternalServerError"), "model_info": {"id": "bad"}},
            {**mock_entry("m", mock_response="fine"), "model_info": {"id": "good"}},
            cooldown_time=30,
        )
        async with instances(cfg) as (a, b), aiohttp.ClientSession() as session:
            statuses = [await post(session, a) for _ in range(2)]  # one of them tries "bad" first
            await shared(a).flush()
            plans = [[s.deployment.id for s in await b.app[PROXY_STATE].router.aplan("m")] for _ in range(4)]
            b_local = {s.deployment.id: s.failed_at for s in b.app[PROXY_STATE].router.groups()}

        assert statuses == [200, 200]
        assert all(plan == ["good", "bad"] for plan in plans)
        assert b_local["bad"] is None  # B never saw it fail itself: it learnt it from Redis

    async def test_no_in_flight_count_leaks_after_cancellations_and_failures(self, redis_url: str) -> None:
        """Streams cut off by their clients, failures and successes on both instances leave every count at 0."""
        cfg = shared_config(
            redis_url,
            {**mock_entry("m", mock_response="a b c d e f g h", mock_delay=0.05), "model_info": {"id": "slow"}},
            {**mock_entry("bad", mock_response="rxllm.RateLimitError"), "model_info": {"id": "bad"}},
        )
        async with instances(cfg) as (a, b), aiohttp.ClientSession() as session:

            async def cut_off(server: ProxyServer) -> None:
                async with session.post(
                    server.make_url("/v1/chat/completions"), json={"model": "m", "messages": USER, "stream": True}
                ) as response:
                    await response.content.readline()  # the first event, then leave

            await asyncio.gather(*(cut_off(s) for s in (a, b, a, b)))
            failures = await asyncio.gather(*(post(session, s, model="bad") for s in (a, b)))
            served = await post(session, b, model="m")
            for server in (a, b):
                state = server.app[PROXY_STATE]
                async with asyncio.timeout(10):  # hang guard: cancelled streams end at the watchdog
                    while state.active or state.in_flight:
                        await asyncio.sleep(0.01)
                await shared(server).flush()
            per_deployment, global_slots = await totals(shared(a))
            local = [s.app[PROXY_STATE].router.in_flight() for s in (a, b)]

        assert failures == [429, 429] and served == 200
        assert set(per_deployment.values()) <= {0} and global_slots == 0
        assert all(set(counts.values()) == {0} for counts in local)


class TestRedisLost:
    async def test_requests_keep_succeeding_while_redis_is_down_and_state_converges(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """Redis killed mid-run: every request still succeeds (per-worker limits, one warning); after a
        restart both instances recover by themselves and the limits are exact again."""
        cfg = shared_config(redis_url, mock_entry("m", rpm=1000, mock_response="ok"), mock_entry("free"))
        with capture_logs() as logs:
            async with instances(cfg) as (a, b), aiohttp.ClientSession() as session:
                before = await asyncio.gather(*(post(session, s) for s in (a, b, a, b)))
                redis_server.kill()
                during = await asyncio.gather(*(post(session, s, model=m) for s in (a, b) for m in ("m", "free")))
                down = [not shared(s).healthy for s in (a, b)]
                redis_server.start()
                async with asyncio.timeout(10):  # hang guard: the heartbeat probes every 0.05 s
                    while not all(shared(s).healthy for s in (a, b)):
                        await asyncio.sleep(0.01)
                after = await asyncio.gather(*(post(session, s) for s in (a, b, a, b)))
                for server in (a, b):
                    await shared(server).flush()
                    future = shared(server).sync()
                    assert future is not None
                    await future
                per_deployment, global_slots = await totals(shared(a))
                client = shared(a)._clients.get()
                window = await client.zcard("rxllm:router:rpm:m#0")

        assert before == [200] * 4 and during == [200] * 4 and after == [200] * 4
        assert down == [True, True]
        assert set(per_deployment.values()) <= {0} and global_slots == 0
        assert window == 4  # the window after the restart counts exactly the requests since
        events = [e["event"] for e in logs]
        assert events.count("rxllm.proxy.shared_state_unavailable") == 2
        assert events.count("rxllm.proxy.shared_state_recovered") == 2
        warning = next(e for e in logs if e["event"] == "rxllm.proxy.shared_state_unavailable")
        assert warning["log_level"] == "warning" and "per worker" in warning["fallback"]

    async def test_unreachable_at_start_serves_with_local_state(self) -> None:
        """A Redis nobody runs: the proxy starts, serves, and says once that limits are per worker."""
        from redis_support import free_port

        cfg = parse_config(
            {
                "model_list": [mock_entry("m", rpm=2, mock_response="ok")],
                "router_settings": {"redis_url": f"redis://:pw-secret@127.0.0.1:{free_port()}/0"},
            },
            environ={},
        )
        with capture_logs() as logs:
            async with running(cfg) as server, aiohttp.ClientSession() as session:
                statuses = [await post(session, server) for _ in range(3)]

        assert statuses == [200, 200, 429]  # the local window still limits this worker
        warnings = [e for e in logs if e["event"] == "rxllm.proxy.shared_state_unavailable"]
        assert len(warnings) == 1 and "pw-secret" not in repr(logs)
