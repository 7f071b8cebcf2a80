"""Charging a tenant's storage quota for the objects it publishes outside the registry.

A data-area file or a code package is charged to its tenant (a ``stored_objects`` row) in
the flow that publishes it, and ``max_storage_bytes`` is checked before it is published:

- ``allowance`` (no lock) tells an upload, before it starts, how many bytes the object may
  hold: a body declared larger, or a stream that passes it, is refused at once (429
  ``QUOTA_EXCEEDED``) and nothing is published;
- ``record`` is the authoritative check: in one transaction it serializes the tenant's
  quota-checked creations (``QuotaRepository.lock_tenant``: the tenant's row lock on
  PostgreSQL, the write lock on SQLite), counts the usage, refuses or publishes the object
  (the caller's ``publish``), and writes its row. Two uploads racing for the last bytes
  cannot both pass, and concurrent writers of one key leave the row of the object that won;
- ``forget`` deletes the object and its row the same way.

An overwrite is charged its new size in place of the old one; an object that shrinks is never
refused (a tenant over a lowered limit can still make room).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from ml_platform.core.errors import NotFound, QuotaExceeded
from ml_platform.governance.quotas import Limit, QuotaService, exceeded
from ml_platform.store.db import Database
from ml_platform.store.quotas import QuotaRepository
from ml_platform.store.stored_objects import StoredObjectKind, StoredObjectRepository

__all__ = ["StorageAllowance", "StorageLedger", "StoredObjectKind"]

T = TypeVar("T")


@dataclass(frozen=True)
class StorageAllowance:
    """What one object may hold under the tenant's ``max_storage_bytes``."""

    limit: int | None
    usage: int
    """Every byte the tenant stores now (the replaced object included)."""
    replaced: int
    """What the object (its key) is charged now: 0 for a new one."""

    @property
    def max_bytes(self) -> int | None:
        """The largest size the object may have; None: no limit."""
        if self.limit is None:
            return None
        return max(self.limit - self.usage + self.replaced, self.replaced)

    def admits(self, size: int) -> bool:
        return self.max_bytes is None or size <= self.max_bytes

    def refusal(self, size: int, what: str, *, at_least: bool = False) -> QuotaExceeded:
        assert self.limit is not None
        adding = size - self.replaced
        return exceeded(
            Limit.STORAGE_BYTES, self.limit, self.usage, adding, what=what, at_least=at_least
        )


class StorageLedger:
    """Checks and records the stored objects of every tenant (cheap: make one per use)."""

    def __init__(self, db: Database, quotas: QuotaService | None) -> None:
        self._db = db
        self._quotas = quotas

    def allowance(self, tenant_id: str, kind: StoredObjectKind, key: str) -> StorageAllowance:
        """The object's allowance now, unlocked (a pre-check; ``record`` decides)."""
        with self._db.read() as session:
            return self._allowance(session, tenant_id, kind, key)

    def refuse(self, refusal: QuotaExceeded) -> QuotaExceeded:
        """Count a refusal (``/metrics``) and return it, to raise."""
        if self._quotas is not None:
            self._quotas.count_rejection(Limit.STORAGE_BYTES)
        return refusal

    def precheck(
        self, tenant_id: str, kind: StoredObjectKind, key: str, size: int, what: str
    ) -> None:
        """Refuse now when ``size`` bytes would not fit (before expensive work)."""
        allowance = self.allowance(tenant_id, kind, key)
        if not allowance.admits(size):
            raise self.refuse(allowance.refusal(size, what))

    def record(
        self,
        tenant_id: str,
        kind: StoredObjectKind,
        key: str,
        size: int,
        publish: Callable[[], T],
        *,
        what: str,
        check: bool = True,
    ) -> T:
        """Check the quota (unless ``check`` is false: bytes already stored), then
        ``publish()`` the object and charge it ``size`` bytes, in one transaction. Refused
        (``QuotaExceeded``) or failed: nothing is published by this call and nothing changes."""
        with self._db.transaction() as session:
            QuotaRepository(session).lock_tenant(tenant_id)
            if check:
                allowance = self._allowance(session, tenant_id, kind, key)
                if not allowance.admits(size):
                    raise self.refuse(allowance.refusal(size, what))
            result = publish()
            StoredObjectRepository(session).put(tenant_id, kind, key, size)
        return result

    def forget(
        self, tenant_id: str, kind: StoredObjectKind, key: str, remove: Callable[[], None]
    ) -> None:
        """``remove()`` the object and its charge in one transaction. An object already gone
        (``NotFound``) loses its charge too, and the ``NotFound`` is raised after."""
        missing: NotFound | None = None
        with self._db.transaction() as session:
            QuotaRepository(session).lock_tenant(tenant_id)
            try:
                remove()
            except NotFound as exc:
                missing = exc
            StoredObjectRepository(session).remove(tenant_id, kind, key)
        if missing is not None:
            raise missing

    def _allowance(
        self, session: Session, tenant_id: str, kind: StoredObjectKind, key: str
    ) -> StorageAllowance:
        replaced = StoredObjectRepository(session).size_of(tenant_id, kind, key) or 0
        limit = None
        if self._quotas is not None:
            value = self._quotas.limit_in(session, tenant_id, Limit.STORAGE_BYTES)
            limit = None if value is None else int(value)
        if limit is None:
            return StorageAllowance(None, 0, replaced)
        usage = QuotaRepository(session).stored_bytes(tenant_id)
        return StorageAllowance(limit, usage, replaced)
