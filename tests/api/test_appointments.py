"""Provider appointments through the public API: slots, booking, the management link."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from boxoffice.db.models import (
    AvailabilityBlock,
    Client,
    DatedAvailability,
    Lead,
    Provider,
    Room,
    Schedule,
    Service,
    ServiceProvider,
    Session,
    TimeOff,
)
from boxoffice.db.session import Database
from boxoffice.services.organizations import create_organization
from tests.conftest import Clock

DAY = "2030-03-05"  # a Tuesday; the clock starts on Monday 2030-03-04 09:00Z


class Clinic:
    """An organisation in Madrid with providers working Mon-Fri 09:00-17:00 local."""

    def __init__(self, database: Database, client: TestClient) -> None:
        self.database = database
        self.client = client
        with database.write() as s:
            org = create_organization(
                s,
                slug="clinic",
                name="Clinic",
                timezone="Europe/Madrid",
                currency="EUR",
                payments_enabled=True,
            )
            self.org_id = org.id

    def provider(self, name: str = "Dr Ana", *, hours: tuple[int, int] = (9, 17)) -> str:
        with self.database.write() as s:
            provider = Provider(org_id=self.org_id, name=name, timezone="Europe/Madrid")
            s.add(provider)
            s.flush()
            schedule = Schedule(
                org_id=self.org_id,
                provider_id=provider.id,
                name="clinic",
                timezone="Europe/Madrid",
                is_default=True,
            )
            s.add(schedule)
            s.flush()
            for weekday in range(5):
                s.add(
                    AvailabilityBlock(
                        org_id=self.org_id,
                        schedule_id=schedule.id,
                        weekday=weekday,
                        start_min=hours[0] * 60,
                        end_min=hours[1] * 60,
                    )
                )
            return str(provider.id)

    def service(self, *providers: str, **fields: Any) -> str:
        values = {
            "name": "Therapy",
            "duration_min": 60,
            "currency": "EUR",
            "capacity": 1,
            "max_days_ahead": 365,
        } | fields
        with self.database.write() as s:
            service = Service(org_id=self.org_id, **values)
            s.add(service)
            s.flush()
            for provider_id in providers:
                s.add(
                    ServiceProvider(
                        service_id=service.id,
                        provider_id=uuid.UUID(provider_id),
                        org_id=self.org_id,
                    )
                )
            return str(service.id)

    def slots(self, service_id: str, day: str = DAY, **params: Any) -> list[dict[str, Any]]:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        r = self.client.get(
            f"/api/v1/public/services/{service_id}/slots",
            params={"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}
            | params,
        )
        assert r.status_code == 200, r.text
        return r.json()["slots"]  # type: ignore[no-any-return]

    def book(
        self, service_id: str, start: str, *, email: str = "ann@example.com", **fields: Any
    ) -> Any:
        body = {
            "serviceId": service_id,
            "startTime": start,
            "customer": {"name": "Ann", "email": email},
        } | fields
        return self.client.post("/api/v1/public/bookings", json=body)


@pytest.fixture
def clinic(database: Database, client: TestClient) -> Clinic:
    return Clinic(database, client)


def _starts(slots: list[dict[str, Any]]) -> list[str]:
    return [s["startTime"] for s in slots]


def test_slots_follow_weekly_hours_in_local_time(clinic: Clinic) -> None:
    ana = clinic.provider()
    service = clinic.service(ana)
    slots = clinic.slots(service, timezone="America/New_York")
    # 09:00-17:00 Madrid (UTC+1 in March): eight hourly slots from 08:00Z.
    assert _starts(slots) == [f"2030-03-05T{h:02d}:00:00Z" for h in range(8, 16)]
    assert slots[0]["localStart"] == "2030-03-05T03:00:00-05:00"
    assert slots[0]["providerIds"] == [ana]


@pytest.mark.parametrize(
    ("day", "first_utc"),
    [
        ("2030-03-29", "07"),  # Friday before the last Sunday of March: UTC+1... 08Z
        ("2030-04-01", "07"),  # Monday after: summer time, UTC+2
        ("2030-10-25", "07"),  # Friday before the last Sunday of October: still UTC+2
        ("2030-10-28", "08"),  # Monday after: winter time again
    ],
)
def test_dst_keeps_slots_at_nine_local(clinic: Clinic, day: str, first_utc: str) -> None:
    service = clinic.service(clinic.provider())
    slots = clinic.slots(service, day, timezone="Europe/Madrid")
    assert slots[0]["localStart"].startswith(f"{day}T09:00:00+0")
    expected = "08" if day == "2030-03-29" else first_utc
    assert slots[0]["startTime"] == f"{day}T{expected}:00:00Z"
    assert [s["localStart"][11:16] for s in slots] == [f"{h:02d}:00" for h in range(9, 17)]


def test_booking_takes_the_slot_and_a_second_booking_is_409(clinic: Clinic) -> None:
    service = clinic.service(clinic.provider())
    first = clinic.book(service, "2030-03-05T08:00:00Z")
    assert first.status_code == 201, first.text
    booking = first.json()["booking"]
    assert booking["status"] == "confirmed"
    assert booking["paymentStatus"] == "not_required"
    second = clinic.book(service, "2030-03-05T08:00:00Z", email="bob@example.com")
    assert second.status_code == 409
    assert second.json()["error"] == {
        "code": "slot_full",
        "message": "Slot fully booked.",
        "details": {"startTime": "2030-03-05T08:00:00+00:00", "reason": "fully_booked"},
    }
    assert "2030-03-05T08:00:00Z" not in _starts(clinic.slots(service))


def test_a_priced_service_is_pending_and_holds_its_slot(clinic: Clinic) -> None:
    service = clinic.service(clinic.provider(), price_minor=4500)
    r = clinic.book(service, "2030-03-05T09:00:00Z")
    assert r.status_code == 201
    assert (r.json()["booking"]["status"], r.json()["booking"]["price"]) == ("pending", 45.0)
    assert "2030-03-05T09:00:00Z" not in _starts(clinic.slots(service))


def test_idempotent_retry_returns_the_first_booking(clinic: Clinic) -> None:
    service = clinic.service(clinic.provider())
    body = {
        "serviceId": service,
        "startTime": "2030-03-05T08:00:00Z",
        "customer": {"name": "Ann", "email": "ann@example.com"},
    }
    headers = {"Idempotency-Key": "try-1"}
    first = clinic.client.post("/api/v1/public/bookings", json=body, headers=headers)
    again = clinic.client.post("/api/v1/public/bookings", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["booking"]["id"] == first.json()["booking"]["id"]
    other = clinic.client.post(
        "/api/v1/public/bookings",
        json=body | {"startTime": "2030-03-05T09:00:00Z"},
        headers=headers,
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"start": "2030-03-05T00:00:00Z", "end": "2030-05-07T00:00:00Z"}, 400),  # 63 days
        ({"start": "2030-03-06T00:00:00Z", "end": "2030-03-05T00:00:00Z"}, 400),  # inverted
        (
            {
                "start": "2030-03-05T00:00:00Z",
                "end": "2030-03-06T00:00:00Z",
                "timezone": "Mars/Base",
            },
            422,
        ),
        ({"start": "2030-03-05T00:00:00", "end": "2030-03-06T00:00:00Z"}, 422),  # no offset
    ],
)
def test_bad_windows_are_refused(clinic: Clinic, params: dict[str, str], status: int) -> None:
    service = clinic.service(clinic.provider())
    r = clinic.client.get(f"/api/v1/public/services/{service}/slots", params=params)
    assert r.status_code == status, r.text
    assert "error" in r.json()


def test_explain_says_why_a_time_is_not_offered(clinic: Clinic, database: Database) -> None:
    ana = clinic.provider()
    service = clinic.service(ana, min_notice_min=60 * 24 * 2, max_days_ahead=30)
    with database.write() as s:
        s.add(
            TimeOff(
                org_id=clinic.org_id,
                provider_id=uuid.UUID(ana),
                start_at=datetime(2030, 3, 12, 8, tzinfo=UTC),
                end_at=datetime(2030, 3, 12, 12, tzinfo=UTC),
            )
        )
    clinic.book(service, "2030-03-13T08:00:00Z")

    def why(at: str, day: str) -> str | None:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        r = clinic.client.get(
            f"/api/v1/public/services/{service}/slots",
            params={
                "start": start.isoformat(),
                "end": (start + timedelta(days=1)).isoformat(),
                "explain": True,
                "at": at,
            },
        )
        assert r.status_code == 200, r.text
        return r.json()["explanation"]["reason"]  # type: ignore[no-any-return]

    assert why("2030-03-05T08:00:00Z", "2030-03-05") == "too_soon"
    assert why("2030-03-12T08:00:00Z", "2030-03-12") == "time_off"
    assert why("2030-03-13T08:00:00Z", "2030-03-13") == "fully_booked"
    assert why("2030-03-13T06:00:00Z", "2030-03-13") == "outside_hours"
    assert why("2030-03-13T09:30:00Z", "2030-03-13") == "not_on_grid"
    assert why("2030-05-13T08:00:00Z", "2030-05-13") == "too_far_ahead"
    assert why("2030-03-14T08:00:00Z", "2030-03-14") is None


def test_dated_availability_and_buffers(clinic: Clinic, database: Database) -> None:
    ana = clinic.provider()
    service = clinic.service(ana, duration_min=45, slot_step_min=15, buffer_after_min=15)
    with database.write() as s:
        s.add(
            DatedAvailability(
                org_id=clinic.org_id,
                provider_id=uuid.UUID(ana),
                day=date(2030, 3, 5),
                start_min=18 * 60,
                end_min=19 * 60,
                replace=True,
            )
        )
    # Only 18:00-19:00 Madrid that day; a buffer may lie outside the hours.
    assert _starts(clinic.slots(service)) == ["2030-03-05T17:00:00Z", "2030-03-05T17:15:00Z"]
    assert clinic.book(service, "2030-03-05T17:15:00Z").status_code == 201
    # 17:00-17:45 plus its 15 minutes after would run into the 17:15 appointment.
    assert clinic.slots(service) == []


def test_any_provider_unions_and_spreads_fairly(clinic: Clinic) -> None:
    ana, ben = clinic.provider("Ana"), clinic.provider("Ben")
    service = clinic.service(ana, ben)
    slots = clinic.slots(service)
    assert sorted(slots[0]["providerIds"]) == sorted([ana, ben])
    chosen = []
    for i, hour in enumerate((8, 8, 9, 10)):
        r = clinic.book(service, f"2030-03-05T{hour:02d}:00:00Z", email=f"c{i}@example.com")
        assert r.status_code == 201, r.text
        chosen.append(r.json()["booking"]["providerId"])
    # Same time twice -> both providers; then the one with fewer bookings, then round-robin.
    assert set(chosen[:2]) == {ana, ben}
    assert chosen.count(ana) == chosen.count(ben) == 2
    third = clinic.book(service, "2030-03-05T08:00:00Z", email="late@example.com")
    assert third.status_code == 409


def test_a_service_that_needs_a_room_claims_one(clinic: Clinic, database: Database) -> None:
    ana, ben = clinic.provider("Ana"), clinic.provider("Ben")
    with database.write() as s:
        room = Room(org_id=clinic.org_id, name="Treatment 1", capacity=1, room_type="treatment")
        s.add(room)
        s.flush()
        room_id = str(room.id)
    service = clinic.service(ana, ben, room_type="treatment")
    assert len(clinic.slots(service)) == 8
    first = clinic.book(service, "2030-03-05T08:00:00Z")
    assert first.status_code == 201
    assert first.json()["booking"]["roomId"] == room_id
    # Ben is free at 08:00 but the only treatment room is not.
    assert "2030-03-05T08:00:00Z" not in _starts(clinic.slots(service))
    second = clinic.book(service, "2030-03-05T08:00:00Z", email="bob@example.com")
    assert second.status_code == 409


def test_group_service_shares_a_session_until_full(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider(), capacity=3)
    for i in range(3):
        r = clinic.book(service, "2030-03-05T10:00:00Z", email=f"p{i}@example.com")
        assert r.status_code == 201, r.text
    assert clinic.book(service, "2030-03-05T10:00:00Z", email="p4@example.com").status_code == 409
    with database.read() as s:
        sessions = (
            s.execute(select(Session).where(Session.service_id == uuid.UUID(service)))
            .scalars()
            .all()
        )
    assert [(x.booked_count, x.max_participants) for x in sessions] == [(3, 3)]


def test_recurring_all_or_nothing_and_skipped_dates(clinic: Clinic, database: Database) -> None:
    ana = clinic.provider()
    service = clinic.service(ana)
    clinic.book(service, "2030-03-19T09:00:00Z", email="taken@example.com")
    recurrence = {"everyWeeks": 1, "count": 4}
    refused = clinic.book(service, "2030-03-05T09:00:00Z", recurrence=recurrence)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["occurrences"] == [
        {"startTime": "2030-03-19T09:00:00+00:00", "reason": "fully_booked"}
    ]
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Session)).scalar_one() == 1
    ok = clinic.book(
        service,
        "2030-03-05T09:00:00Z",
        recurrence=recurrence | {"skipDates": ["2030-03-19"]},
    )
    assert ok.status_code == 201, ok.text
    bookings = ok.json()["bookings"]
    # 10:00 Madrid every week, across the switch to summer time on 31 March.
    assert [b["startTime"] for b in bookings] == [
        "2030-03-05T09:00:00Z",
        "2030-03-12T09:00:00Z",
        "2030-03-26T09:00:00Z",
    ]
    assert len({b["seriesId"] for b in bookings}) == 1
    second = bookings[1]
    cancel = clinic.client.put(
        f"/api/v1/public/bookings/{second['id']}/cancel",
        params={"token": second["manageToken"], "scope": "following"},
    )
    assert cancel.status_code == 200, cancel.text
    assert [b["startTime"] for b in cancel.json()["bookings"]] == [
        "2030-03-12T09:00:00Z",
        "2030-03-26T09:00:00Z",
    ]
    first = bookings[0]
    view = clinic.client.get(
        f"/api/v1/public/bookings/{first['id']}", params={"token": first["manageToken"]}
    )
    assert view.json()["status"] == "confirmed"


def test_management_link_views_moves_and_cancels_only_its_booking(
    clinic: Clinic, clock: Clock
) -> None:
    service = clinic.service(clinic.provider(), price_minor=0)
    booking = clinic.book(service, "2030-03-05T08:00:00Z").json()["booking"]
    other = clinic.book(service, "2030-03-05T12:00:00Z", email="x@example.com").json()["booking"]
    url = f"/api/v1/public/bookings/{booking['id']}"
    assert clinic.client.get(url, params={"token": other["manageToken"]}).status_code == 401
    assert clinic.client.get(url, params={"token": "nonsense"}).status_code == 401
    # Moving by less than the duration works: the old time is freed first.
    moved = clinic.client.put(
        f"{url}/reschedule",
        params={"token": booking["manageToken"]},
        json={"startTime": "2030-03-05T09:00:00Z"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["startTime"] == "2030-03-05T09:00:00Z"
    assert "2030-03-05T08:00:00Z" in _starts(clinic.slots(service))
    onto_other = clinic.client.put(
        f"{url}/reschedule",
        params={"token": booking["manageToken"]},
        json={"startTime": "2030-03-05T12:00:00Z"},
    )
    assert onto_other.status_code == 409
    assert (
        clinic.client.get(url, params={"token": booking["manageToken"]}).json()["startTime"]
        == "2030-03-05T09:00:00Z"
    )
    cancelled = clinic.client.put(f"{url}/cancel", params={"token": booking["manageToken"]})
    assert cancelled.status_code == 200
    assert cancelled.json()["bookings"][0]["status"] == "cancelled"
    assert "2030-03-05T09:00:00Z" in _starts(clinic.slots(service))
    clock.advance(days=1, hours=4)  # 2030-03-05 13:00Z: the 12:00 appointment has begun
    late = clinic.client.put(
        f"/api/v1/public/bookings/{other['id']}/cancel", params={"token": other["manageToken"]}
    )
    assert late.status_code == 409


def test_a_booking_converts_the_matching_lead(clinic: Clinic, database: Database) -> None:
    service = clinic.service(clinic.provider())
    with database.write() as s:
        s.add(
            Lead(
                org_id=clinic.org_id,
                email="ann@example.com",
                name="Ann",
                source="instagram",
                notes="asked about evenings",
            )
        )
    clinic.book(service, "2030-03-05T08:00:00Z", email="Ann@Example.com")
    clinic.book(service, "2030-03-05T09:00:00Z", email="ann@example.com")
    with database.read() as s:
        clients = s.execute(select(Client)).scalars().all()
        lead = s.execute(select(Lead)).scalar_one()
    assert len(clients) == 1
    assert clients[0].profile == {
        "referral_source": "instagram",
        "initial_notes": "asked about evenings",
        "converted_from_lead": str(lead.id),
        "auto_converted_via": "public_booking",
    }
    assert (lead.status, lead.client_id) == ("converted", clients[0].id)


def test_inactive_services_and_providers_are_not_public(clinic: Clinic, database: Database) -> None:
    ana = clinic.provider()
    active = clinic.service(ana, name="Active")
    clinic.service(ana, name="Retired", is_active=False)
    r = clinic.client.get(f"/api/v1/public/providers/{ana}/services")
    assert [s["id"] for s in r.json()] == [active]
    with database.write() as s:
        s.get(Provider, uuid.UUID(ana)).is_active = False  # type: ignore[union-attr]
    assert clinic.client.get(f"/api/v1/public/providers/{ana}").status_code == 404
    assert clinic.book(active, "2030-03-05T08:00:00Z").status_code == 409
