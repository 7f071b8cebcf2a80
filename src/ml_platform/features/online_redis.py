"""The Redis online store: one string per (tenant, view, entity key).

The value is ``<event time, µs since the epoch>|<JSON of the feature values>``: a Lua script
compares the stored time before it replaces a value (newer wins, atomically), and a lookup is
one ``MGET`` of every key it needs, whatever the number of views and entity rows: from a
thread with the blocking client, or on the caller's event loop (``read_async``, the path of
REST and gRPC lookups: no thread hop per request) over the event loop's one pipelined
connection of ``store.redis_wire``, which concurrent lookups share.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson

from ml_platform.core.errors import Unavailable
from ml_platform.store.features import OnlineRowRecord
from ml_platform.store.redis_wire import LoopConnections, RedisAddress, ReplyError, pack_command

__all__ = ["RedisOnlineStore"]

OnlineKey = tuple[str, str]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_BATCH = 500
_TIMEOUT = 5.0
# an MGET reply may hold every key of a large request (10,000 rows x a few views x ~300 bytes)
_MAX_REPLY_BYTES = 256 << 20
_NEWER_WINS = """
for i, key in ipairs(KEYS) do
  local ts = tonumber(ARGV[2 * i - 1])
  local cur = redis.call('GET', key)
  local keep = false
  if cur then
    local bar = string.find(cur, '|', 1, true)
    if bar and tonumber(string.sub(cur, 1, bar - 1)) > ts then keep = true end
  end
  if not keep then redis.call('SET', key, ARGV[2 * i]) end
end
return #KEYS
"""


def _micros(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class RedisOnlineStore:
    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "the Redis online store needs: pip install ml-platform[redis]"
            ) from exc
        self._redis = redis.Redis.from_url(
            url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
        )
        # ValueError now, at startup, for a URL the request-path client cannot honour
        self._connections = LoopConnections(
            RedisAddress.from_url(url), _TIMEOUT, max_reply_bytes=_MAX_REPLY_BYTES
        )
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._prefix = prefix
        self._script = self._redis.register_script(_NEWER_WINS)

    def _key(self, tenant_id: str, view: str, entity_key: str) -> str:
        return f"{self._prefix}{tenant_id}:{view}:{entity_key}"

    def _unavailable(self) -> Unavailable:
        return Unavailable("the Redis online feature store is unreachable; retry shortly")

    def write(self, tenant_id: str, view: str, rows: Sequence[OnlineRowRecord]) -> int:
        try:
            for start in range(0, len(rows), _WRITE_BATCH):
                chunk = rows[start : start + _WRITE_BATCH]
                keys = [self._key(tenant_id, view, r.entity_key) for r in chunk]
                args: list[str] = []
                for r in chunk:
                    ts = str(_micros(r.event_ts))
                    payload = json.dumps(r.values, separators=(",", ":"), allow_nan=False)
                    args += [ts, f"{ts}|{payload}"]
                self._script(keys=keys, args=args)
        except self._errors:
            raise self._unavailable() from None
        return len(rows)

    def read(self, tenant_id: str, keys: Sequence[OnlineKey]) -> dict[OnlineKey, OnlineRowRecord]:
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        try:
            raw: list[bytes | None] = self._redis.mget(  # type: ignore[assignment]
                [self._key(tenant_id, v, k) for v, k in unique]
            )
        except self._errors:
            raise self._unavailable() from None
        return _decode(unique, raw)

    async def read_async(
        self, tenant_id: str, keys: Sequence[OnlineKey]
    ) -> dict[OnlineKey, OnlineRowRecord]:
        """``read`` on the running event loop (one ``MGET``, no thread)."""
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        command = pack_command(("MGET", *[self._key(tenant_id, v, k) for v, k in unique]))
        try:
            connection = await self._connections.get()
            raw = await connection.execute(command)
        except (ReplyError, OSError, TimeoutError):
            raise self._unavailable() from None
        if not isinstance(raw, list) or len(raw) != len(unique):
            raise self._unavailable()
        return _decode(unique, raw)

    def clear(self, tenant_id: str, view: str) -> None:
        fixed = self._key(tenant_id, view, "")
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in fixed) + "*"
        try:
            batch: list[bytes] = []
            for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._redis.delete(*batch)
                    batch = []
            if batch:
                self._redis.delete(*batch)
        except self._errors:
            raise self._unavailable() from None

    def close(self) -> None:
        self._redis.close()
        self._connections.close_soon()


def _decode(keys: list[OnlineKey], raw: list[bytes | None]) -> dict[OnlineKey, OnlineRowRecord]:
    out: dict[OnlineKey, OnlineRowRecord] = {}
    for (view, key), value in zip(keys, raw, strict=True):
        if value is None:
            continue
        ts, _, payload = bytes(value).partition(b"|")
        event_ts = _EPOCH + timedelta(microseconds=int(ts))
        out[(view, key)] = OnlineRowRecord(key, orjson.loads(payload), event_ts)
    return out
