"""Engine, sessions and migrations for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from ml_platform.core.errors import Unavailable
from ml_platform.store.crypto import SecretBox

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def ensure_private_dir(path: Path, *, traversable: bool = False) -> Path:
    """Create ``path`` (and parents) if missing; the directory itself is 0700 when this call
    creates it, or 0711 when ``traversable`` (jobs running as ``ML_PLATFORM_JOB_USER`` must
    reach their work directories inside it; they still cannot list it, and the database and
    keys in it are 0600). An existing directory keeps its mode, except that ``traversable``
    adds the search bits the job user needs."""
    path = Path(path)
    mode = 0o711 if traversable else 0o700
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        path.chmod(mode)
    elif traversable:
        current = path.stat().st_mode & 0o777
        if current & 0o011 != 0o011:
            logger.info("making %s traversable (o+x) for the job user", path)
            path.chmod(current | 0o011)
    return path


def ensure_private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing, and take group/other access away if it has any (the
    SQLite file holds secrets; SQLite gives its -wal/-shm files the database file's mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # not ours to create or change: SQLite reports what it cannot open
        return
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:
            os.fchmod(fd, mode & 0o700)
    finally:
        os.close(fd)


def _json_loads(text: str | bytes) -> Any:
    """JSON columns read with orjson (a list page decodes a spec and metrics per job; the
    standard library took most of a page's read); text orjson refuses, such as ``NaN``,
    which the standard library's encoder writes, is read by the standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# A pooled connection back in use within this many seconds is not pinged first
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a PostgreSQL connection before use only if it sat idle in the pool, where a
    server restart or an idle timeout can have closed it; a dead one is replaced before the
    caller sees it (``DisconnectionError``: the pool retries with a new connection).

    ``pool_pre_ping`` pinged on every checkout: one round trip more per request (a third of
    ``GET /v1/me``). A connection returned less than ``PING_AFTER_IDLE_SECONDS`` ago was
    working then; one the server dropped in between fails that one statement."""

    def on_checkin(_dbapi: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    def on_checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


@contextmanager
def _lost_connection_is_unavailable() -> Iterator[None]:
    """A connection that died under a statement (the server restarted or dropped it less
    than ``PING_AFTER_IDLE_SECONDS`` after its last use) is ``Unavailable`` (503, retry):
    the pool has already replaced it, so the retry runs on a live one."""
    try:
        yield
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise Unavailable("the database connection was lost; retry the request") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """Owns the engine and hands out sessions; one per process.

    ``secrets`` (set by the composition root) is the key repositories encrypt secrets at
    rest with; every session carries it in ``session.info["secrets"]``.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = _normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_deserializer": _json_loads}
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                ensure_private_dir(Path(database).parent)
                ensure_private_file(Path(database))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            _ping_idle_connections(self.engine)
        self._info: dict[str, object] = {}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=self._info)
        # PostgreSQL reads without BEGIN / ROLLBACK: two round trips fewer per read, and the
        # same view of the data, since under READ COMMITTED every statement takes its own
        # snapshot inside a transaction too. pysqlite never opens one for a SELECT anyway.
        readers = (
            self.engine
            if self.dialect == "sqlite"
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._readers = sessionmaker(readers, expire_on_commit=False, info=self._info)

    @property
    def secrets(self) -> SecretBox | None:
        box = self._info.get("secrets")
        return box if isinstance(box, SecretBox) else None

    @secrets.setter
    def secrets(self, box: SecretBox | None) -> None:
        self._info["secrets"] = box

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with _lost_connection_is_unavailable(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; writes belong in ``transaction()`` (on PostgreSQL this one
        runs in autocommit: each statement stands alone)."""
        with _lost_connection_is_unavailable(), self._readers() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self, revision: str = "heads") -> None:
        """Apply Alembic migrations up to ``revision`` (all branches by default)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["engine"] = self.engine
        command.upgrade(config, revision)

    def dispose(self) -> None:
        self.engine.dispose()
