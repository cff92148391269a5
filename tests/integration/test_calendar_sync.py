"""Calendars end to end: room connections pushed to and pulled from a real Radicale
server by the worker, and the room's ICS subscription feed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import caldav
import icalendar
import pytest
from sqlalchemy import select

from boxoffice.db.models import CalendarConnection
from boxoffice.db.session import Database
from boxoffice.domain.timeslots import Interval
from boxoffice.services import crypto
from boxoffice.services.calendars import busy_times
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock
from tests.support.radicale_server import RadicaleServer

Shop = Callable[..., dict[str, Any]]
USER, PASSWORD = "frontdesk", "calendar-pa55word"
# The shop's first slot: 2030-03-05 09:00-10:00 in Madrid (UTC+1).
SLOT0_START = datetime(2030, 3, 5, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    server = RadicaleServer(tmp_path_factory.mktemp("radicale"), users={USER: PASSWORD})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def calendar_url(radicale: RadicaleServer) -> str:
    """A fresh, empty calendar for each test."""
    return radicale.make_calendar(USER, f"room-{uuid.uuid4().hex[:8]}")


def connect(api: Api, s: dict[str, Any], url: str) -> dict[str, Any]:
    body = {"roomId": s["room"]["id"], "url": url, "username": USER, "password": PASSWORD}
    r = api.client.post("/api/v1/admin/calendar-connections", json=body, headers=s["admin"])
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def stored_events(url: str) -> list[icalendar.Event]:
    """Every VEVENT in the calendar, read with caldav directly."""
    with caldav.DAVClient(url=url, username=USER, password=PASSWORD, timeout=5) as client:
        resources = client.calendar(url=url).get_events()
        return [c for r in resources for c in r.get_icalendar_instance().walk("VEVENT")]


def add_foreign(url: str, uid: str, *lines: str) -> str:
    """Store an event as another calendar app would; returns its resource URL."""
    data = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Another app//EN",
            "BEGIN:VEVENT",
            f"UID:{uid}",
            "DTSTAMP:20300101T000000Z",
            *lines,
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )
    with caldav.DAVClient(url=url, username=USER, password=PASSWORD, timeout=5) as client:
        calendar = client.calendar(url=url)
        resource = calendar.url.join(f"{uuid.uuid4().hex}.ics")
        caldav.Event(client, url=resource, parent=calendar).save(raw_data=data.encode())
        return str(resource)


def remove(url: str, resource: str) -> None:
    with caldav.DAVClient(url=url, username=USER, password=PASSWORD, timeout=5) as client:
        assert client.delete(resource).status in (200, 204)


def book(api: Api, customer: dict[str, str], slot_id: str) -> dict[str, Any]:
    r = api.book(customer, slot_id)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# --- connections ------------------------------------------------------------------------------


def test_a_connection_keeps_its_password_encrypted(
    api: Api, shop: Shop, calendar_url: str, database: Database, settings: Settings
) -> None:
    s = shop()
    created = connect(api, s, calendar_url)
    assert (created["roomId"], created["hasPassword"], created["username"]) == (
        s["room"]["id"],
        True,
        USER,
    )
    r = api.client.get("/api/v1/admin/calendar-connections", headers=s["admin"])
    [listed] = r.json()
    assert listed["id"] == created["id"] and listed["hasPassword"] is True
    assert "password" not in listed and PASSWORD not in r.text

    with database.read() as db:
        stored = db.execute(select(CalendarConnection.password_encrypted)).scalar_one()
    assert stored and PASSWORD not in stored
    assert crypto.decrypt(settings.resolved_secret_key(), stored) == PASSWORD

    other = api.user(org="acme", role="staff")
    assert api.client.get("/api/v1/admin/calendar-connections", headers=other).status_code == 403


# --- push: bookings written into the room's calendar ------------------------------------------


def test_bookings_are_created_moved_and_removed_in_the_room_calendar(
    api: Api, shop: Shop, calendar_url: str, worker: Worker
) -> None:
    s = shop()
    connect(api, s, calendar_url)
    customer = api.user()
    booking = book(api, customer, s["slots"][0]["id"])
    worker.drain()

    [event] = stored_events(calendar_url)
    uid = f"booking-{booking['id']}@boxoffice"
    assert str(event["UID"]) == uid
    assert (event["DTSTART"].dt, event["DTEND"].dt) == (
        SLOT0_START,
        SLOT0_START + timedelta(hours=1),
    )
    assert event["SEQUENCE"] == 0

    r = api.client.put(
        f"/api/v1/bookings/{booking['id']}/reschedule",
        json={"timeslotId": s["slots"][2]["id"]},
        headers=customer,
    )
    assert r.status_code == 200, r.text
    worker.drain()
    [moved] = stored_events(calendar_url)
    assert str(moved["UID"]) == uid
    assert moved["SEQUENCE"] == 1
    assert moved["DTSTART"].dt == SLOT0_START + timedelta(hours=2)

    r = api.client.put(f"/api/v1/bookings/{booking['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    worker.drain()
    assert stored_events(calendar_url) == []

    calendar_rows = api.client.get(
        "/api/v1/admin/deliveries", params={"topic": "calendar"}, headers=s["admin"]
    ).json()["items"]
    assert len(calendar_rows) == 3
    assert {d["state"] for d in calendar_rows} == {"delivered"}


# --- pull: the room calendar's other events as busy times -------------------------------------


def test_foreign_events_become_busy_times_and_follow_the_calendar(
    api: Api,
    shop: Shop,
    calendar_url: str,
    radicale: RadicaleServer,
    worker: Worker,
    database: Database,
    settings: Settings,
    clock: Clock,
) -> None:
    s = shop()
    connect(api, s, calendar_url)
    room_id = uuid.UUID(s["room"]["id"])
    book(api, api.user(), s["slots"][0]["id"])
    worker.drain()  # the booking's own event is in the calendar now
    meeting = add_foreign(
        calendar_url, "team-meeting", "DTSTART:20300306T100000Z", "DTEND:20300306T113000Z"
    )
    add_foreign(
        calendar_url,
        "weekly-cleaning",
        "DTSTART:20300307T150000Z",
        "DTEND:20300307T160000Z",
        "RRULE:FREQ=WEEKLY;COUNT=3",
    )
    window = Interval(clock.now, clock.now + timedelta(days=settings.calendar_sync_days))

    def busy() -> list[tuple[datetime, datetime]]:
        with database.read() as db:
            return [(b.start_at, b.end_at) for b in busy_times(db, window, room_id=room_id)]

    def sync() -> None:
        clock.advance(seconds=settings.calendar_sync_interval_s)
        assert worker.run_periodic(force=True)["calendar_sync"] == 1

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2030, 3, day, hour, minute, tzinfo=UTC)

    cleaning = [(at(d, 15), at(d, 16)) for d in (7, 14, 21)]
    assert worker.run_periodic(force=True)["calendar_sync"] == 1
    # The booking's own event (2030-03-05 08:00Z) is not counted again.
    assert busy() == [(at(6, 10), at(6, 11, 30)), *cleaning]
    # Synced recently: the next run leaves the connection alone.
    assert worker.run_periodic(force=True)["calendar_sync"] == 0

    sync()
    assert busy() == [(at(6, 10), at(6, 11, 30)), *cleaning]  # replaced, not duplicated

    remove(calendar_url, meeting)
    sync()
    assert busy() == cleaning

    radicale.stop()
    try:
        sync()
        [listed] = api.client.get("/api/v1/admin/calendar-connections", headers=s["admin"]).json()
        assert listed["lastError"] and "busy_times" in listed["lastError"]
        assert PASSWORD not in listed["lastError"]
        assert busy() == cleaning  # what the calendar said last still stands
    finally:
        radicale.start()
    sync()
    [listed] = api.client.get("/api/v1/admin/calendar-connections", headers=s["admin"]).json()
    assert listed["lastError"] is None
    assert busy() == cleaning


def test_a_foreign_event_makes_the_overlapping_room_timeslot_unavailable(
    api: Api, shop: Shop, calendar_url: str, worker: Worker
) -> None:
    s = shop()
    connect(api, s, calendar_url)
    # 2030-03-05 08:30-09:30Z overlaps the 09:00 and 10:00 Madrid slots.
    add_foreign(calendar_url, "plumber", "DTSTART:20300305T083000Z", "DTEND:20300305T093000Z")
    worker.run_periodic(force=True)
    listed = api.timeslots(s["room"]["id"], date="2030-03-05")
    assert [slot["isAvailable"] for slot in listed] == [False, False, True]
    assert api.book(api.user(), s["slots"][0]["id"]).status_code == 409


# --- the room's ICS subscription feed ---------------------------------------------------------


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_room_feed_lists_confirmed_bookings_behind_a_secret_link(
    api: Api, shop: Shop, settings: Settings
) -> None:
    s = shop(max_bookings=2)
    confirmed = book(api, api.user(), s["slots"][0]["id"])
    cancelled = book(api, (customer := api.user()), s["slots"][1]["id"])
    r = api.client.put(f"/api/v1/bookings/{cancelled['id']}/cancel", headers=customer)
    assert r.status_code == 200, r.text
    feed_url = f"/api/v1/admin/rooms/{s['room']['id']}/calendar-feed"
    r = api.client.post(feed_url, headers=s["admin"])
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith(f"{settings.public_url}/api/v1/calendar/rooms/{s['room']['id']}.ics?")
    assert api.client.post(feed_url, headers=s["admin"]).json()["url"] == url  # stable

    feed = api.client.get(path_of(url))  # no Authorization: the token is the key
    assert feed.status_code == 200, feed.text
    assert feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.content)
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == f"booking-{confirmed['id']}@boxoffice"
    assert (event["DTSTART"].dt, event["DTEND"].dt) == (
        SLOT0_START,
        SLOT0_START + timedelta(hours=1),
    )

    wrong = path_of(url).split("token=")[0] + "token=not-the-token"
    assert api.client.get(wrong).status_code == 401
    other_room = path_of(url).replace(s["room"]["id"], str(uuid.uuid4()))
    assert api.client.get(other_room).status_code == 401

    rotated = api.client.post(feed_url, params={"rotate": "true"}, headers=s["admin"])
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["url"] != url
    assert api.client.get(path_of(url)).status_code == 401
    assert api.client.get(path_of(rotated.json()["url"])).status_code == 200


def test_a_non_ascii_feed_token_is_refused(api: Api, shop: Shop) -> None:
    s = shop()
    r = api.client.post(f"/api/v1/admin/rooms/{s['room']['id']}/calendar-feed", headers=s["admin"])
    assert r.status_code == 200, r.text
    r = api.client.get(f"/api/v1/calendar/rooms/{s['room']['id']}.ics", params={"token": "été"})
    assert r.status_code == 401
