"""Fixed interleavings of two transactions on PostgreSQL, where row locks make one
wait for the other: the waiter must see the winner's committed state."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, time

import pytest
from sqlalchemy import select

from boxoffice.db.models import Booking, Session
from boxoffice.db.session import Database, Db
from boxoffice.domain.errors import SlotUnavailable
from boxoffice.services import auth, bookings, rooms, timeslots
from boxoffice.services.organizations import create_organization

NOW = datetime(2030, 3, 4, 9, tzinfo=UTC)
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _seed(database: Database) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    with database.write() as s:
        org = create_organization(s, slug="race", name="R", timezone="UTC", currency="EUR")
        user = auth.register_user(s, email="a@race.example", password="x" * 10, name="A")
        room = rooms.create_room(s, org_id=org.id, name="R", capacity=4, room_type="meeting")
        timeslots.generate_timeslots(
            s,
            org_id=org.id,
            room_id=room.id,
            start_date=date(2030, 3, 5),
            end_date=date(2030, 3, 5),
            slot_min=60,
            day_start=time(9),
            day_end=time(12),
            weekdays=None,
            max_bookings=2,
            now=NOW,
        )
        ids = (
            s.execute(
                select(Session.id).where(Session.room_id == room.id).order_by(Session.start_at)
            )
            .scalars()
            .all()
        )
        return org.id, user.id, room.id, list(ids)


def _book(s: Db, user_id: uuid.UUID, slot_id: uuid.UUID) -> Booking:
    return bookings.create_booking(
        s,
        user_id=user_id,
        timeslot_id=slot_id,
        room_id=None,
        notes="",
        idempotency_key=None,
        now=NOW,
    )[0]


def _while_holding(database: Database, first, second) -> object:
    """Run ``first`` in a transaction, start ``second`` (which waits for its locks),
    commit ``first``, and return what ``second`` returned or raised."""
    result: dict[str, object] = {}
    started = threading.Event()

    def run_second() -> None:
        try:
            with database.write() as s:
                started.set()
                result["value"] = second(s)
        except Exception as exc:
            result["value"] = exc

    with database.write() as s:
        first(s)
        thread = threading.Thread(target=run_second)
        thread.start()
        started.wait()
        thread.join(timeout=0.5)  # it is blocked on our row lock
        assert thread.is_alive()
    thread.join(timeout=30)
    return result["value"]


def test_a_cancel_waiting_behind_a_reschedule_cancels_the_new_seat(database: Database) -> None:
    _, user_id, _, slots = _seed(database)
    owner = bookings.Owner(user_id=user_id)
    with database.write() as s:
        booking_id = _book(s, user_id, slots[0]).id
    outcome = _while_holding(
        database,
        lambda s: bookings.reschedule_booking(
            s, booking_id, owner, timeslot_id=slots[1], actor_id=user_id, now=NOW
        ),
        lambda s: (
            bookings.cancel_booking(
                s, booking_id, owner, actor_id=user_id, reason="", by_organiser=False, now=NOW
            )[0].status
        ),
    )
    assert outcome == "cancelled"
    with database.read() as s:
        assert [s.get(Session, i).booked_count for i in slots] == [0, 0, 0]


def test_booking_a_timeslot_whose_room_was_just_deleted_is_a_409(database: Database) -> None:
    org_id, user_id, room_id, slots = _seed(database)
    outcome = _while_holding(
        database,
        lambda s: rooms.delete_room(s, room_id, org_id=org_id),
        lambda s: _book(s, user_id, slots[0]),
    )
    assert isinstance(outcome, SlotUnavailable)
