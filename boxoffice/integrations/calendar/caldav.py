"""The Calendar port over CalDAV, with the ``caldav`` library.

``CalendarAccess.url`` names one calendar collection. Events we write live at a
resource named after their UID (``<quoted uid>.ics``), so writing the same UID
again replaces it in place; an event with our UID stored elsewhere (by another
client) is found by UID and replaced there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events  # type: ignore[import-untyped]
from caldav.calendarobjectresource import Event
from caldav.collection import Calendar
from caldav.davclient import DAVClient
from caldav.elements import cdav
from caldav.lib import error as dav_error
from caldav.lib.http_sync import requests as http

from boxoffice.integrations.calendar.ics import event_ics
from boxoffice.services.ports import BusyTime, CalendarAccess, CalendarEvent, DeliveryError

PRODID = "-//Box Office//boxoffice//EN"
# Asked of the server on each side of a busy_times window: all-day and floating
# events are matched by the server in UTC, but we place them in the calendar's zone.
_WINDOW_MARGIN = timedelta(days=1)
_FAILURES = (dav_error.DAVError, http.exceptions.RequestException, OSError)


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: instants must be timezone-aware")
    return instant.astimezone(UTC)


def _resource_name(uid: str) -> str:
    return quote(uid, safe="") + ".ics"


class CalDavCalendar:
    """A calendar collection on a CalDAV server; every server-side failure is DeliveryError."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    @contextmanager
    def _calendar(self, access: CalendarAccess, action: str) -> Iterator[Any]:
        """A fresh client for one operation; failures reaching the server become DeliveryError.

        Yields Any: caldav annotates its methods "result | Coroutine" for the sync and
        async clients at once, which mypy cannot narrow; this client is always sync.
        """
        try:
            with DAVClient(
                url=access.url,
                username=access.username,
                password=access.password,
                # Annotated int, but handed as-is to niquests, which takes seconds as a float.
                timeout=self.timeout_s,  # type: ignore[arg-type]
                enable_rfc6764=False,
            ) as client:
                yield Calendar(client=client, url=access.url)
        except _FAILURES as exc:
            raise DeliveryError(_describe(action, access.url, exc)) from exc

    def put_event(self, access: CalendarAccess, event: CalendarEvent) -> None:
        """Create or replace the event with this UID (idempotent), stored as given."""
        # DTSTAMP is when this copy was written, so the clock is read here.
        data = event_ics(event, stamp=datetime.now(UTC))
        with self._calendar(access, "put_event") as calendar:
            resource = Event(
                calendar.client, url=calendar.url.join(_resource_name(event.uid)), parent=calendar
            )
            try:
                # raw_data: sent verbatim. The default path re-serialises and bumps SEQUENCE.
                resource.save(raw_data=data)
            except dav_error.UidConflictError:
                found = calendar.get_event_by_uid(event.uid)
                Event(calendar.client, url=found.url, parent=calendar).save(raw_data=data)

    def delete_event(self, access: CalendarAccess, uid: str) -> None:
        """Delete the event with this UID; one that is already gone is not an error."""
        with self._calendar(access, "delete_event") as calendar:
            url = calendar.url.join(_resource_name(uid))
            response = calendar.client.delete(str(url))
            if response.status == 404:
                # Not where we put it: perhaps stored by another client under another name.
                try:
                    found = calendar.get_event_by_uid(uid)
                except dav_error.NotFoundError:
                    return
                response = calendar.client.delete(str(found.url))
            if response.status not in (200, 204, 404):
                raise dav_error.DeleteError(str(url), f"{response.status} {response.reason}")

    def busy_times(
        self, access: CalendarAccess, start_at: datetime, end_at: datetime
    ) -> list[BusyTime]:
        """Busy intervals overlapping [start_at, end_at), recurring events expanded.

        Transparent and cancelled events (or occurrences) are skipped. All-day and
        floating events are placed in the event's X-WR-TIMEZONE, else the collection's
        CALDAV:calendar-timezone, else UTC. Instants returned are UTC.
        """
        start_at, end_at = _utc(start_at), _utc(end_at)
        margin_start, margin_end = start_at - _WINDOW_MARGIN, end_at + _WINDOW_MARGIN
        busy: list[BusyTime] = []
        with self._calendar(access, "busy_times") as calendar:
            found = calendar.search(
                start=margin_start, end=margin_end, event=True, expand=False, post_filter=False
            )
            collection_zone: list[tzinfo] = []  # fetched on first need
            for resource in found:
                ical = resource.get_icalendar_instance()
                own_zone = _zone(ical.get("X-WR-TIMEZONE"))
                # A broken series in someone's calendar must not hide all the others.
                series = recurring_ical_events.of(ical, skip_bad_series=True)
                for occurrence in series.between(margin_start, margin_end):
                    if _is_free(occurrence):
                        continue
                    start, end = occurrence["DTSTART"].dt, occurrence["DTEND"].dt
                    zone: tzinfo | None = own_zone
                    if zone is None and _needs_zone(start, end):
                        if not collection_zone:
                            collection_zone.append(_collection_zone(calendar) or UTC)
                        zone = collection_zone[0]
                    busy_start, busy_end = _instant(start, zone), _instant(end, zone)
                    if busy_start < end_at and busy_end > start_at and busy_start < busy_end:
                        uid = str(occurrence.get("UID", resource.id))
                        busy.append(BusyTime(uid=uid, start_at=busy_start, end_at=busy_end))
        busy.sort(key=lambda b: (b.start_at, b.end_at, b.uid))
        return busy


def _is_free(component: icalendar.Component) -> bool:
    transparency = str(component.get("TRANSP", "OPAQUE")).upper()
    status = str(component.get("STATUS", "")).upper()
    return transparency == "TRANSPARENT" or status == "CANCELLED"


def _needs_zone(*values: date) -> bool:
    return any(not isinstance(v, datetime) or v.tzinfo is None for v in values)


def _instant(value: date, zone: tzinfo | None) -> datetime:
    """A DTSTART/DTEND value as a UTC instant; dates and floating times taken in ``zone``."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or UTC)
    return value.astimezone(UTC)


def _zone(name: object) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _collection_zone(calendar: Any) -> tzinfo | None:
    """The collection's CALDAV:calendar-timezone (a VTIMEZONE), if it has a usable one."""
    text = calendar.get_property(cdav.CalendarTimeZone())
    if not text:
        return None
    try:
        timezones = icalendar.Calendar.from_ical(text).walk("VTIMEZONE")
    except ValueError:
        return None
    if not timezones:
        return None
    vtimezone = timezones[0]
    if not isinstance(vtimezone, icalendar.Timezone):
        return None
    return _zone(str(vtimezone.get("TZID", ""))) or vtimezone.to_tz()


def _describe(action: str, url: str, exc: BaseException) -> str:
    """A short message naming the server (never the credentials) and what went wrong."""
    parts = urlsplit(url)
    where = parts.hostname or "?"
    if parts.port:
        where = f"{where}:{parts.port}"
    if isinstance(exc, dav_error.DAVError):
        status = f"{exc.status} " if exc.status else ""
        why = f"{type(exc).__name__}: {status}{exc.reason}".strip()
    else:
        why = type(exc).__name__
    return f"CalDAV {action} on {where} failed: {why}"[:300]
