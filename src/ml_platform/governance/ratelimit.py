"""Request budgets per tenant and per credential, one set for each plane, on ``limits``.

Two planes have separate budgets: ``control`` (the REST control plane) and ``data`` (gRPC and
V2 REST inference). Every request of an authenticated caller is counted against its tenant's
budget and, when a per-credential budget is configured, against its credential's too.

Counters (``ratelimit_windows``): in memory (one process) or Redis (``redis_url``), where one
atomic Lua script per request keeps one budget for every replica (no read-modify-write races).
``limits`` only parses the budget notation. When Redis cannot be
reached within ``socket_timeout`` the configured fail mode applies: open (admit, log a WARNING
at most once per ``warn_interval``) or closed (``RateLimitUnavailable``, a 503 with
``Retry-After``). Nothing here knows HTTP or gRPC: the edges turn a ``Decision`` into headers
and statuses.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import limits

from ml_platform.core.errors import ResourceExhausted, Unavailable
from ml_platform.governance.ratelimit_windows import (
    Budget,
    MemoryWindows,
    RedisWindows,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from ml_platform.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "mlp-ratelimit"
# how long a fail-closed caller is told to wait, and how often fail-open warns
UNAVAILABLE_RETRY_AFTER_SECONDS = 1
WARN_INTERVAL_SECONDS = 60.0


class Plane(str, Enum):
    CONTROL = "control"
    DATA = "data"


class Strategy(str, Enum):
    MOVING_WINDOW = "moving-window"
    FIXED_WINDOW = "fixed-window"


@dataclass(frozen=True)
class Policy:
    """One budget: ``quota`` requests per ``window`` seconds, named as in ``RateLimit-Policy``."""

    name: str
    quota: int
    window: int

    @classmethod
    def parse(cls, name: str, spec: str) -> Policy:
        """``spec`` in ``limits`` notation (``600/minute``, ``10 per 2 seconds``)."""
        try:
            item = limits.parse(spec)
        except ValueError as exc:
            raise ValueError(f"rate limit {name!r}: {spec!r} is not like '600/minute'") from exc
        return cls(name=name, quota=item.amount, window=item.get_expiry())

    def header(self) -> str:
        """The ``RateLimit-Policy`` list member (draft-ietf-httpapi-ratelimit-headers)."""
        return f'"{self.name}";q={self.quota};w={self.window}'


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against its budgets."""

    allowed: bool
    policies: tuple[Policy, ...] = ()
    # the most constraining budget: its name, what remains and when it resets (seconds)
    policy: Policy | None = None
    remaining: int = 0
    reset_seconds: int = 0
    # set when the storage could not be reached and the mode is fail-closed
    unavailable: bool = False

    @property
    def retry_after(self) -> int | None:
        if self.unavailable:
            return UNAVAILABLE_RETRY_AFTER_SECONDS
        if not self.allowed:
            return max(1, self.reset_seconds)
        return None

    def policy_header(self) -> str | None:
        if not self.policies:
            return None
        return ", ".join(p.header() for p in self.policies)

    def ratelimit_header(self) -> str | None:
        if self.policy is None:
            return None
        return f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}'

    def http_headers(self) -> list[tuple[str, str]]:
        """``RateLimit-Policy``, ``RateLimit`` and (when refused) ``Retry-After``, lower-case."""
        headers: list[tuple[str, str]] = []
        policy, current = self.policy_header(), self.ratelimit_header()
        if policy is not None:
            headers.append(("ratelimit-policy", policy))
        if current is not None:
            headers.append(("ratelimit", current))
        if self.retry_after is not None:
            headers.append(("retry-after", str(self.retry_after)))
        return headers

    def raise_if_rejected(self) -> None:
        if self.unavailable:
            raise RateLimitUnavailable(self)
        if not self.allowed:
            raise RateLimited(self)


_ALLOWED = Decision(allowed=True)
_Checks = tuple[tuple[Policy, ...], tuple[Budget, ...]]
"""The policies that apply to one caller, and its budgets (counter key, quota, window)."""
MAX_REMEMBERED_CALLERS = 10_000
"""Callers whose budgets ``RateLimiter.hit`` keeps; the memory starts over when full."""


class RateLimited(ResourceExhausted):
    """Over a request budget: 429 / RESOURCE_EXHAUSTED, retry after ``decision.retry_after``."""

    def __init__(self, decision: Decision) -> None:
        policy = decision.policy
        name = policy.name if policy else "request"
        quota = f" ({policy.quota} per {policy.window} s)" if policy else ""
        super().__init__(
            f"rate limit exceeded for the {name!r} budget{quota}; "
            f"retry after {decision.retry_after} s"
        )
        self.decision = decision


class RateLimitUnavailable(Unavailable):
    """The rate-limit storage is unreachable and the platform is configured to fail closed."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            "rate limiting is temporarily unavailable; retry after "
            f"{UNAVAILABLE_RETRY_AFTER_SECONDS} s"
        )
        self.decision = decision


@dataclass(frozen=True)
class PlaneBudgets:
    """The budgets of one plane: per tenant, and optionally per credential."""

    tenant: Policy | None
    credential: Policy | None = None


@dataclass
class RateLimitConfig:
    enabled: bool = True
    control: str = "600/minute"
    data: str = "6000/second"
    control_per_credential: str | None = None
    data_per_credential: str | None = None
    # tenant id -> {"control": "...", "data": "...", "control_per_credential": "...", ...}
    tenant_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    redis_url: str | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    strategy: Strategy = Strategy.MOVING_WINDOW
    fail_open: bool = True
    socket_timeout: float = 0.2


_OVERRIDE_FIELDS = ("control", "data", "control_per_credential", "data_per_credential")


def check_overrides(overrides: Mapping[str, Mapping[str, str]]) -> None:
    """ValueError naming the first bad tenant override."""
    for tenant, values in overrides.items():
        for name, spec in values.items():
            if name not in _OVERRIDE_FIELDS:
                raise ValueError(
                    f"rate limit override for tenant {tenant!r}: unknown budget {name!r} "
                    f"(known: {', '.join(_OVERRIDE_FIELDS)})"
                )
            Policy.parse(name, spec)


class RateLimiter:
    """Counts requests against budgets; one per process (or per app), safe across threads.

    ``hit`` is a coroutine: in memory it never awaits (microseconds under a lock), with Redis it
    is one script call on the running loop's pooled connection (no thread hop).
    """

    def __init__(self, config: RateLimitConfig) -> None:
        check_overrides(config.tenant_overrides)
        self.config = config
        self._defaults = {plane: self._budgets(plane, {}) for plane in Plane}
        self._overrides = {
            tenant: {plane: self._budgets(plane, values) for plane in Plane}
            for tenant, values in config.tenant_overrides.items()
        }
        moving = config.strategy is Strategy.MOVING_WINDOW
        self.windows: MemoryWindows | RedisWindows = (
            MemoryWindows(moving)
            if config.redis_url is None
            else RedisWindows(config.redis_url, moving=moving, timeout=config.socket_timeout)
        )
        self._warn_lock = threading.Lock()
        self._last_warning = -math.inf
        self._checks: dict[tuple[Plane, str, str], _Checks] = {}

    @property
    def shared(self) -> bool:
        """True when the budgets live in Redis, shared by every replica."""
        return self.config.redis_url is not None

    def _budgets(self, plane: Plane, values: Mapping[str, str]) -> PlaneBudgets:
        tenant_spec = values.get(plane.value, getattr(self.config, plane.value))
        key_name = f"{plane.value}_per_credential"
        key_spec = values.get(key_name, getattr(self.config, key_name))
        return PlaneBudgets(
            tenant=Policy.parse(plane.value, tenant_spec) if tenant_spec else None,
            credential=Policy.parse(f"{plane.value}-credential", key_spec) if key_spec else None,
        )

    def budgets(self, plane: Plane, tenant_id: str) -> PlaneBudgets:
        override = self._overrides.get(tenant_id)
        return override[plane] if override is not None else self._defaults[plane]

    async def hit(self, plane: Plane, tenant_id: str, credential: str) -> Decision:
        """Count one request of ``credential`` (unique within its tenant) on ``plane``.

        Every budget that applies is checked and counted in one step; a request any of them
        refuses is counted against none.
        """
        if not self.config.enabled:
            return _ALLOWED
        checks = self._checks.get((plane, tenant_id, credential))
        if checks is None:
            checks = self._checks_of(plane, tenant_id, credential)
        policies, budgets = checks
        if not budgets:
            return _ALLOWED
        try:
            outcome = await self.windows.hit(budgets)
        except StorageUnavailable as exc:
            return self._storage_failed(policies, exc)
        reset = max(0, math.ceil(outcome.reset_seconds))
        return Decision(
            allowed=outcome.allowed,
            policies=policies,
            policy=policies[outcome.index],
            remaining=outcome.remaining,
            reset_seconds=reset if outcome.allowed else max(1, reset),
        )

    def _checks_of(self, plane: Plane, tenant_id: str, credential: str) -> _Checks:
        """The budgets that apply to ``credential`` of ``tenant_id`` on ``plane``, with their
        counter keys: fixed from the configuration, so kept (a bounded memory) rather than
        built again for every request."""
        budgets = self.budgets(plane, tenant_id)
        prefix = f"{self.config.key_prefix}:{plane.value}"
        checks: list[tuple[Policy, str]] = []
        if budgets.credential is not None:
            checks.append((budgets.credential, f"{prefix}:credential:{tenant_id}:{credential}"))
        if budgets.tenant is not None:
            checks.append((budgets.tenant, f"{prefix}:tenant:{tenant_id}"))
        found = (
            tuple(policy for policy, _ in checks),
            tuple(Budget(key, policy.quota, policy.window) for policy, key in checks),
        )
        if len(self._checks) >= MAX_REMEMBERED_CALLERS:
            self._checks.clear()
        self._checks[(plane, tenant_id, credential)] = found
        return found

    def _storage_failed(self, policies: tuple[Policy, ...], exc: Exception) -> Decision:
        now = time.monotonic()
        with self._warn_lock:
            warn = now - self._last_warning >= WARN_INTERVAL_SECONDS
            if warn:
                self._last_warning = now
        if warn:
            logger.warning(
                "rate-limit storage unreachable (%s); failing %s (logged at most every %.0f s)",
                exc,
                "open: requests are admitted unlimited" if self.config.fail_open else "closed",
                WARN_INTERVAL_SECONDS,
            )
        if self.config.fail_open:
            return Decision(allowed=True, policies=policies)
        return Decision(allowed=False, policies=policies, unavailable=True)

    async def aclose(self) -> None:
        await self.windows.aclose()


def config_from_settings(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        enabled=settings.rate_limit_enabled,
        control=settings.rate_limit_control,
        data=settings.rate_limit_data,
        control_per_credential=settings.rate_limit_control_per_credential,
        data_per_credential=settings.rate_limit_data_per_credential,
        tenant_overrides=settings.rate_limit_tenants,
        redis_url=settings.redis_url,
        strategy=Strategy(settings.rate_limit_strategy),
        fail_open=settings.rate_limit_fail_open,
        key_prefix=settings.rate_limit_key_prefix,
    )


def check_limits(settings: Settings) -> None:
    """ValueError naming the first budget in ``settings`` that does not parse."""
    for name in ("control", "data", "control_per_credential", "data_per_credential"):
        spec = getattr(settings, f"rate_limit_{name}")
        if spec:
            Policy.parse(name, spec)
    check_overrides(settings.rate_limit_tenants)


def build_rate_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(config_from_settings(settings))
