"""The budget counters, in memory and in the real Redis on 127.0.0.1:6379, both strategies:
every budget of a request is checked and counted in one step, a refused request counts against
none, and an unreachable Redis is ``StorageUnavailable`` within the timeout."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest
import redis

from ml_platform.governance.ratelimit_windows import (
    Budget,
    MemoryWindows,
    RedisWindows,
    StorageUnavailable,
)

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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    windows = RedisWindows(f"redis://127.0.0.1:{port}/0", moving=True, timeout=0.2)

    async def run() -> None:
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(windows.hit(budgets("x", "a")), timeout=2)

    asyncio.run(run())
