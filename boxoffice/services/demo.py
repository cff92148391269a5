"""Demo data: one organisation with rooms, two weeks of timeslots and two accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from boxoffice.db.models import Organization, Room
from boxoffice.db.session import Db
from boxoffice.domain.availability import WeeklyBlock
from boxoffice.services import auth, offerings, providers, rooms, schedules, timeslots
from boxoffice.services.organizations import create_organization

DEMO_ORG = "demo"
# Demo accounts for a local trial; never use `boxoffice demo` data in production.
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@demo.example", "demo-admin-2026"
CUSTOMER_EMAIL, CUSTOMER_PASSWORD = "customer@demo.example", "demo-customer-2026"

_ROOMS = [
    ("Harbour meeting room", "Table for 8, screen, whiteboard", 8, "meeting", 4000, 60, 1),
    ("Quiet office", "A private office for focused work", 1, "office", 1500, 60, 1),
    ("Consultation room A", "For one-to-one consultations", 2, "consultation", 2500, 30, 1),
    # Booked through the physiotherapy service, so it has no timeslots of its own.
    ("Treatment room", "Massage table and sink", 1, "treatment", 0, None, 1),
    ("Co-working desks", "Open space with 6 bookable desks", 6, "office", 800, 240, 6),
]


# (name, weekly hours Mon-Fri as (start, end) in minutes, Saturday hours or None)
_PROVIDERS = [
    ("Dr. Ana Ruiz", [(9 * 60, 13 * 60), (15 * 60, 19 * 60)], (10 * 60, 14 * 60)),
    ("Marc Vidal", [(10 * 60, 18 * 60)], None),
]
# (name, description, duration, price minor, capacity, buffer after, needs a room of type)
_SERVICES = [
    ("Physiotherapy", "50 minutes with a physiotherapist", 50, 4500, 1, 10, "treatment"),
    ("First consultation", "A free 20-minute call to get to know you", 20, 0, 1, 0, None),
    ("Back-care class", "Small group exercises for a healthy back", 60, 1200, 4, 0, None),
]


@dataclass(frozen=True)
class DemoSummary:
    org_slug: str
    rooms: int
    timeslots_created: int


def seed_demo(db: Db, *, now: datetime, days: int = 14) -> DemoSummary:
    """Create or refresh the demo organisation; safe to run again (no duplicates)."""
    org = db.execute(select(Organization).where(Organization.slug == DEMO_ORG)).scalar_one_or_none()
    if org is None:
        org = create_organization(
            db,
            slug=DEMO_ORG,
            name="Demo Studio",
            timezone="Europe/Madrid",
            currency="EUR",
            payments_enabled=True,  # priced bookings go through the (offline) checkout
        )
        for name, description, capacity, room_type, rate, _, _ in _ROOMS:
            rooms.create_room(
                db,
                org_id=org.id,
                name=name,
                description=description,
                capacity=capacity,
                room_type=room_type,
                hourly_rate_minor=rate,
            )
        auth.create_admin(
            db, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, name="Demo Admin", org_slug=DEMO_ORG
        )
        auth.register_user(
            db, email=CUSTOMER_EMAIL, password=CUSTOMER_PASSWORD, name="Demo Customer"
        )
        _seed_appointments(db, org)
    today = now.astimezone(ZoneInfo(org.timezone)).date()
    slot_spec = {name: (slot_min, max_bookings) for name, *_, slot_min, max_bookings in _ROOMS}
    created = 0
    org_rooms = db.execute(select(Room).where(Room.org_id == org.id)).scalars().all()
    for room in org_rooms:
        slot_min, max_bookings = slot_spec.get(room.name, (60, 1))
        if slot_min is None:
            continue
        result = timeslots.generate_timeslots(
            db,
            org_id=org.id,
            room_id=room.id,
            start_date=today,
            end_date=today + timedelta(days=days - 1),
            slot_min=slot_min,
            day_start=time(9),
            day_end=time(18) if slot_min < 240 else time(17),
            weekdays=frozenset(range(1, 7)),
            max_bookings=max_bookings,
            now=now,
        )
        created += result.created
    return DemoSummary(org_slug=org.slug, rooms=len(org_rooms), timeslots_created=created)


def _seed_appointments(db: Db, org: Organization) -> None:
    """Two providers with weekly hours and three services: one needs the treatment room."""
    ids = []
    for name, weekdays, saturday in _PROVIDERS:
        provider = providers.create_provider(db, org_id=org.id, name=name, timezone=org.timezone)
        blocks = [WeeklyBlock(d, start, end) for d in range(5) for start, end in weekdays]
        if saturday is not None:
            blocks.append(WeeklyBlock(5, *saturday))
        schedules.create_schedule(db, provider, name="clinic", blocks=blocks)
        ids.append(provider.id)
    for name, description, duration, price, capacity, after, room_type in _SERVICES:
        offerings.create_service(
            db,
            org_id=org.id,
            provider_ids=ids,
            name=name,
            description=description,
            duration_min=duration,
            price_minor=price,
            capacity=capacity,
            buffer_after_min=after,
            min_notice_min=120,
            max_days_ahead=60,
            room_type=room_type,
        )
