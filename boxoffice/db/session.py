"""Engines and transactions.

Every entry point (HTTP request, CLI command, worker job) opens exactly one
transaction with :meth:`Database.write` or :meth:`Database.read`; services flush
but never commit.

SQLite: WAL, a busy timeout, and every write transaction opened with
``BEGIN IMMEDIATE`` so writers are serialised and a check-then-write cannot
race; read transactions use a plain ``BEGIN`` and never take the write lock.

PostgreSQL: reads run each statement on its own (autocommit), which is what a READ
COMMITTED transaction gives a reader anyway (every statement its own snapshot) without
the BEGIN and COMMIT round trips; pooled connections are tested only after sitting
idle (:func:`_ping_when_idle`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
)
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from boxoffice.domain.errors import Busy, Conflict, InvalidInput

__all__ = ["Database", "Db"]

_READ_ONLY = "boxoffice_read_only"

# SQLSTATEs PostgreSQL uses when a concurrent transaction won.
_PG_CONFLICTS = {
    "23P01": "The time overlaps another session of the same room or provider.",
    "23505": "A record with these values already exists.",
    "23503": "Something this refers to was changed meanwhile; please retry.",
    "40001": "A concurrent change won; please retry.",
    "40P01": "A concurrent change won; please retry.",
}


def make_engine(url: str, *, pool_size: int = 16, busy_timeout_ms: int = 5000) -> Engine:
    """Create an engine configured for safe concurrent writes on either database.

    The pool has no overflow: the app runs at most ``pool_size`` request threads.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=0,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        # Instants come back in UTC, as stored, with nothing to convert per value.
        connect_args={"options": "-c timezone=UTC"},
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection unused for this long is tested before it is handed out.
IDLE_PING_S = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use if it sat idle (a restarted or failed-over
    database leaves the pool holding dead connections): a busy server's connections
    are in use again within milliseconds and skip the round trip the pool's own
    ``pool_pre_ping`` costs every request. A dead one is replaced, as with pre-ping."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            answered = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever a dead socket raises: replace the connection
            raise DisconnectionError("A pooled connection no longer answers.") from exc
        if not answered:
            raise DisconnectionError("A pooled connection no longer answers.")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """An engine plus the two kinds of transaction the entry points open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer = sessionmaker(engine, expire_on_commit=False)
        read_engine = engine.execution_options(**{_READ_ONLY: True})
        if not self.is_sqlite:
            # Reads without BEGIN and COMMIT: two round trips fewer. Each statement sees
            # what was committed when it started, as in a READ COMMITTED transaction.
            read_engine = read_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = sessionmaker(read_engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(make_engine(url, **kwargs))

    @contextmanager
    def write(self) -> Iterator[Db]:
        """One write transaction, committed on success and rolled back on any error."""
        with self._writer() as db, _translated(), db.begin():
            yield db

    @contextmanager
    def read(self) -> Iterator[Db]:
        """Reads: one transaction on SQLite (never taking the write lock), statements
        on their own on PostgreSQL."""
        with self._reader() as db, _translated(), db.begin():
            yield db

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except DBAPIError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translated() -> Iterator[None]:
    """Turn the database's refusals under concurrency into domain errors."""
    try:
        yield
    except IntegrityError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state in _PG_CONFLICTS:
            raise Conflict(_PG_CONFLICTS[state], {"sqlstate": state}) from exc
        if "UNIQUE constraint failed" in str(exc.orig):
            raise Conflict(_PG_CONFLICTS["23505"]) from exc
        raise
    except DataError as exc:
        raise InvalidInput(
            "A value cannot be stored as given.", {"sqlstate": getattr(exc.orig, "sqlstate", None)}
        ) from exc
    except OperationalError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state in _PG_CONFLICTS:
            raise Conflict(_PG_CONFLICTS[state], {"sqlstate": state}) from exc
        if "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig):
            raise Busy("The database is busy; please retry in a moment.") from exc
        raise
