"""The budget counters, in memory and in the real Redis on 127.0.0.1:6379, both strategies:
every budget of a request is checked and counted in one step, a refused request counts against
none, and an unreachable Redis is ``StorageUnavailable`` within the timeout. Redis' side: many
concurrent requests share one connection per event loop and count exactly; a private
``redis-server`` restarts and forgets its script (``NOSCRIPT``), and the counters recover."""

from __future__ import annotations

import asyncio
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from ml_platform.governance.ratelimit_windows import (
    Budget,
    MemoryWindows,
    Outcome,
    RedisWindows,
    StorageUnavailable,
)
from tests.ports import free_port
from tests.store.test_redis_wire import PrivateRedis, private_redis

__all__ = ["private_redis"]  # the fixture, shared with the wire tests

REDIS_URL = "redis://127.0.0.1:6379/0"


def budgets(prefix: str, credential: str) -> list[Budget]:
    return [Budget(f"{prefix}:cred:{credential}", 2, 60), Budget(f"{prefix}:tenant", 3, 60)]


@pytest.mark.parametrize("moving", [True, False], ids=["moving-window", "fixed-window"])
@pytest.mark.parametrize("where", ["memory", "redis"])
def test_one_hit_checks_and_counts_every_budget_and_a_refusal_counts_nowhere(
    where: str, moving: bool
) -> None:
    prefix = f"mlp-test-windows-{secrets.token_hex(6)}"
    windows = (
        MemoryWindows(moving)
        if where == "memory"
        else RedisWindows(REDIS_URL, moving=moving, timeout=0.5)
    )

    async def run() -> list[tuple[bool, int, int]]:
        seen = []
        for credential in ("a", "a", "a", "b", "b", "c"):
            outcome = await windows.hit(budgets(prefix, credential))
            assert 0 < outcome.reset_seconds <= 60
            seen.append((outcome.allowed, outcome.index, outcome.remaining))
        await windows.aclose()
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert seen == [
        (True, 0, 1),  # credential a: 1 of 2 left, tenant 2 of 3: the tighter is reported
        (True, 0, 0),
        (False, 0, 0),  # a's budget refuses; the tenant is not charged
        (True, 1, 0),  # b takes the tenant's last one
        (False, 1, 0),  # the tenant refuses; b's own budget is not charged either
        (False, 1, 0),
    ]


def test_an_unreachable_redis_is_storage_unavailable_within_the_timeout() -> None:
    port = free_port()  # nothing listens there
    windows = RedisWindows(f"redis://127.0.0.1:{port}/0", moving=True, timeout=0.2)

    async def run() -> None:
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(windows.hit(budgets("x", "a")), timeout=2)

    asyncio.run(run())


def named_clients(name: str) -> int:
    """How many connections the shared Redis has open under the client name ``name``."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sum(1 for c in client.client_list() if c.get("name") == name)
    finally:
        client.close()


def forget(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_500_concurrent_hits_on_one_loop_count_exactly_on_one_connection() -> None:
    prefix = f"mlp-test-windows-{secrets.token_hex(6)}"
    name = f"mlp-test-{secrets.token_hex(4)}"
    windows = RedisWindows(f"{REDIS_URL}?client_name={name}", moving=True, timeout=2)
    seen: list[int] = []

    async def run() -> list[Outcome]:
        outcomes = await asyncio.gather(
            *(windows.hit([Budget(f"{prefix}:tenant", 300, 60)]) for _ in range(500))
        )
        seen.append(named_clients(name))
        await windows.aclose()
        seen.append(named_clients(name))
        return outcomes

    try:
        outcomes = asyncio.run(run())
    finally:
        forget(prefix)
    assert sum(o.allowed for o in outcomes) == 300
    assert sorted(o.remaining for o in outcomes if o.allowed) == list(range(300))
    assert seen == [1, 0]  # one connection while in use, none after aclose


def test_every_event_loop_gets_its_own_connection_and_one_budget() -> None:
    """Serving workers run their own loops: one after the other (a closed loop's connection is
    never reused) and at once in two threads, the budget is counted exactly."""
    prefix = f"mlp-test-windows-{secrets.token_hex(6)}"
    windows = RedisWindows(REDIS_URL, moving=False, timeout=2)
    budget = [Budget(f"{prefix}:tenant", 150, 60)]

    async def hits(count: int) -> int:
        outcomes = await asyncio.gather(*(windows.hit(budget) for _ in range(count)))
        return sum(o.allowed for o in outcomes)

    try:
        admitted = [asyncio.run(hits(10)), asyncio.run(hits(10))]  # no aclose in between
        with ThreadPoolExecutor(2) as pool:
            admitted += pool.map(lambda _: asyncio.run(hits(100)), range(2))
        asyncio.run(windows.aclose())
    finally:
        forget(prefix)
    assert admitted[:2] == [10, 10]
    assert sum(admitted) == 150


def test_a_script_redis_forgot_is_loaded_again_and_counted_once(
    private_redis: PrivateRedis,
) -> None:
    windows = RedisWindows(private_redis.url, moving=True, timeout=2)
    budget = [Budget("mlp-test:tenant", 5, 60)]

    async def run() -> list[int]:
        remaining = [(await windows.hit(budget)).remaining]
        private_redis.client().script_flush()  # what a restart does to the script cache
        remaining += [(await windows.hit(budget)).remaining for _ in range(2)]
        await windows.aclose()
        return remaining

    assert asyncio.run(run()) == [4, 3, 2]  # the NOSCRIPT call counted nothing


def test_redis_restarting_is_unavailable_then_reconnected(private_redis: PrivateRedis) -> None:
    windows = RedisWindows(private_redis.url, moving=False, timeout=0.5)
    budget = [Budget("mlp-test:tenant", 5, 60)]

    async def run() -> list[int]:
        remaining = [(await windows.hit(budget)).remaining]
        private_redis.stop()
        for _ in range(2):  # the lost connection, then a refused one
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(windows.hit(budget), timeout=5)
        private_redis.start()  # empty: no counts, no script
        remaining += [(await windows.hit(budget)).remaining for _ in range(2)]
        await windows.aclose()
        return remaining

    assert asyncio.run(run()) == [4, 4, 3]


def test_a_redis_that_accepts_and_never_answers_is_unavailable_not_a_hang() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshake; nobody ever reads
        port = silent.getsockname()[1]
        windows = RedisWindows(f"redis://127.0.0.1:{port}/0", moving=True, timeout=0.2)

        async def run() -> None:
            for _ in range(2):
                with pytest.raises(StorageUnavailable, match="TimeoutError"):
                    await asyncio.wait_for(windows.hit(budgets("x", "a")), timeout=5)
            await windows.aclose()

        asyncio.run(run())


def test_an_error_reply_is_storage_unavailable() -> None:
    prefix = f"mlp-test-windows-{secrets.token_hex(6)}"
    client = redis.Redis.from_url(REDIS_URL)
    client.set(f"{prefix}:tenant", "not a sorted set", ex=60)
    windows = RedisWindows(REDIS_URL, moving=True, timeout=2)

    async def run() -> None:
        with pytest.raises(StorageUnavailable, match="WRONGTYPE"):
            await windows.hit([Budget(f"{prefix}:tenant", 5, 60)])
        # the connection is still good for the next request
        assert (await windows.hit([Budget(f"{prefix}:other", 5, 60)])).remaining == 4
        await windows.aclose()

    try:
        asyncio.run(run())
    finally:
        forget(prefix)
        client.close()


def test_a_url_the_client_cannot_honour_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisWindows(f"{REDIS_URL}?decode_responses=true", moving=True, timeout=0.2)
