"""The limiter keeps each caller's budgets (policies and counter keys) instead of building them
for every request; its memory is bounded. Generated sequences of callers, some tenants with
overrides, some credentials sharing a tenant, go through a limiter whose memory holds only
two callers (so it starts over again and again) and through one that keeps them all: every
decision is the same, and each equals the count a caller's budgets imply.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.governance import ratelimit
from ml_platform.governance.ratelimit import Decision, Plane, RateLimitConfig, RateLimiter

TENANTS = ["t-default", "t-generous", "t-strict"]
CREDENTIALS = ["api_key:a", "api_key:b", "jwt:c"]
OVERRIDES = {
    "t-generous": {"data": "7/minute"},
    "t-strict": {"data": "3/minute", "data_per_credential": "2/minute"},
}
QUOTA = {"t-default": (5, None), "t-generous": (7, None), "t-strict": (3, 2)}  # tenant, per key

calls = st.lists(st.tuples(st.sampled_from(TENANTS), st.sampled_from(CREDENTIALS)), max_size=40)


def _config() -> RateLimitConfig:
    return RateLimitConfig(data="5/minute", tenant_overrides=OVERRIDES)


def _decisions(limiter: RateLimiter, sequence: list[tuple[str, str]]) -> list[Decision]:
    async def run() -> list[Decision]:
        return [await limiter.hit(Plane.DATA, tenant, key) for tenant, key in sequence]

    return asyncio.run(run())


@settings(max_examples=80, deadline=None)
@given(sequence=calls)
def test_a_bounded_memory_of_callers_decides_as_a_full_one(
    sequence: list[tuple[str, str]],
) -> None:
    full = _decisions(RateLimiter(_config()), sequence)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ratelimit, "MAX_REMEMBERED_CALLERS", 2)
        small = RateLimiter(_config())
        bounded = _decisions(small, sequence)
        assert len(small._checks) <= 2
    assert bounded == full

    tenant_count: dict[str, int] = {}
    key_count: dict[tuple[str, str], int] = {}
    for (tenant, key), decision in zip(sequence, full, strict=True):
        tenant_quota, key_quota = QUOTA[tenant]
        tenant_left = tenant_quota - tenant_count.get(tenant, 0)
        key_left = None if key_quota is None else key_quota - key_count.get((tenant, key), 0)
        allowed = tenant_left > 0 and (key_left is None or key_left > 0)
        assert decision.allowed is allowed, (tenant, key, decision)
        assert [p.quota for p in decision.policies] == [
            q for q in (key_quota, tenant_quota) if q is not None
        ]
        if allowed:
            tenant_count[tenant] = tenant_count.get(tenant, 0) + 1
            key_count[(tenant, key)] = key_count.get((tenant, key), 0) + 1
            remaining = [tenant_left - 1] + ([] if key_left is None else [key_left - 1])
            assert decision.remaining == min(remaining)
