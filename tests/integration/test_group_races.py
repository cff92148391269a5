"""Races for group sessions against a live server (`boxoffice serve --workers 2`):
real processes, real HTTP, all requests released together."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from boxoffice.db.models import Booking, Session, User
from boxoffice.db.session import Database
from boxoffice.services import auth, courses, sessions
from boxoffice.services.organizations import create_organization
from tests.conftest import PASSWORD
from tests.integration.test_concurrency import (
    _fire,
    _request,
    _seats_match_bookings,
    live_server,
)

__all__ = ["live_server"]  # the fixture, imported for pytest


def _customers(database: Database, base: str, n: int) -> list[dict[str, str]]:
    """``n`` accounts (one password hash for all, to spare the time) signed in at once."""
    emails = [f"r{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(n)]
    with database.write() as s:
        first = auth.register_user(s, email=emails[0], password=PASSWORD, name="Racer")
        for email in emails[1:]:
            s.add(User(email=email, name="Racer", password_hash=first.password_hash))

    def sign_in(email: str) -> dict[str, str]:
        status, token = _request(
            base, "POST", "/api/v1/auth/token", {"email": email, "password": PASSWORD}
        )
        assert status == 200, token
        return {"Authorization": f"Bearer {token['accessToken']}"}

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(sign_in, emails))


def test_100_customers_race_for_a_25_seat_workshop(database: Database, live_server: str) -> None:
    now = datetime.now(UTC)
    with database.write() as s:
        org = create_organization(s, slug="race", name="Race", timezone="UTC", currency="EUR")
        workshop = sessions.create_session(
            s,
            org_id=org.id,
            now=now,
            title="Pottery",
            start_at=now + timedelta(days=2),
            end_at=now + timedelta(days=2, hours=2),
            max_participants=25,
        )
        workshop_id = str(workshop.id)
    customers = _customers(database, live_server, 100)
    results = _fire(
        live_server, [("/api/v1/bookings", {"sessionId": workshop_id}, c) for c in customers]
    )
    codes = Counter(status for status, _ in results)
    assert codes == {201: 25, 409: 75}, results
    assert {body["error"]["code"] for status, body in results if status == 409} == {"slot_full"}
    with database.read() as s:
        held = s.execute(
            select(func.count()).where(
                Booking.session_id == workshop.id, Booking.status == "confirmed"
            )
        ).scalar_one()
        assert held == 25
        assert s.get(Session, workshop.id).booked_count == 25  # type: ignore[union-attr]
    _seats_match_bookings(database)


def test_enrolments_racing_single_bookings_never_leave_a_partial_enrolment(
    database: Database, live_server: str
) -> None:
    now = datetime.now(UTC)
    with database.write() as s:
        org = create_organization(s, slug="race", name="Race", timezone="UTC", currency="EUR")
        course, parts = courses.create_course(
            s,
            org_id=org.id,
            dates=courses.Dates(
                duration=timedelta(hours=1),
                starts=tuple(now + timedelta(days=d) for d in (3, 10, 17)),
            ),
            now=now,
            title="Yoga",
            max_participants=5,
            drop_in_price_minor=0,
        )
        course_id, middle = str(course.id), str(parts[1].id)
        part_ids = [p.id for p in parts]
    customers = _customers(database, live_server, 30)
    calls = [
        (f"/api/v1/courses/{course_id}/enroll", {}, c) if i % 2 == 0 else
        ("/api/v1/bookings", {"sessionId": middle}, c)
        for i, c in enumerate(customers)
    ]  # fmt: skip
    results = _fire(live_server, calls)
    enrolled = [r for i, r in enumerate(results) if i % 2 == 0 and r[0] == 201]
    dropped_in = [r for i, r in enumerate(results) if i % 2 == 1 and r[0] == 201]
    assert {status for status, _ in results} <= {201, 409}, results
    # The middle session has 5 seats for both kinds of request together.
    assert len(enrolled) + len(dropped_in) == 5, results
    assert all(len(body["bookings"]) == 3 for _, body in enrolled)
    with database.read() as s:
        per_user = Counter(
            s.execute(
                select(Booking.user_id).where(
                    Booking.session_id.in_(part_ids), Booking.status == "confirmed"
                )
            ).scalars()
        )
        counts = dict(
            s.execute(
                select(Session.id, Session.booked_count).where(Session.id.in_(part_ids))
            ).all()
        )
    # Each customer holds 3 seats (enrolled) or 1 (dropped in), never a part of a course.
    expected = Counter({3: len(enrolled), 1: len(dropped_in)})
    assert Counter(per_user.values()) == +expected
    assert counts[parts[1].id] == 5
    assert counts[parts[0].id] == counts[parts[2].id] == len(enrolled)
    _seats_match_bookings(database)
