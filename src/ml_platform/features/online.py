"""The online store: the latest value of each entity key of each feature view.

Two implementations behind one small interface, chosen from settings by
``build_online_store``: the platform's own database (default) and Redis (``redis_url``).
Both read every requested key in one round trip and apply writes newer-wins (a row only
replaces one with an equal or older event time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ml_platform.config import Settings
from ml_platform.store.db import Database
from ml_platform.store.features import OnlineRowRecord, SqlOnlineRows

__all__ = [
    "AsyncOnlineReads",
    "OnlineRowRecord",
    "OnlineStore",
    "SqlOnlineStore",
    "build_online_store",
]

OnlineKey = tuple[str, str]  # (view, entity key)


@runtime_checkable
class OnlineStore(Protocol):
    name: str

    def write(self, tenant_id: str, view: str, rows: Sequence[OnlineRowRecord]) -> int:
        """Upsert ``rows`` newer-wins; returns how many were offered."""
        ...

    def read(self, tenant_id: str, keys: Sequence[OnlineKey]) -> dict[OnlineKey, OnlineRowRecord]:
        """The stored rows of ``keys`` (absent keys are left out), in one round trip."""
        ...

    def clear(self, tenant_id: str, view: str) -> None:
        """Forget every row of ``view`` (the view was deleted)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncOnlineReads(Protocol):
    """A store that can also read on an event loop without a thread (Redis)."""

    async def read_async(
        self, tenant_id: str, keys: Sequence[OnlineKey]
    ) -> dict[OnlineKey, OnlineRowRecord]:
        """``read`` as a coroutine of the running loop."""
        ...


class SqlOnlineStore:
    """The embedded default: the ``feature_online_rows`` table of the platform's database."""

    name = "sql"

    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, tenant_id: str, view: str, rows: Sequence[OnlineRowRecord]) -> int:
        with self._db.transaction() as session:
            SqlOnlineRows(session).upsert(tenant_id, view, rows)
        return len(rows)

    def read(self, tenant_id: str, keys: Sequence[OnlineKey]) -> dict[OnlineKey, OnlineRowRecord]:
        with self._db.read() as session:
            return SqlOnlineRows(session).read(tenant_id, keys)

    def clear(self, tenant_id: str, view: str) -> None:
        with self._db.transaction() as session:
            SqlOnlineRows(session).clear(tenant_id, view)

    def close(self) -> None:
        return None


def build_online_store(settings: Settings, db: Database) -> OnlineStore:
    """Redis when configured (``feature_online_store``, ``redis_url``), else the database."""
    choice = settings.feature_online_store
    if choice == "auto":
        choice = "redis" if settings.redis_url else "sql"
    if choice == "redis":
        from ml_platform.features.online_redis import RedisOnlineStore

        if not settings.redis_url:
            raise ValueError("ML_PLATFORM_FEATURE_ONLINE_STORE=redis needs ML_PLATFORM_REDIS_URL")
        return RedisOnlineStore(settings.redis_url, settings.feature_redis_key_prefix)
    return SqlOnlineStore(db)
