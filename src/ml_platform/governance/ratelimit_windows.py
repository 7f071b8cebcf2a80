"""The counters behind the request budgets: one call checks and counts every budget of a request.

A request is counted against one or two budgets (its credential's, then its tenant's). ``hit``
checks all of them first and counts the request against all of them only when every one admits
it, so a refused request consumes nothing. Two strategies:

- ``moving-window``: the request times of the last ``window`` seconds (a deque in memory, a
  sorted set in Redis); ``reset`` is when the oldest of them leaves the window.
- ``fixed-window``: one counter per budget and window, aligned to the clock; ``reset`` is the
  window's end.

``MemoryWindows`` serves one process under a lock, with no timer thread (expired budgets are
swept every ``SWEEP_EVERY`` hits). ``RedisWindows`` is one atomic Lua script per request
(``EVALSHA`` of a script loaded once, pipelined on the event loop's one connection of
``redis_wire``), timed by Redis' own clock, so every replica shares one budget with no
read-modify-write race.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ml_platform.store.redis_wire import (
    LoopConnections,
    RedisAddress,
    ReplyError,
    pack_command,
)

SWEEP_EVERY = 4096


@dataclass(frozen=True)
class Budget:
    """One budget of one caller: ``quota`` requests per ``window`` seconds under ``key``."""

    key: str
    quota: int
    window: int


@dataclass(frozen=True)
class Outcome:
    """``allowed``; ``index`` of the refusing budget, else of the tightest one; what remains of
    it and the seconds until its window frees a slot."""

    allowed: bool
    index: int
    remaining: int
    reset_seconds: float


class StorageUnavailable(Exception):
    """The shared counters could not be reached within the timeout."""


class MemoryWindows:
    def __init__(self, moving: bool) -> None:
        self.moving = moving
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}  # moving window: request times, oldest first
        self._windows: dict[str, tuple[float, int]] = {}  # fixed window: (start, count)
        self._calls = 0

    async def hit(self, budgets: Sequence[Budget]) -> Outcome:
        with self._lock:
            now = time.monotonic()
            self._calls += 1
            if self._calls % SWEEP_EVERY == 0:
                self._sweep(now, max(b.window for b in budgets))
            return self._moving(budgets, now) if self.moving else self._fixed(budgets, now)

    def _moving(self, budgets: Sequence[Budget], now: float) -> Outcome:
        held: list[deque[float]] = []
        for index, budget in enumerate(budgets):
            times = self._hits.setdefault(budget.key, deque())
            while times and times[0] <= now - budget.window:
                times.popleft()
            if len(times) >= budget.quota:
                reset = times[0] + budget.window - now if times else budget.window
                return Outcome(False, index, 0, reset)
            held.append(times)
        tightest: Outcome | None = None
        for index, (budget, times) in enumerate(zip(budgets, held, strict=True)):
            times.append(now)
            outcome = Outcome(
                True, index, budget.quota - len(times), times[0] + budget.window - now
            )
            if tightest is None or outcome.remaining < tightest.remaining:
                tightest = outcome
        assert tightest is not None
        return tightest

    def _fixed(self, budgets: Sequence[Budget], now: float) -> Outcome:
        current: list[tuple[float, int]] = []
        for index, budget in enumerate(budgets):
            start = float(math.floor(now / budget.window) * budget.window)
            window_start, count = self._windows.get(budget.key, (start, 0))
            if window_start != start:
                count = 0
            if count >= budget.quota:
                return Outcome(False, index, 0, start + budget.window - now)
            current.append((start, count))
        tightest: Outcome | None = None
        for index, (budget, (began, count)) in enumerate(zip(budgets, current, strict=True)):
            self._windows[budget.key] = (began, count + 1)
            outcome = Outcome(True, index, budget.quota - count - 1, began + budget.window - now)
            if tightest is None or outcome.remaining < tightest.remaining:
                tightest = outcome
        assert tightest is not None
        return tightest

    def _sweep(self, now: float, window: int) -> None:
        """Forget callers idle for a whole window (bounded memory without a timer thread)."""
        for key in [k for k, times in self._hits.items() if not times or times[-1] <= now - window]:
            del self._hits[key]
        stale = [k for k, (start, _) in self._windows.items() if start + window <= now]
        for key in stale:
            del self._windows[key]

    async def aclose(self) -> None:
        return None


# KEYS: one per budget. ARGV: 1 = "moving" or "fixed", 2 = a member unique to this request,
# then quota and window (ms) per budget. Returns {allowed, index (1-based), remaining, reset ms}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moving = ARGV[1] == 'moving'
local n = #KEYS
local counts, keys, starts = {}, {}, {}
for i = 1, n do
  local quota, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  if moving then
    keys[i] = KEYS[i]
    redis.call('ZREMRANGEBYSCORE', keys[i], '-inf', now - window)
    counts[i] = redis.call('ZCARD', keys[i])
    if counts[i] >= quota then
      local oldest = redis.call('ZRANGE', keys[i], 0, 0, 'WITHSCORES')
      local reset = window
      if oldest[2] then reset = tonumber(oldest[2]) + window - now end
      return {0, i, 0, reset}
    end
  else
    starts[i] = now - (now % window)
    keys[i] = KEYS[i] .. ':' .. starts[i]
    counts[i] = tonumber(redis.call('GET', keys[i]) or '0')
    if counts[i] >= quota then
      return {0, i, 0, starts[i] + window - now}
    end
  end
end
local best, best_remaining, best_reset = 0, 0, 0
for i = 1, n do
  local quota, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local reset
  if moving then
    redis.call('ZADD', keys[i], now, ARGV[2])
    redis.call('PEXPIRE', keys[i], window)
    local oldest = redis.call('ZRANGE', keys[i], 0, 0, 'WITHSCORES')
    reset = tonumber(oldest[2]) + window - now
  else
    redis.call('INCR', keys[i])
    redis.call('PEXPIRE', keys[i], window)
    reset = starts[i] + window - now
  end
  local remaining = quota - counts[i] - 1
  if best == 0 or remaining < best_remaining then
    best, best_remaining, best_reset = i, remaining, reset
  end
end
return {1, best, best_remaining, best_reset}
"""


class RedisWindows:
    """The budgets in Redis: one script call per request, bounded by ``timeout`` seconds.

    One connection per event loop (``redis_wire``: concurrent requests pipelined on it, replies
    matched in order), opened on the loop's first call and again on the first call after it was
    lost, failed or timed out. Opening it (connect, AUTH, SELECT) is bounded by ``timeout``, and
    so is each script call: an unreachable Redis is ``StorageUnavailable`` within 2 x
    ``timeout``, with no retry. A script Redis no longer knows (``NOSCRIPT``: Redis restarted,
    ``SCRIPT FLUSH``) is loaded and the call retried once, in one round trip.
    """

    def __init__(self, url: str, *, moving: bool, timeout: float) -> None:
        self.url = url
        # ValueError now, at startup, for a URL this client cannot honour
        self.address = RedisAddress.from_url(url)
        self.moving = moving
        self.timeout = timeout
        self._member_prefix = f"{os.getpid()}-{os.urandom(4).hex()}-"
        self._members = itertools.count()
        self._mode = "moving" if moving else "fixed"
        self._sha = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._load = pack_command(("SCRIPT", "LOAD", _SCRIPT))
        self._connections = LoopConnections(self.address, timeout)

    def _args(self, budgets: Sequence[Budget]) -> tuple[str | int, ...]:
        args: list[str | int] = [len(budgets)]
        args += [b.key for b in budgets]
        args += [self._mode, f"{self._member_prefix}{next(self._members)}"]
        for budget in budgets:
            args += [budget.quota, budget.window * 1000]
        return tuple(args)

    async def hit(self, budgets: Sequence[Budget]) -> Outcome:
        args = self._args(budgets)
        try:
            connection = await self._connections.get()
            try:
                reply = await connection.execute(pack_command(("EVALSHA", self._sha, *args)))
            except ReplyError as exc:
                if exc.code != "NOSCRIPT":
                    raise
                # nothing was counted: load the script and run it again, pipelined
                _, reply = await connection.execute_all(
                    [self._load, pack_command(("EVALSHA", self._sha, *args))]
                )
        except (ReplyError, OSError, TimeoutError) as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if not (isinstance(reply, list) and len(reply) == 4 and all(type(v) is int for v in reply)):
            raise StorageUnavailable(f"unexpected reply to the rate-limit script: {reply!r:.200}")
        allowed, index, remaining, reset_ms = reply
        return Outcome(bool(allowed), index - 1, remaining, reset_ms / 1000)

    async def aclose(self) -> None:
        """Close every loop's connection: this loop's now, another live loop's on that loop."""
        await self._connections.aclose()
