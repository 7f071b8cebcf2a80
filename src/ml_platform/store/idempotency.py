"""Idempotency keys: one row per (tenant, route, key), claimed atomically by INSERT.

A row is *in flight* while ``status`` is NULL and *completed* once the response is stored.
The HTTP side (``ml_platform.api.idempotency``) claims before the request runs, then either
completes the row with the response or releases it (5xx, 429, anything it must not replay).
Rows live ``ttl`` (24 h); expired rows are ignored, taken over by a new claim, and purged
lazily. An in-flight claim holds a ``lease`` (60 s) that its server renews while the request
runs (``extend``); a claim whose lease passed (its server died mid-request) is taken over by
the next request, so a crash blocks a key for about a minute, never for a whole day.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from ml_platform.store.base import AtMostEvery, Base, JSONType, UTCDateTime, utcnow
from ml_platform.store.db import Database

DEFAULT_TTL = timedelta(hours=24)
DEFAULT_LEASE = timedelta(seconds=60)
PURGE_INTERVAL_SECONDS = 60.0
_CLAIM_ATTEMPTS = 5


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "route_digest", "key", name="uq_idempotency_keys_tenant_route_key"
        ),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # sha256 of "METHOD path" (paths have no length limit; the unique index must)
    route_digest: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    route: Mapped[str] = mapped_column(Text)
    claim: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[Any] = mapped_column(JSONType, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


@dataclass(frozen=True)
class StoredResponse:
    """A completed request: what its replay answers, and what identified its request."""

    fingerprint: str
    request_bytes: int
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """Ours: the request may run; ``token`` proves it when completing or releasing."""

    row_id: int
    token: str


@dataclass(frozen=True)
class InFlight:
    """Another request holds the key and has not finished."""


@dataclass(frozen=True)
class Completed:
    response: StoredResponse


ClaimOutcome = Claim | InFlight | Completed


def route_digest(method: str, path: str) -> str:
    return hashlib.sha256(f"{method.upper()} {path}".encode("utf-8", "surrogatepass")).hexdigest()


class IdempotencyStore:
    """The database side of ``Idempotency-Key``; every method is one short transaction."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: timedelta = DEFAULT_TTL,
        lease: timedelta = DEFAULT_LEASE,
        purge_interval_seconds: float = PURGE_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self.ttl = ttl
        self.lease = lease
        self._purge = AtMostEvery(purge_interval_seconds)

    # -- claiming ---------------------------------------------------------------------------
    def claim(self, tenant_id: str, method: str, path: str, key: str) -> ClaimOutcome:
        """Insert the claim row; if one exists, report it (or take it over when it is dead)."""
        self._maybe_purge()
        digest = route_digest(method, path)
        for _ in range(_CLAIM_ATTEMPTS):
            now = utcnow()
            token = secrets.token_hex(16)
            row_id = self._insert(tenant_id, digest, key, f"{method.upper()} {path}", token, now)
            if row_id is not None:
                return Claim(row_id=row_id, token=token)
            existing = self._existing(tenant_id, digest, key)
            if existing is None:
                continue  # released or purged between our INSERT and SELECT: try again
            if existing.expires_at > now and (
                existing.status is not None or existing.locked_until > now
            ):
                if existing.status is None:
                    return InFlight()
                return Completed(_stored(existing))
            # expired, or an abandoned in-flight claim: take it over if nobody else did
            if self._take_over(existing.id, existing.claim, token, now):
                return Claim(row_id=existing.id, token=token)
        # the key changed hands on every attempt: someone holds it right now
        return InFlight()

    def _insert(
        self, tenant_id: str, digest: str, key: str, route: str, token: str, now: datetime
    ) -> int | None:
        values = {
            "tenant_id": tenant_id,
            "route_digest": digest,
            "key": key,
            "route": route,
            "claim": token,
            "created_at": now,
            "locked_until": now + self.lease,
            "expires_at": now + self.ttl,
        }
        insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        statement = (
            insert(IdempotencyKeyRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["tenant_id", "route_digest", "key"])
            .returning(IdempotencyKeyRow.id)
        )
        with self._db.transaction() as session:
            inserted = session.execute(statement).scalar_one_or_none()
        return int(inserted) if inserted is not None else None

    def _existing(self, tenant_id: str, digest: str, key: str) -> IdempotencyKeyRow | None:
        with self._db.read() as session:
            return session.scalars(
                select(IdempotencyKeyRow).where(
                    IdempotencyKeyRow.tenant_id == tenant_id,
                    IdempotencyKeyRow.route_digest == digest,
                    IdempotencyKeyRow.key == key,
                )
            ).one_or_none()

    def _take_over(self, row_id: int, old_token: str, token: str, now: datetime) -> bool:
        statement = (
            update(IdempotencyKeyRow)
            .where(
                IdempotencyKeyRow.id == row_id,
                IdempotencyKeyRow.claim == old_token,
                or_(
                    IdempotencyKeyRow.expires_at <= now,
                    and_(
                        IdempotencyKeyRow.status.is_(None),
                        IdempotencyKeyRow.locked_until <= now,
                    ),
                ),
            )
            .values(
                claim=token,
                fingerprint=None,
                request_bytes=None,
                status=None,
                response_headers=None,
                response_body=None,
                created_at=now,
                locked_until=now + self.lease,
                expires_at=now + self.ttl,
                completed_at=None,
            )
        )
        with self._db.transaction() as session:
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    # -- finishing --------------------------------------------------------------------------
    def complete(self, claim: Claim, response: StoredResponse) -> bool:
        """Store the response under our claim; False when the claim was lost meanwhile."""
        statement = (
            update(IdempotencyKeyRow)
            .where(IdempotencyKeyRow.id == claim.row_id, IdempotencyKeyRow.claim == claim.token)
            .values(
                fingerprint=response.fingerprint,
                request_bytes=response.request_bytes,
                status=response.status,
                response_headers=[list(h) for h in response.headers],
                response_body=response.body,
                completed_at=utcnow(),
            )
        )
        with self._db.transaction() as session:
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def extend(self, claim: Claim) -> bool:
        """Renew the lease of our in-flight claim; False when it is no longer ours."""
        statement = (
            update(IdempotencyKeyRow)
            .where(
                IdempotencyKeyRow.id == claim.row_id,
                IdempotencyKeyRow.claim == claim.token,
                IdempotencyKeyRow.status.is_(None),
            )
            .values(locked_until=utcnow() + self.lease)
        )
        with self._db.transaction() as session:
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def release(self, claim: Claim) -> None:
        """Forget our claim: the next request with this key runs afresh."""
        statement = delete(IdempotencyKeyRow).where(
            IdempotencyKeyRow.id == claim.row_id, IdempotencyKeyRow.claim == claim.token
        )
        with self._db.transaction() as session:
            session.execute(statement)

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, now: datetime | None = None) -> int:
        statement = delete(IdempotencyKeyRow).where(
            IdempotencyKeyRow.expires_at <= (now or utcnow())
        )
        with self._db.transaction() as session:
            return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def _maybe_purge(self) -> None:
        if self._purge.due():
            self.purge_expired()


def _stored(row: IdempotencyKeyRow) -> StoredResponse:
    assert row.status is not None
    headers = [(str(name), str(value)) for name, value in (row.response_headers or [])]
    return StoredResponse(
        fingerprint=row.fingerprint or "",
        request_bytes=row.request_bytes or 0,
        status=row.status,
        headers=headers,
        body=row.response_body or b"",
    )
