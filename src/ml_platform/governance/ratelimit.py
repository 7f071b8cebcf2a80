"""Request budgets per tenant and per credential, one set for each plane, on ``limits``.

Two planes have separate budgets: ``control`` (the REST control plane) and ``data`` (gRPC and
V2 REST inference). Every request of an authenticated caller is counted against its tenant's
budget and, when a per-credential budget is configured, against its credential's too.

Storage: in memory (one process) or Redis (``redis_url``), where ``limits``' atomic Lua
scripts keep one budget for every replica (no read-modify-write races). When Redis cannot be
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
import limits.errors
import limits.storage
import limits.strategies
from redis import ConnectionPool
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml_platform.core.errors import ResourceExhausted, Unavailable

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
    item: limits.RateLimitItem

    @classmethod
    def parse(cls, name: str, spec: str) -> Policy:
        """``spec`` in ``limits`` notation (``600/minute``, ``10 per 2 seconds``)."""
        try:
            item = limits.parse(spec)
        except ValueError as exc:
            raise ValueError(f"rate limit {name!r}: {spec!r} is not like '600/minute'") from exc
        return cls(name=name, quota=item.amount, window=item.get_expiry(), item=item)

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
    """Counts requests against budgets; thread-safe; one per process (or per app)."""

    def __init__(self, config: RateLimitConfig) -> None:
        check_overrides(config.tenant_overrides)
        self.config = config
        self._defaults = {plane: self._budgets(plane, {}) for plane in Plane}
        self._overrides = {
            tenant: {plane: self._budgets(plane, values) for plane in Plane}
            for tenant, values in config.tenant_overrides.items()
        }
        self.storage = _storage(config)
        strategy_class: type[limits.strategies.RateLimiter] = (
            limits.strategies.MovingWindowRateLimiter
            if config.strategy is Strategy.MOVING_WINDOW
            else limits.strategies.FixedWindowRateLimiter
        )
        self._limiter = strategy_class(self.storage)
        self._warn_lock = threading.Lock()
        self._last_warning = -math.inf

    @property
    def shared(self) -> bool:
        """True when the budgets live in Redis (calls do network I/O: run them off the loop)."""
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

    def hit(
        self, plane: Plane, tenant_id: str, credential: str, *, report: bool = True
    ) -> Decision:
        """Count one request of ``credential`` (unique within its tenant) on ``plane``.

        ``report=False`` skips reading what remains when the request is admitted (one Redis
        round trip less per budget) for edges that send no ``RateLimit`` field on success.
        """
        if not self.config.enabled:
            return Decision(allowed=True)
        budgets = self.budgets(plane, tenant_id)
        checks: list[tuple[Policy, tuple[str, ...]]] = []
        if budgets.credential is not None:
            checks.append((budgets.credential, (plane.value, "credential", tenant_id, credential)))
        if budgets.tenant is not None:
            checks.append((budgets.tenant, (plane.value, "tenant", tenant_id)))
        if not checks:
            return Decision(allowed=True)
        policies = tuple(policy for policy, _ in checks)
        try:
            return self._hit(checks, policies, report)
        except limits.errors.StorageError as exc:
            return self._storage_failed(policies, exc)

    def _hit(
        self,
        checks: list[tuple[Policy, tuple[str, ...]]],
        policies: tuple[Policy, ...],
        report: bool,
    ) -> Decision:
        tightest: tuple[Policy, int, int] | None = None
        now = time.time()
        for policy, identifiers in checks:
            # the narrower budget first: a request it refuses never counts against the tenant
            allowed = self._limiter.hit(policy.item, *identifiers)
            if allowed and not report:
                continue
            stats = self._limiter.get_window_stats(policy.item, *identifiers)
            reset = max(0, math.ceil(stats.reset_time - now))
            if not allowed:
                return Decision(
                    allowed=False,
                    policies=policies,
                    policy=policy,
                    remaining=0,
                    reset_seconds=max(1, reset),
                )
            if tightest is None or stats.remaining < tightest[1]:
                tightest = (policy, stats.remaining, reset)
        if tightest is None:  # admitted, nothing to report
            return Decision(allowed=True, policies=policies)
        return Decision(
            allowed=True,
            policies=policies,
            policy=tightest[0],
            remaining=tightest[1],
            reset_seconds=tightest[2],
        )

    def _storage_failed(self, policies: tuple[Policy, ...], exc: Exception) -> Decision:
        now = time.monotonic()
        with self._warn_lock:
            warn = now - self._last_warning >= WARN_INTERVAL_SECONDS
            if warn:
                self._last_warning = now
        if warn:
            logger.warning(
                "rate-limit storage unreachable (%s: %s); failing %s (logged at most every %.0f s)",
                type(exc.__cause__ or exc).__name__,
                exc.__cause__ or exc,
                "open: requests are admitted unlimited" if self.config.fail_open else "closed",
                WARN_INTERVAL_SECONDS,
            )
        if self.config.fail_open:
            return Decision(allowed=True, policies=policies)
        return Decision(allowed=False, policies=policies, unavailable=True)

    def close(self) -> None:
        pool = getattr(getattr(self.storage, "storage", None), "connection_pool", None)
        if isinstance(pool, ConnectionPool):
            pool.disconnect()


def _storage(config: RateLimitConfig) -> limits.storage.Storage:
    if config.redis_url is None:
        return limits.storage.MemoryStorage(wrap_exceptions=True)
    # no client-side retries: an unreachable Redis costs one short timeout, never a backoff
    pool = ConnectionPool.from_url(
        config.redis_url,
        socket_timeout=config.socket_timeout,
        socket_connect_timeout=config.socket_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return limits.storage.RedisStorage(
        config.redis_url,
        connection_pool=pool,
        key_prefix=config.key_prefix,
        wrap_exceptions=True,
    )


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
