"""Rooms: places booked by timeslot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Booking, Organization, Room, Session
from boxoffice.db.session import Db
from boxoffice.domain.errors import InvalidInput, NotFound

ROOM_TYPES = ("office", "consultation", "meeting", "treatment")
MAX_CAPACITY = 10_000


@dataclass(frozen=True)
class RoomFilter:
    room_type: str | None = None
    min_capacity: int | None = None
    is_active: bool | None = True
    org_slug: str | None = None


def list_rooms(db: Db, filters: RoomFilter) -> list[Room]:
    """Rooms matching the filters, by organisation and name."""
    stmt = select(Room).join(Room.organization).order_by(Organization.slug, Room.name, Room.id)
    if filters.room_type is not None:
        stmt = stmt.where(Room.room_type == check_room_type(filters.room_type))
    if filters.min_capacity is not None:
        stmt = stmt.where(Room.capacity >= filters.min_capacity)
    if filters.is_active is not None:
        stmt = stmt.where(Room.is_active == filters.is_active)
    if filters.org_slug is not None:
        stmt = stmt.where(Organization.slug == filters.org_slug)
    return list(db.execute(stmt).scalars())


def get_room(db: Db, room_id: uuid.UUID, *, org_id: uuid.UUID | None = None) -> Room:
    """A room by id; with ``org_id``, only one of that organisation's."""
    room = db.get(Room, room_id)
    if room is None or (org_id is not None and room.org_id != org_id):
        raise NotFound("Room not found.", {"roomId": str(room_id)})
    return room


def check_room_type(room_type: str) -> str:
    if room_type not in ROOM_TYPES:
        raise InvalidInput(
            f"roomType must be one of {', '.join(ROOM_TYPES)}.", {"roomType": room_type}
        )
    return room_type


def _check_values(values: dict[str, Any]) -> None:
    if "name" in values and not str(values["name"]).strip():
        raise InvalidInput("name cannot be empty.")
    if "capacity" in values and not 1 <= values["capacity"] <= MAX_CAPACITY:
        raise InvalidInput(
            f"capacity must be between 1 and {MAX_CAPACITY}.", {"capacity": values["capacity"]}
        )
    if "hourly_rate_minor" in values and values["hourly_rate_minor"] < 0:
        raise InvalidInput("hourlyRate cannot be negative.")
    if "room_type" in values:
        check_room_type(values["room_type"])


def create_room(db: Db, *, org_id: uuid.UUID, **values: Any) -> Room:
    """Create a room in the organisation.

    ``values``: name, description, capacity, room_type, hourly_rate_minor,
    is_active, metadata_.
    """
    _check_values(values)
    room = Room(org_id=org_id, **values)
    db.add(room)
    db.flush()
    return room


def update_room(db: Db, room_id: uuid.UUID, *, org_id: uuid.UUID, **changes: Any) -> Room:
    """Change some of a room's fields (the same names as :func:`create_room`)."""
    room = get_room(db, room_id, org_id=org_id)
    _check_values(changes)
    for name, value in changes.items():
        setattr(room, name, value)
    db.flush()
    return room


def delete_room(db: Db, room_id: uuid.UUID, *, org_id: uuid.UUID) -> Room | None:
    """Delete a room, or deactivate it if any booking refers to it.

    A room with bookings keeps its history: it is deactivated (no new bookings;
    existing ones stand) and returned. A room never booked is deleted with its
    timeslots, and None is returned.
    """
    room = get_room(db, room_id, org_id=org_id)
    # Lock the room's sessions so no booking can take a seat between check and delete.
    db.execute(for_update(db, select(Session.id).where(Session.room_id == room.id)))
    has_bookings = db.execute(
        select(exists().where(Booking.session_id == Session.id, Session.room_id == room.id))
    ).scalar_one()
    if has_bookings:
        room.is_active = False
        db.flush()
        return room
    db.execute(delete(Session).where(Session.room_id == room.id))
    db.delete(room)
    db.flush()
    return None
