"""The bytes each tenant keeps in the object store outside the model registry.

One ``stored_objects`` row per object a tenant is charged for (migration 0015_stored_objects):
a data-area file (kind ``data``, key ``data/<path>``) or a code package the tenant owns (kind
``code_package``, key ``sha256:<hex>``, at its archive size: a blob shared by two tenants is
charged to each). Model artifacts are not here: their size is on their version row
(``ModelVersionRow.size_bytes``), the one record of each. Rows are written in the flow that
publishes or deletes the object (``ml_platform.governance.storage_ledger``).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import BigInteger, ForeignKey, String, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ml_platform.store.base import Base, UTCDateTime, utcnow

__all__ = ["StoredObjectKind", "StoredObjectRepository", "StoredObjectRow"]

MAX_KEY_LENGTH = 1100  # "data/" and a data path of at most 1024 UTF-8 bytes


class StoredObjectKind(str, Enum):
    DATA = "data"
    CODE_PACKAGE = "code_package"


class StoredObjectRow(Base):
    __tablename__ = "stored_objects"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # when the object's current content was published (an overwrite moves it)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoredObjectRepository:
    """Reads and writes of ``stored_objects``; callers scope by tenant."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def size_of(self, tenant_id: str, kind: StoredObjectKind, key: str) -> int | None:
        """The bytes the tenant is charged for this object, or None when it has no row."""
        size = self._session.scalar(
            select(StoredObjectRow.size_bytes).where(
                StoredObjectRow.tenant_id == tenant_id,
                StoredObjectRow.kind == kind.value,
                StoredObjectRow.key == key,
            )
        )
        return None if size is None else int(size)

    def total(self, tenant_id: str) -> int:
        """Every byte charged to the tenant here (all kinds)."""
        return int(
            self._session.scalar(
                select(func.coalesce(func.sum(StoredObjectRow.size_bytes), 0)).where(
                    StoredObjectRow.tenant_id == tenant_id
                )
            )
            or 0
        )

    def put(self, tenant_id: str, kind: StoredObjectKind, key: str, size_bytes: int) -> None:
        """Insert the row, or replace its size (an overwrite): one statement, no race with a
        concurrent writer of the same key."""
        dialect = self._session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(StoredObjectRow).values(
            tenant_id=tenant_id,
            kind=kind.value,
            key=key,
            size_bytes=size_bytes,
            created_at=utcnow(),
        )
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "kind", "key"],
            set_={
                "size_bytes": statement.excluded.size_bytes,
                "created_at": statement.excluded.created_at,
            },
        )
        self._session.execute(statement)

    def remove(self, tenant_id: str, kind: StoredObjectKind, key: str) -> None:
        self._session.execute(
            delete(StoredObjectRow).where(
                StoredObjectRow.tenant_id == tenant_id,
                StoredObjectRow.kind == kind.value,
                StoredObjectRow.key == key,
            )
        )
