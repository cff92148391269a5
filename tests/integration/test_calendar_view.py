"""The organiser's calendar, ``GET /api/v1/calendar``: every session of the organisation
overlapping a window, with counts and attendees, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from boxoffice.api import calendar_schemas
from boxoffice.api.calendar_schemas import CalendarOut
from boxoffice.db.models import Course, Organization, Session, User
from boxoffice.db.session import Database
from boxoffice.services import auth, bookings, calendar_view, sessions
from boxoffice.services.bookings import Customer
from tests.conftest import Api, Clock

URL = "/api/v1/calendar"
FROM, TO = "2030-03-05T00:00:00Z", "2030-03-12T00:00:00Z"  # a week
T0 = datetime(2030, 3, 5, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 3, day, hour, minute, tzinfo=UTC)


def user_id(database: Database, email: str) -> uuid.UUID:
    with database.read() as s:
        return s.execute(select(User.id).where(User.email == email)).scalar_one()


def org_id(database: Database, slug: str) -> uuid.UUID:
    with database.read() as s:
        return s.execute(select(Organization.id).where(Organization.slug == slug)).scalar_one()


def add_session(database: Database, slug: str, **fields: Any) -> uuid.UUID:
    """A group session made by the organiser (no room needed), as the sessions API would."""
    values = {"kind": "workshop", "status": "scheduled", "max_participants": 25} | fields
    with database.write() as s:
        session = Session(org_id=org_id(database, slug), **values)
        s.add(session)
        s.flush()
        return session.id


def take_seats(
    database: Database, session_id: uuid.UUID, *who: uuid.UUID | Customer, now: datetime
) -> list[uuid.UUID]:
    """One booking per account or guest in the session, as a customer's booking would."""
    made = []
    with database.write() as s:
        session = s.get(Session, session_id)
        assert session is not None
        for i, person in enumerate(who):
            assert bookings.try_take_seat(s, session)
            booking = bookings.add_booking(
                s,
                session,
                currency="EUR",
                notes="",
                now=now + timedelta(seconds=i),
                user_id=person if isinstance(person, uuid.UUID) else None,
                customer=person if isinstance(person, Customer) else None,
            )
            made.append(booking.id)
    return made


def get(api: Api, headers: dict[str, str], expect: int = 200, **params: Any) -> Any:
    r = api.client.get(URL, params={"from": FROM, "to": TO} | params, headers=headers)
    assert r.status_code == expect, (params, r.text)
    return r.json()


@dataclass
class World:
    admin: dict[str, str]
    room_a: dict[str, Any]
    room_b: dict[str, Any]
    provider: dict[str, Any]
    ids: dict[str, str]  # what each session is called here -> its id
    bookings: dict[str, str]  # who booked what -> booking id


@pytest.fixture
def world(api: Api, database: Database, clock: Clock) -> World:
    """Acme (Europe/Madrid, UTC+1 in March) with two rooms' timeslots, a workshop, a course,
    and sessions at the edges of the week of 5 March 2030; and another organisation."""
    api.org()
    api.org("other")
    admin = api.user(org="acme")
    carla = api.user("carla@example.com")
    dan = api.user("dan@example.com")
    erin = api.user("erin@example.com")
    room_a = api.room(admin, name="Studio A")  # free: bookings are confirmed at once
    room_b = api.room(admin, name="Studio B", hourlyRate=30)  # paid online: pending
    api.generate(admin, room_a["id"], maxBookings=3)  # 08:00, 09:00, 10:00 UTC
    api.generate(admin, room_b["id"], workingHours={"start": "09:00", "end": "10:00"})
    a1, a2, _ = (t["id"] for t in api.timeslots(room_a["id"], date="2030-03-05"))
    [b1] = (t["id"] for t in api.timeslots(room_b["id"], date="2030-03-05"))
    booked = {}
    for key, who, slot in (
        ("carla@a1", carla, a1),
        ("dan@a1", dan, a1),
        ("erin@a2", erin, a2),
        ("carla@b1", carla, b1),
    ):
        clock.advance(minutes=1)  # attendees are listed oldest booking first
        booked[key] = api.booked(who, slot)["id"]
    r = api.client.put(
        f"/api/v1/admin/bookings/{booked['erin@a2']}/status",
        json={"status": "cancelled"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = api.client.post("/api/v1/admin/providers", json={"name": "Dr Clay"}, headers=admin)
    assert r.status_code == 201, r.text
    provider = r.json()

    ids = {"a1": a1, "a2": a2, "b1": b1}
    workshop = add_session(
        database,
        "acme",
        title="Pottery",
        start_at=at(6, 10),
        end_at=at(6, 12),
        provider_id=uuid.UUID(provider["id"]),
    )
    ids["workshop"] = str(workshop)
    carla_id, dan_id = user_id(database, "carla@example.com"), user_id(database, "dan@example.com")
    gail = Customer(name="Gail Guest", email="gail@example.com")
    for key, booking_id in zip(
        ("carla@workshop", "gail@workshop"),
        take_seats(database, workshop, carla_id, gail, now=clock.now),
        strict=True,
    ):
        booked[key] = str(booking_id)
    with database.write() as s:
        course = Course(
            org_id=org_id(database, "acme"),
            title="Yoga",
            timezone="Europe/Madrid",
            max_participants=10,
            currency="EUR",
        )
        s.add(course)
        s.flush()
        course_id = course.id
    ids["course_id"] = str(course_id)
    for n, day in ((1, 7), (2, 14)):
        ids[f"yoga{n}"] = str(
            add_session(
                database,
                "acme",
                kind="course",
                title="Yoga",
                course_id=course_id,
                sequence_no=n,
                start_at=at(day, 18),
                end_at=at(day, 19),
                max_participants=10,
            )
        )
        take_seats(database, uuid.UUID(ids[f"yoga{n}"]), dan_id, now=clock.now)
    ids["canceled"] = str(
        add_session(
            database,
            "acme",
            title="Rained off",
            start_at=at(6, 14),
            end_at=at(6, 15),
            status="canceled",
        )
    )
    # A six-day retreat that began before the window and runs into it.
    ids["retreat"] = str(
        add_session(database, "acme", title="Retreat", start_at=at(1, 9), end_at=at(7, 9))
    )
    # Ends exactly where the window begins, and starts exactly where it ends: outside.
    ids["before"] = str(
        add_session(database, "acme", title="Before", start_at=at(4, 22), end_at=T0)
    )
    ids["after"] = str(
        add_session(database, "acme", title="After", start_at=at(12, 0), end_at=at(12, 1))
    )
    ids["other"] = str(
        add_session(database, "other", title="Not yours", start_at=at(6, 10), end_at=at(6, 11))
    )
    return World(admin, room_a, room_b, provider, ids, booked)


def by_id(calendar: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in calendar["sessions"]}


def test_the_week_lists_every_overlapping_session_in_time_order(api: Api, world: World) -> None:
    calendar = get(api, world.admin)
    assert (calendar["from"], calendar["to"], calendar["timezone"]) == (
        FROM,
        TO,
        "Europe/Madrid",
    )
    ids = world.ids
    listed = [s["id"] for s in calendar["sessions"]]
    assert set(listed) == {
        ids["retreat"],
        ids["a1"],
        ids["a2"],
        *(s["id"] for s in api.timeslots(world.room_a["id"], date="2030-03-05")),
        ids["b1"],
        ids["workshop"],
        ids["yoga1"],
    }
    assert len(listed) == len(set(listed)) == 7  # one entry per session
    starts = [s["startAt"] for s in calendar["sessions"]]
    assert starts == sorted(starts)
    assert starts[0] == "2030-03-01T09:00:00Z"
    # The documented schema describes exactly what is sent, field for field.
    assert CalendarOut.model_validate(calendar).model_dump(by_alias=True, mode="json") == calendar


def test_sessions_carry_their_names_attendees_and_counts(api: Api, world: World) -> None:
    sessions_ = by_id(get(api, world.admin))
    ids, booked = world.ids, world.bookings

    a1 = sessions_[ids["a1"]]
    assert (a1["kind"], a1["status"], a1["roomId"], a1["roomName"]) == (
        "timeslot",
        "scheduled",
        world.room_a["id"],
        "Studio A",
    )
    assert (a1["startAt"], a1["endAt"], a1["maxParticipants"], a1["bookedCount"]) == (
        "2030-03-05T08:00:00Z",
        "2030-03-05T09:00:00Z",
        3,
        2,
    )
    assert (a1["providerId"], a1["serviceId"], a1["courseId"], a1["sequenceNo"]) == (None,) * 4
    assert a1["attendees"] == [
        {
            "bookingId": booked["carla@a1"],
            "status": "confirmed",
            "paymentStatus": "not_required",
            "name": "Test User",
            "email": "carla@example.com",
        },
        {
            "bookingId": booked["dan@a1"],
            "status": "confirmed",
            "paymentStatus": "not_required",
            "name": "Test User",
            "email": "dan@example.com",
        },
    ]
    assert a1["counts"] == {
        "pending": 0,
        "confirmed": 2,
        "completed": 0,
        "noShow": 0,
        "cancelled": 0,
    }

    # A cancelled booking is counted, not listed, and gave its seat back.
    a2 = sessions_[ids["a2"]]
    assert (a2["attendees"], a2["bookedCount"]) == ([], 0)
    assert a2["counts"] == {
        "pending": 0,
        "confirmed": 0,
        "completed": 0,
        "noShow": 0,
        "cancelled": 1,
    }

    # Waiting for its payment, the booking holds its seat.
    b1 = sessions_[ids["b1"]]
    assert [(a["bookingId"], a["status"], a["paymentStatus"]) for a in b1["attendees"]] == [
        (booked["carla@b1"], "pending", "pending")
    ]
    assert (b1["counts"]["pending"], b1["bookedCount"], b1["roomName"]) == (1, 1, "Studio B")

    # The workshop: the guest's own name and e-mail, the account's for the member.
    workshop = sessions_[ids["workshop"]]
    assert (workshop["kind"], workshop["title"], workshop["roomId"]) == (
        "workshop",
        "Pottery",
        None,
    )
    assert (workshop["providerId"], workshop["providerName"]) == (world.provider["id"], "Dr Clay")
    assert [(a["bookingId"], a["name"], a["email"]) for a in workshop["attendees"]] == [
        (booked["carla@workshop"], "Test User", "carla@example.com"),
        (booked["gail@workshop"], "Gail Guest", "gail@example.com"),
    ]
    assert (workshop["bookedCount"], workshop["maxParticipants"]) == (2, 25)
    assert workshop["counts"]["confirmed"] == 2

    yoga = sessions_[ids["yoga1"]]
    assert (yoga["kind"], yoga["courseId"], yoga["sequenceNo"]) == ("course", ids["course_id"], 1)
    assert [a["email"] for a in yoga["attendees"]] == ["dan@example.com"]


def test_outcomes_after_the_session_are_counted_and_still_hold_their_seat(
    api: Api, world: World, clock: Clock
) -> None:
    clock.now = at(5, 9, 30)  # after A1 started
    r = api.client.put(
        f"/api/v1/admin/bookings/{world.bookings['dan@a1']}/status",
        json={"status": "no_show"},
        headers=world.admin,
    )
    assert r.status_code == 200, r.text
    a1 = by_id(get(api, world.admin))[world.ids["a1"]]
    assert [(a["email"], a["status"]) for a in a1["attendees"]] == [
        ("carla@example.com", "confirmed"),
        ("dan@example.com", "no_show"),
    ]
    assert (a1["counts"]["confirmed"], a1["counts"]["noShow"], a1["bookedCount"]) == (1, 1, 2)


def listed_in(api: Api, world: World, start: str, end: str) -> set[str]:
    r = api.client.get(URL, params={"from": start, "to": end}, headers=world.admin)
    assert r.status_code == 200, r.text
    return {s["id"] for s in r.json()["sessions"]}


def test_window_edges(api: Api, world: World) -> None:
    ids = world.ids
    # [from, to) overlaps: a session ending at `from` or starting at `to` is outside.
    # 07:30Z .. 09:00:01Z: the retreat, A1 and B1 (08-09), A2 starting at 09:00.
    in_window = listed_in(api, world, "2030-03-05T08:30:00+01:00", "2030-03-05T09:00:01Z")
    assert in_window == {ids["retreat"], ids["a1"], ids["b1"], ids["a2"]}
    in_window = listed_in(api, world, "2030-03-05T09:00:00Z", "2030-03-05T10:00:00Z")
    assert in_window == {ids["retreat"], ids["a2"]}
    in_window = listed_in(api, world, "2030-03-04T00:00:00Z", "2030-03-05T00:00:00Z")
    assert in_window == {ids["retreat"], ids["before"]}
    in_window = listed_in(api, world, "2030-03-12T00:00:00Z", "2030-03-15T00:00:00Z")
    assert in_window == {ids["after"], ids["yoga2"]}
    assert listed_in(api, world, "2031-01-01T00:00:00Z", "2031-01-02T00:00:00Z") == set()
    # The window comes back in UTC.
    r = api.client.get(
        URL,
        params={"from": "2030-03-05T08:30:00+01:00", "to": "2030-03-05T10:00:00+01:00"},
        headers=world.admin,
    )
    assert (r.json()["from"], r.json()["to"]) == ("2030-03-05T07:30:00Z", "2030-03-05T09:00:00Z")


def test_the_longest_session_is_found_from_anywhere_it_overlaps() -> None:
    """The overlap query reads starts from LONGEST_SESSION before the window: no session
    the sessions service accepts may last longer."""
    assert calendar_view.LONGEST_SESSION >= sessions.MAX_LENGTH


def test_filters_and_canceled_sessions(api: Api, world: World) -> None:
    ids = world.ids
    in_room = get(api, world.admin, roomId=world.room_b["id"])["sessions"]
    assert [s["id"] for s in in_room] == [ids["b1"]]
    with_provider = get(api, world.admin, providerId=world.provider["id"])["sessions"]
    assert [s["id"] for s in with_provider] == [ids["workshop"]]
    both = get(api, world.admin, providerId=world.provider["id"], roomId=world.room_a["id"])
    assert both["sessions"] == []
    # Another organisation's room, or no room at all: nothing, rather than a 404.
    assert get(api, world.admin, roomId=str(uuid.uuid4()))["sessions"] == []

    assert ids["canceled"] not in by_id(get(api, world.admin))
    everything = by_id(get(api, world.admin, includeCanceled="true"))
    assert everything[ids["canceled"]]["status"] == "canceled"
    assert set(everything) - {ids["canceled"]} == set(by_id(get(api, world.admin)))


def test_the_same_json_without_orjson(
    api: Api, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = api.client.get(URL, params={"from": FROM, "to": TO}, headers=world.admin).content
    monkeypatch.setattr(calendar_schemas, "orjson", None)
    slow = api.client.get(URL, params={"from": FROM, "to": TO}, headers=world.admin).content
    assert json.loads(slow) == json.loads(fast)


def test_counts_without_attendees(api: Api, world: World) -> None:
    full = get(api, world.admin)
    light = get(api, world.admin, includeAttendees="false")
    assert CalendarOut.model_validate(light).model_dump(by_alias=True, mode="json") == light
    assert [s["attendees"] for s in light["sessions"]] == [None] * len(full["sessions"])
    assert [{k: v for k, v in s.items() if k != "attendees"} for s in full["sessions"]] == [
        {k: v for k, v in s.items() if k != "attendees"} for s in light["sessions"]
    ]


def test_names_are_escaped_and_missing_ones_are_null(
    api: Api, database: Database, clock: Clock
) -> None:
    api.org()
    admin = api.user(org="acme")
    tricky = Customer(name='Zoë "Z" \\ O\'Neil\n\t<b>', email="zoë+1@example.com")
    session_id = add_session(database, "acme", title="Quotes", start_at=at(6, 10), end_at=at(6, 11))
    made = take_seats(database, session_id, tricky, now=clock.now)
    # An account deleted since: the booking keeps its seat, with no name to show.
    api.user("gone@example.com")
    gone_id = user_id(database, "gone@example.com")
    made += take_seats(database, session_id, gone_id, now=clock.now + timedelta(minutes=1))
    with database.write() as s:
        s.delete(s.get(User, gone_id))
    r = api.client.get(URL, params={"from": FROM, "to": TO}, headers=admin)
    assert r.status_code == 200, r.text
    [session] = r.json()["sessions"]
    assert session["attendees"] == [
        {
            "bookingId": str(made[0]),
            "status": "confirmed",
            "paymentStatus": "not_required",
            "name": tricky.name,
            "email": tricky.email,
        },
        {
            "bookingId": str(made[1]),
            "status": "confirmed",
            "paymentStatus": "not_required",
            "name": None,
            "email": None,
        },
    ]


def test_who_may_see_the_calendar(api: Api, world: World) -> None:
    for role in ("owner", "admin", "staff"):
        listed = by_id(get(api, api.user(org="acme", role=role)))
        assert world.ids["workshop"] in listed and world.ids["other"] not in listed
    for headers in (api.user(org="acme", role="scanner"), api.user()):
        error = get(api, headers, expect=403)["error"]
        assert error["code"] == "forbidden"
    assert get(api, {}, expect=401)["error"]["code"] == "unauthorized"
    # The other organisation's admin sees only its own session.
    other = get(api, api.user(org="other"))["sessions"]
    assert [s["id"] for s in other] == [world.ids["other"]]
    # A member of both names one with X-Org.
    both = api.user(org="acme")
    with api.database.write() as s:
        member = s.execute(select(User).where(User.id == _me(api, both))).scalar_one()
        auth.grant_role(s, user=member, org_slug="other", role="staff")
    assert get(api, both, expect=422)["error"]["details"]["organizations"]
    assert [s["id"] for s in get(api, both | {"X-Org": "other"})["sessions"]] == [
        world.ids["other"]
    ]


def _me(api: Api, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(api.client.get("/api/v1/auth/me", headers=headers).json()["id"])


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": FROM, "to": FROM}, 400, "invalid_window"),
        ({"from": TO, "to": FROM}, 400, "invalid_window"),
        ({"from": "2030-03-01T00:00:00Z", "to": "2030-05-02T00:00:01Z"}, 400, "invalid_window"),
        ({"from": FROM}, 422, "validation_error"),
        ({"to": TO}, 422, "validation_error"),
        ({"from": "2030-03-05T00:00:00", "to": TO}, 422, "validation_error"),
        ({"from": "next week", "to": TO}, 422, "validation_error"),
        ({"from": FROM, "to": TO, "roomId": "nope"}, 422, "validation_error"),
    ],
)
def test_bad_windows(api: Api, params: dict[str, str], status: int, code: str) -> None:
    api.org()
    r = api.client.get(URL, params=params, headers=api.user(org="acme"))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


def test_the_longest_window_is_62_days(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    start = datetime(2030, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=calendar_view.MAX_WINDOW_DAYS)
    r = api.client.get(
        URL, params={"from": start.isoformat(), "to": end.isoformat()}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["sessions"] == []
