"""The database's own refusals: the backstop behind the service-level checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from boxoffice.db import session as session_module
from boxoffice.db.models import Session
from boxoffice.db.session import Database
from boxoffice.domain.errors import Conflict
from boxoffice.services import rooms
from boxoffice.services.organizations import create_organization

START = datetime(2030, 5, 1, 10, tzinfo=UTC)


def _room(database: Database) -> tuple[uuid.UUID, uuid.UUID]:
    with database.write() as s:
        org = create_organization(s, slug="guards", name="G", timezone="UTC", currency="EUR")
        room = rooms.create_room(s, org_id=org.id, name="R", capacity=2, room_type="office")
        return org.id, room.id


def _session(
    org_id: uuid.UUID, room_id: uuid.UUID, start: datetime, minutes: int, **kw: object
) -> Session:
    return Session(
        org_id=org_id,
        room_id=room_id,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        **kw,
    )


# The exclusion constraint is PostgreSQL's; on SQLite writers are serialised instead.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_overlapping_room_sessions_are_refused_by_postgresql(database: Database) -> None:
    org_id, room_id = _room(database)
    with database.write() as s:
        s.add(_session(org_id, room_id, START, 60))
    with pytest.raises(Conflict, match="overlaps"), database.write() as s:
        s.add(_session(org_id, room_id, START + timedelta(minutes=30), 60))
    with database.write() as s:  # back to back is fine; a cancelled one does not count
        s.add(_session(org_id, room_id, START + timedelta(minutes=60), 60))
        s.add(_session(org_id, room_id, START, 60, status="canceled"))
    with database.read() as s:
        assert s.execute(text("SELECT count(*) FROM sessions")).scalar_one() == 3


@pytest.mark.parametrize("count", [-1, 3])
def test_booked_count_cannot_leave_zero_to_capacity(database: Database, count: int) -> None:
    org_id, room_id = _room(database)
    with database.write() as s:
        session = _session(org_id, room_id, START, 60, max_participants=2)
        s.add(session)
        s.flush()
        session_id = session.id
    with pytest.raises(IntegrityError), database.write() as s:
        s.execute(update(Session).where(Session.id == session_id).values(booked_count=count))


def test_end_must_follow_start(database: Database) -> None:
    org_id, room_id = _room(database)
    with pytest.raises(IntegrityError), database.write() as s:
        s.add(_session(org_id, room_id, START, 0))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_read_transactions_do_not_block_writers_on_sqlite(database: Database) -> None:
    _room(database)
    with database.read() as reader:
        reader.execute(text("SELECT count(*) FROM rooms")).scalar_one()
        # A writer gets the lock while the read transaction is open.
        with database.write() as writer:
            create_organization(writer, slug="other", name="O", timezone="UTC", currency="EUR")


def test_migrations_go_down_and_up_again(database: Database) -> None:
    from boxoffice.db import migrate

    migrate.downgrade(database.engine, "base")
    with database.read() as s:
        tables = s.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
    assert tables == 0
    migrate.upgrade(database.engine)
    _room(database)  # the schema works again, constraints included


def test_the_migrations_make_exactly_the_models_schema(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from boxoffice.db.base import Base

    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


# --- connections (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_idle_pooled_connection_that_died_is_replaced(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database.read() as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # The database dropped it while it sat in the pool (a restart, a fail-over).
    other = Database.from_url(database.engine.url.render_as_string(False), pool_size=1)
    with other.write() as s:
        assert s.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    other.dispose()
    monkeypatch.setattr(session_module, "IDLE_PING_S", 0.0)
    with database.read() as s:  # tested on the way out of the pool, replaced, answered
        assert s.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    with database.write() as s:
        assert s.execute(text("SELECT 1")).scalar_one() == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_only_an_idle_connection_is_tested_and_reads_open_no_transaction(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    real_ping = database.engine.dialect.do_ping
    monkeypatch.setattr(
        database.engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c)
    )
    started = "SELECT xact_start = query_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    with database.read() as s:
        s.execute(text("SELECT 1"))
        # Each read statement is its own transaction: none is left open between them.
        assert s.execute(text(started)).scalar_one() is True
    assert pings == []  # in use a moment ago: handed out as it is
    with database.write() as s:  # a write is one transaction, opened before its first statement
        s.execute(text("SELECT 1"))
        assert s.execute(text(started)).scalar_one() is False
    monkeypatch.setattr(session_module, "IDLE_PING_S", 0.0)
    with database.read() as s:
        s.execute(text("SELECT 1"))
    assert len(pings) == 1
