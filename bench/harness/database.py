"""The database: a fresh one per run, migrated on request; counts and the seat audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from boxoffice.db.migrate import upgrade
from boxoffice.db.session import Database
from boxoffice.domain import bookings as domain_bookings
from harness import log

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-password-123"  # of every user the benchmarks create
SEAT_HOLDING = sorted(status.value for status in domain_bookings.SEAT_HOLDING)


@contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``base_url``; dropped on the way out."""
    admin = create_engine(
        base_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"boxoffice_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        log(f"created database {name}")
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        log(f"dropped database {name}")


@contextmanager
def migrated_database(db_url: str, pool_size: int = 2) -> Iterator[Database]:
    """The project's ``Database`` on ``db_url``, migrated to the latest revision first."""
    database = Database.from_url(db_url, pool_size=pool_size)
    try:
        upgrade(database.engine)
        yield database
    finally:
        database.dispose()


@contextmanager
def connected_engine(db_url: str, pool_size: int = 1) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on ``db_url`` (audits, counts), disposed on the way out."""
    engine = create_engine(db_url, pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()


def select_count(engine: Engine, sql: str) -> int:
    """The single integer a ``SELECT count(*) ...`` returns."""
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def seat_audit(engine: Engine) -> dict[str, int]:
    """Every session's seat-holding bookings against its counters.

    ``overbooked_seats`` sums the seats held beyond ``max_participants``; ``mismatched``
    counts sessions whose ``booked_count`` differs from their seat-holding bookings.
    Both must be 0.
    """
    holding = ", ".join(f"'{x}'" for x in SEAT_HOLDING)
    sql = text(
        f"""
        SELECT count(*) AS sessions,
               coalesce(sum(held), 0) AS seats_held,
               coalesce(sum(greatest(held - max_participants, 0)), 0) AS overbooked_seats,
               count(*) FILTER (WHERE held > max_participants) AS overbooked_sessions,
               count(*) FILTER (WHERE held <> booked_count) AS mismatched
        FROM (
            SELECT s.max_participants, s.booked_count,
                   count(b.id) FILTER (WHERE b.status IN ({holding})) AS held
            FROM sessions s LEFT JOIN bookings b ON b.session_id = s.id
            GROUP BY s.id, s.max_participants, s.booked_count
        ) AS t
        """
    )
    with engine.connect() as conn:
        row = conn.execute(sql).mappings().one()
    return {k: int(v) for k, v in row.items()}
