"""The declarative base and column helpers shared by every table module."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """On SQLite, where values are stored as text, one ``datetime.fromisoformat`` (C) per
        value instead of the dialect's regular expression and a second pass here: a list
        page reads five of these per job. Text it cannot read goes the dialect's way."""
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return general

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    pass
                else:
                    aware = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
                    return aware.astimezone(UTC)
            result: datetime | None = general(value) if general else value
            return result

        return process


JSONType: Any = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_foreign_key_violation(error: Exception) -> bool:
    """Whether an ``IntegrityError`` is a foreign key violation (PostgreSQL or SQLite)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) == "23503":  # psycopg: foreign_key_violation
        return True
    return "FOREIGN KEY constraint failed" in str(orig)


class AtMostEvery:
    """Lazy housekeeping: ``due()`` is true at most once per ``seconds`` (thread-safe)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        clock = time.monotonic()
        with self._lock:
            if clock < self._next:
                return False
            self._next = clock + self._seconds
            return True
