"""PostgreSQL connections from the pool (issue 15: round trips per request): reads open no
transaction, and a connection the server dropped while it sat in the pool is replaced
before anyone uses it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from ml_platform.core.errors import Unavailable
from ml_platform.store import db as db_module
from ml_platform.store.db import Database


@pytest.fixture
def db(database_url_factory: Any) -> Iterator[Database]:
    database = Database(database_url_factory("postgres"))
    yield database
    database.dispose()


def _backend_pid(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_read_opens_no_transaction(db: Database) -> None:
    with db.read() as session:
        session.execute(text("SELECT 1")).scalar_one()
        driver = session.connection().connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        assert driver.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    with db.transaction() as session:  # writes still get their transaction
        session.execute(text("SELECT 1")).scalar_one()
        driver = session.connection().connection.driver_connection
        assert driver.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS


@pytest.mark.parametrize("use", ["read", "transaction"])
def test_a_connection_the_server_dropped_while_idle_is_replaced_unseen(
    db: Database, use: str
) -> None:
    first = _backend_pid(db)
    with psycopg.connect(
        db.engine.url.set(drivername="postgresql").render_as_string(False)
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))  # waits for the exit
    time.sleep(db_module.PING_AFTER_IDLE_SECONDS + 0.2)
    opened = db.read() if use == "read" else db.transaction()
    with opened as session:
        second = int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
    assert second != first


def test_a_connection_dropped_right_after_use_fails_one_request_as_unavailable(
    db: Database,
) -> None:
    """Inside the no-ping window the drop is seen by the statement: a 503 to retry (never a
    500), and the retry runs on a new connection."""
    first = _backend_pid(db)
    with psycopg.connect(
        db.engine.url.set(drivername="postgresql").render_as_string(False)
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))  # waits for the exit
    with pytest.raises(Unavailable, match="database connection was lost; retry"):
        _backend_pid(db)
    assert _backend_pid(db) != first
