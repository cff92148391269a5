"""The CalDAV adapter against a real Radicale server (and a few broken ones)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import caldav
import icalendar
import pytest
from caldav.elements import cdav

from boxoffice.integrations.calendar.caldav import CalDavCalendar
from boxoffice.services.ports import BusyTime, CalendarAccess, CalendarEvent, DeliveryError
from tests.support.radicale_server import RadicaleServer

USER, PASSWORD = "alice", "s3cret"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    server = RadicaleServer(tmp_path_factory.mktemp("radicale"), users={USER: PASSWORD})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def access(radicale: RadicaleServer) -> CalendarAccess:
    """A fresh, empty calendar for each test."""
    url = radicale.make_calendar(USER, f"cal-{uuid.uuid4().hex[:8]}")
    return CalendarAccess(url=url, username=USER, password=PASSWORD)


@pytest.fixture
def adapter() -> CalDavCalendar:
    return CalDavCalendar(timeout_s=2.0)


def booking(uid: str = "booking-1@boxoffice.test", **changes: object) -> CalendarEvent:
    values: dict[str, object] = {
        "uid": uid,
        "summary": "Haircut with Sam",
        "start_at": T0,
        "end_at": T0 + timedelta(hours=1),
        "description": "Booking B-1",
        "location": "Room 2",
        "url": "https://boxoffice.test/b/1",
    }
    values.update(changes)
    return CalendarEvent(**values)  # type: ignore[arg-type]


def stored_events(access: CalendarAccess) -> list[icalendar.Event]:
    """Every VEVENT in the calendar, read with caldav directly."""
    with caldav.DAVClient(
        url=access.url, username=access.username, password=access.password, timeout=5
    ) as client:
        resources = client.calendar(url=access.url).get_events()
        return [c for r in resources for c in r.get_icalendar_instance().walk("VEVENT")]


def add_foreign(access: CalendarAccess, vevent: str, name: str | None = None) -> None:
    """Store an event as another client would (its own resource name, its own data)."""
    data = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{vevent}END:VCALENDAR\r\n"
    with caldav.DAVClient(
        url=access.url, username=access.username, password=access.password, timeout=5
    ) as client:
        calendar = client.calendar(url=access.url)
        url = calendar.url.join(name or f"{uuid.uuid4().hex}.ics")
        caldav.Event(client, url=url, parent=calendar).save(raw_data=data.encode())


def vevent(uid: str, *lines: str) -> str:
    return "\r\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20300101T000000Z", *lines, ""]) + (
        "END:VEVENT\r\n"
    )


# --- put / delete -------------------------------------------------------------------------


def test_put_event_then_read_back(adapter: CalDavCalendar, access: CalendarAccess) -> None:
    adapter.put_event(access, booking(sequence=3))

    [event] = stored_events(access)
    assert str(event["UID"]) == "booking-1@boxoffice.test"
    assert event["DTSTART"].dt == T0
    assert event["DTEND"].dt == T0 + timedelta(hours=1)
    assert str(event["SUMMARY"]) == "Haircut with Sam"
    assert str(event["LOCATION"]) == "Room 2"
    assert str(event["URL"]) == "https://boxoffice.test/b/1"
    assert event["SEQUENCE"] == 3  # stored as given, not bumped by caldav


def test_put_event_twice_leaves_one_event(adapter: CalDavCalendar, access: CalendarAccess) -> None:
    adapter.put_event(access, booking())
    adapter.put_event(access, booking())

    assert [str(e["UID"]) for e in stored_events(access)] == ["booking-1@boxoffice.test"]


def test_put_event_with_higher_sequence_moves_it(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    adapter.put_event(access, booking())
    moved = T0 + timedelta(days=1, hours=2)
    adapter.put_event(
        access, booking(sequence=1, start_at=moved, end_at=moved + timedelta(hours=2))
    )

    [event] = stored_events(access)
    assert event["SEQUENCE"] == 1
    assert (event["DTSTART"].dt, event["DTEND"].dt) == (moved, moved + timedelta(hours=2))


def test_put_event_replaces_one_stored_under_another_name(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    add_foreign(
        access,
        vevent("booking-1@boxoffice.test", "DTSTART:20300107T090000Z", "DTEND:20300107T100000Z"),
        name="made-by-another-client.ics",
    )

    adapter.put_event(access, booking(sequence=1, summary="Moved"))

    [event] = stored_events(access)
    assert (str(event["SUMMARY"]), event["SEQUENCE"]) == ("Moved", 1)


def test_delete_event(adapter: CalDavCalendar, access: CalendarAccess) -> None:
    adapter.put_event(access, booking())
    adapter.put_event(access, booking(uid="other"))

    adapter.delete_event(access, "booking-1@boxoffice.test")

    assert [str(e["UID"]) for e in stored_events(access)] == ["other"]


def test_delete_missing_event_is_fine(adapter: CalDavCalendar, access: CalendarAccess) -> None:
    adapter.delete_event(access, "never-there")
    adapter.put_event(access, booking())
    adapter.delete_event(access, "booking-1@boxoffice.test")
    adapter.delete_event(access, "booking-1@boxoffice.test")

    assert stored_events(access) == []


def test_delete_event_stored_under_another_name(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    add_foreign(access, vevent("foreign", "DTSTART:20300107T090000Z", "DTEND:20300107T100000Z"))

    adapter.delete_event(access, "foreign")

    assert stored_events(access) == []


# --- busy_times ---------------------------------------------------------------------------


def test_busy_times_expands_recurrences_and_skips_free_events(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    adapter.put_event(access, booking())  # Mon 7 Jan 09:00-10:00
    # Weekly on Mondays 12:00-13:00 from 31 Dec: 14 Jan excluded, 21 Jan moved to 15:00.
    add_foreign(
        access,
        vevent(
            "weekly",
            "DTSTART:20291231T120000Z",
            "DTEND:20291231T130000Z",
            "RRULE:FREQ=WEEKLY;COUNT=10",
            "EXDATE:20300114T120000Z",
        )
        + vevent(
            "weekly",
            "RECURRENCE-ID:20300121T120000Z",
            "DTSTART:20300121T150000Z",
            "DTEND:20300121T160000Z",
        ),
    )
    add_foreign(
        access,
        vevent("free", "DTSTART:20300108T090000Z", "DTEND:20300108T100000Z", "TRANSP:TRANSPARENT"),
    )
    add_foreign(
        access,
        vevent(
            "cancelled", "DTSTART:20300109T090000Z", "DTEND:20300109T100000Z", "STATUS:CANCELLED"
        ),
    )
    add_foreign(access, vevent("before", "DTSTART:20300106T220000Z", "DTEND:20300106T230000Z"))
    add_foreign(access, vevent("straddles", "DTSTART:20300106T230000Z", "DTEND:20300107T010000Z"))

    window_start, window_end = datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 1, 28, tzinfo=UTC)
    busy = adapter.busy_times(access, window_start, window_end)

    def at(day: int, hour: int) -> datetime:
        return datetime(2030, 1, day, hour, tzinfo=UTC)

    assert busy == [
        BusyTime("straddles", at(6, 23), at(7, 1)),
        BusyTime("booking-1@boxoffice.test", at(7, 9), at(7, 10)),
        BusyTime("weekly", at(7, 12), at(7, 13)),
        BusyTime("weekly", at(21, 15), at(21, 16)),
    ]
    assert all(b.start_at.tzinfo is UTC and b.end_at.tzinfo is UTC for b in busy)


def test_busy_times_takes_all_day_events_in_utc_by_default(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    add_foreign(access, vevent("holiday", "DTSTART;VALUE=DATE:20300108"))

    busy = adapter.busy_times(access, T0, T0 + timedelta(days=3))

    assert busy == [
        BusyTime("holiday", datetime(2030, 1, 8, tzinfo=UTC), datetime(2030, 1, 9, tzinfo=UTC))
    ]


def test_busy_times_takes_all_day_events_in_the_calendars_timezone(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    timezone = icalendar.Calendar()
    timezone.add_component(icalendar.Timezone.from_tzid("Europe/Berlin"))
    with caldav.DAVClient(url=access.url, username=USER, password=PASSWORD) as client:
        calendar = client.calendar(url=access.url)
        calendar.set_properties([cdav.CalendarTimeZone(timezone.to_ical().decode())])
    add_foreign(
        access, vevent("holiday", "DTSTART;VALUE=DATE:20300108", "DTEND;VALUE=DATE:20300110")
    )
    add_foreign(access, vevent("floating", "DTSTART:20300111T090000", "DTEND:20300111T100000"))

    busy = adapter.busy_times(access, T0, T0 + timedelta(days=7))

    assert busy == [
        BusyTime(
            "holiday", datetime(2030, 1, 7, 23, tzinfo=UTC), datetime(2030, 1, 9, 23, tzinfo=UTC)
        ),
        BusyTime(
            "floating", datetime(2030, 1, 11, 8, tzinfo=UTC), datetime(2030, 1, 11, 9, tzinfo=UTC)
        ),
    ]


def test_busy_times_refuses_naive_instants(adapter: CalDavCalendar, access: CalendarAccess) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        adapter.busy_times(access, datetime(2030, 1, 7), datetime(2030, 1, 8))


# --- failures -----------------------------------------------------------------------------


def every_operation(adapter: CalDavCalendar, access: CalendarAccess) -> list[Callable[[], object]]:
    return [
        lambda: adapter.put_event(access, booking()),
        lambda: adapter.delete_event(access, "booking-1@boxoffice.test"),
        lambda: adapter.busy_times(access, T0, T0 + timedelta(days=1)),
    ]


def test_wrong_password_is_a_delivery_error(
    adapter: CalDavCalendar, access: CalendarAccess
) -> None:
    wrong = CalendarAccess(url=access.url, username=USER, password="nope")
    for operation in every_operation(adapter, wrong):
        with pytest.raises(DeliveryError, match="401") as caught:
            operation()
        assert "nope" not in str(caught.value)


def test_server_down_is_a_fast_delivery_error_and_recovers(tmp_path: Path) -> None:
    server = RadicaleServer(tmp_path, users={USER: PASSWORD})
    server.start()
    try:
        access = CalendarAccess(server.make_calendar(USER, "work"), USER, PASSWORD)
        adapter = CalDavCalendar(timeout_s=1.0)
        adapter.put_event(access, booking())

        server.stop()
        for operation in every_operation(adapter, access):
            started = time.monotonic()
            with pytest.raises(DeliveryError, match=r"127\.0\.0\.1"):
                operation()
            assert time.monotonic() - started < 1.5

        server.start()
        adapter.put_event(access, booking(uid="after-restart"))
        uids = {b.uid for b in adapter.busy_times(access, T0, T0 + timedelta(days=1))}
        assert uids == {"booking-1@boxoffice.test", "after-restart"}
    finally:
        server.stop()


def test_silent_server_is_bounded_by_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{USER}/work/"
        adapter = CalDavCalendar(timeout_s=0.3)
        for operation in every_operation(adapter, CalendarAccess(url, USER, PASSWORD)):
            started = time.monotonic()
            with pytest.raises(DeliveryError, match="Timeout"):
                operation()
            assert time.monotonic() - started < 1.5


@pytest.fixture
def failing_server() -> Iterator[Callable[[int], str]]:
    """An HTTP server answering every request with the status given; returns a calendar URL."""
    status = [500]

    class Handler(BaseHTTPRequestHandler):
        def handle_one_request(self) -> None:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html><body>Oops</body></html>"
            self.send_response(status[0])
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def answer(code: int) -> str:
        status[0] = code
        return f"http://127.0.0.1:{server.server_address[1]}/{USER}/work/"

    yield answer
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("status", [403, 500, 503])
def test_server_errors_are_delivery_errors(
    failing_server: Callable[[int], str], adapter: CalDavCalendar, status: int
) -> None:
    access = CalendarAccess(failing_server(status), USER, PASSWORD)
    for operation in every_operation(adapter, access):
        with pytest.raises(DeliveryError, match=str(status)):
            operation()
