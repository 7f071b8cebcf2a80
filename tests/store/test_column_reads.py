"""How the store reads its columns back (issue 15: a list page reads five datetimes and two
JSON documents per job, so both have their own fast readers): whatever the store wrote, and
what SQLite's own functions or older code wrote, reads back as the same value, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from ml_platform.store.base import JSONType, UTCDateTime
from ml_platform.store.db import Database

_METADATA = MetaData()
_PROBE = Table(
    "column_read_probe",
    _METADATA,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=True),
    Column("doc", JSONType, nullable=True),
)

_ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
)
_AWARE = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=_ZONES
)
# jsonb holds no NUL character and no lone surrogate ("Unicode low surrogate must follow a
# high surrogate"); the API refuses both in every text it stores (``SafeStr``, JsonObject)
_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    # PostgreSQL's jsonb keeps numbers as numeric: beyond 1e15 a float may come back as the
    # integer it prints as (with any reader), so floats stay within what it keeps exactly
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, database_url_factory: Any) -> Iterator[Database]:
    database = Database(database_url_factory(request.param))
    _METADATA.create_all(database.engine)
    yield database
    database.dispose()


def _write_and_read(db: Database, **values: Any) -> Any:
    with db.transaction() as session:
        session.execute(_PROBE.delete())
        session.execute(insert(_PROBE).values(id=1, **values))
    with db.read() as session:
        return session.execute(select(_PROBE.c.at, _PROBE.c.doc)).one()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(at=_AWARE)
def test_a_written_datetime_reads_back_as_the_same_instant_in_utc(
    db: Database, at: datetime
) -> None:
    read = _write_and_read(db, at=at).at
    assert read == at
    assert read.tzinfo is UTC or read.utcoffset() == timedelta(0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_JSON)
def test_a_written_json_document_reads_back_equal(db: Database, doc: Any) -> None:
    assert _write_and_read(db, doc=doc).doc == doc


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        # what SQLAlchemy writes, what CURRENT_TIMESTAMP writes, ISO 8601 with T and offset
        ("2026-01-01 00:16:39.830000", datetime(2026, 1, 1, 0, 16, 39, 830000, tzinfo=UTC)),
        ("2026-01-01 00:16:39", datetime(2026, 1, 1, 0, 16, 39, tzinfo=UTC)),
        ("2026-01-01T01:16:39+01:00", datetime(2026, 1, 1, 0, 16, 39, tzinfo=UTC)),
    ],
)
def test_sqlite_datetime_text_in_every_form_it_is_written_reads_right(
    database_url_factory: Any, stored: str, expected: datetime
) -> None:
    db = Database(database_url_factory("sqlite"))
    try:
        _METADATA.create_all(db.engine)
        with db.transaction() as session:
            session.execute(
                text("INSERT INTO column_read_probe (id, at) VALUES (1, :at)"), {"at": stored}
            )
        with db.read() as session:
            read = session.execute(select(_PROBE.c.at)).scalar_one()
        assert read == expected
        assert read.utcoffset() == timedelta(0)
    finally:
        db.dispose()


def test_json_the_standard_library_wrote_with_nan_still_reads(database_url_factory: Any) -> None:
    """``json.dumps`` writes NaN and Infinity, which strict JSON readers (orjson) refuse: a
    document an older version stored that way must still read, not fail the whole list."""
    db = Database(database_url_factory("sqlite"))
    try:
        _METADATA.create_all(db.engine)
        stored = json.dumps({"loss": math.nan, "best": math.inf, "acc": 0.5})
        with db.transaction() as session:
            session.execute(
                text("INSERT INTO column_read_probe (id, doc) VALUES (1, :doc)"), {"doc": stored}
            )
        with db.read() as session:
            doc = session.execute(select(_PROBE.c.doc)).scalar_one()
        assert math.isnan(doc["loss"]) and doc["best"] == math.inf and doc["acc"] == 0.5
    finally:
        db.dispose()
