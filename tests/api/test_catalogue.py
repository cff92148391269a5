"""The catalogue through the HTTP API: providers, services, schedules, dated hours, time
off, agenda, leads and clients; and lead -> client conversion, also under a race."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from boxoffice.db.models import Booking, Client, Lead, Organization, Provider, Session
from boxoffice.db.session import Database
from boxoffice.services import clients
from boxoffice.services.organizations import create_organization
from tests.conftest import Api

ADMIN = "/api/v1/admin"
NOW = datetime(2030, 3, 4, 9, tzinfo=UTC)


def _post(api: Api, headers: dict[str, str], path: str, body: Any, expect: int = 201) -> Any:
    r = api.client.post(ADMIN + path, json=body, headers=headers)
    assert r.status_code == expect, (body, r.text)
    return r.json()


def _provider(api: Api, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return _post(api, headers, "/providers", {"name": "Dr Who"} | fields)  # type: ignore[no-any-return]


def _service(api: Api, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return _post(api, headers, "/services", {"name": "Checkup", "duration": 30} | fields)  # type: ignore[no-any-return]


def _user_id(api: Api, headers: dict[str, str]) -> str:
    return api.client.get("/api/v1/auth/me", headers=headers).json()["id"]  # type: ignore[no-any-return]


def _appointment(
    database: Database, provider_id: str, service_id: str | None, start: datetime, **booking: Any
) -> uuid.UUID:
    """A provider's session with one booking, as a public booking would leave them."""
    with database.write() as s:
        provider_uuid = uuid.UUID(provider_id)
        org_id = s.execute(select(Provider.org_id).where(Provider.id == provider_uuid)).scalar_one()
        session = Session(
            org_id=org_id,
            kind="appointment",
            provider_id=provider_uuid,
            service_id=uuid.UUID(service_id) if service_id else None,
            start_at=start,
            end_at=start + timedelta(minutes=30),
            booked_count=1,
        )
        s.add(session)
        s.flush()
        values = {
            "status": "confirmed",
            "payment_status": "not_required",
            "price_minor": 0,
            "currency": "EUR",
            "customer_name": "Ada",
            "customer_email": "ada@example.com",
        } | booking
        s.add(Booking(org_id=org_id, session_id=session.id, **values))
        return session.id


# --- providers --------------------------------------------------------------------------


def test_providers_round_trip_and_delete_or_deactivate(api: Api, database: Database) -> None:
    api.org()
    admin = api.user(org="acme")
    who = _provider(api, admin, email=" Who@Example.COM ")
    assert (who["timezone"], who["email"], who["isActive"]) == (
        "Europe/Madrid",
        "who@example.com",
        True,
    )
    other = _provider(api, admin, name="Ana", timezone="America/New_York")

    listed = api.client.get(f"{ADMIN}/providers", headers=admin).json()
    assert [p["name"] for p in listed] == ["Ana", "Dr Who"]
    r = api.client.put(
        f"{ADMIN}/providers/{who['id']}",
        json={"timezone": "Europe/Lisbon", "email": None},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["timezone"], r.json()["email"], r.json()["name"]) == (
        "Europe/Lisbon",
        None,
        "Dr Who",
    )
    assert api.client.get(f"{ADMIN}/providers/{who['id']}", headers=admin).json() == r.json()

    _appointment(database, who["id"], None, NOW + timedelta(days=1))
    kept = api.client.delete(f"{ADMIN}/providers/{who['id']}", headers=admin).json()
    assert kept["deleted"] is False
    assert kept["provider"]["isActive"] is False
    gone = api.client.delete(f"{ADMIN}/providers/{other['id']}", headers=admin).json()
    assert gone == {"deleted": True, "provider": None}
    assert api.client.get(f"{ADMIN}/providers/{other['id']}", headers=admin).status_code == 404
    active = api.client.get(f"{ADMIN}/providers", params={"isActive": "true"}, headers=admin)
    assert active.json() == []


def test_provider_validation_errors_change_nothing(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    outsider = _user_id(api, api.user())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"name": "X", "timezone": "Mars/Olympus"}, "Unknown time zone"),
        ({"name": "X", "timezone": "Europe"}, "Unknown time zone"),
        ({"name": "X", "email": "not-an-email"}, "e-mail"),
        ({"name": "X", "userId": outsider}, "member of this organisation"),
        ({"name": "X", "colour": "red"}, "colour"),
    ]
    for body, message in cases:
        r = api.client.post(f"{ADMIN}/providers", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert message in r.json()["error"]["message"] + str(r.json()["error"]["details"])
    assert api.client.get(f"{ADMIN}/providers", headers=admin).json() == []
    who = _provider(api, admin)
    r = api.client.put(
        f"{ADMIN}/providers/{who['id']}", json={"timezone": "Nowhere"}, headers=admin
    )
    assert r.status_code == 422
    assert api.client.get(f"{ADMIN}/providers/{who['id']}", headers=admin).json() == who


# --- services ---------------------------------------------------------------------------


def test_services_round_trip_with_providers_and_money(api: Api, database: Database) -> None:
    api.org()
    admin = api.user(org="acme")
    ana, bob = _provider(api, admin, name="Ana"), _provider(api, admin, name="Bob")
    massage = _service(
        api,
        admin,
        name="Massage",
        description="Deep tissue",
        duration=50,
        price=45.5,
        capacity=2,
        bufferBefore=5,
        bufferAfter=10,
        minimumNotice=120,
        maxDaysAhead=90,
        slotStep=15,
        scheduleName="clinic",
        roomType="treatment",
        providerIds=[bob["id"], ana["id"], ana["id"]],
    )
    assert massage["price"] == 45.5
    assert massage["currency"] == "EUR"
    assert massage["providerIds"] == [ana["id"], bob["id"]]
    assert (massage["duration"], massage["slotStep"], massage["roomType"]) == (50, 15, "treatment")
    defaults = _service(api, admin)
    assert (defaults["capacity"], defaults["slotStep"], defaults["maxDaysAhead"]) == (1, None, 60)
    assert defaults["providerIds"] == []

    url = f"{ADMIN}/services/{massage['id']}"
    r = api.client.put(
        url,
        json={"providerIds": [bob["id"]], "scheduleName": None, "price": 50, "capacity": None},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["providerIds"], changed["scheduleName"], changed["price"]) == (
        [bob["id"]],
        None,
        50.0,
    )
    assert (changed["capacity"], changed["roomType"]) == (2, "treatment")
    assert api.client.get(url, headers=admin).json() == changed
    of_ana = api.client.get(f"{ADMIN}/services", params={"providerId": ana["id"]}, headers=admin)
    assert of_ana.json() == []
    of_bob = api.client.get(f"{ADMIN}/services", params={"providerId": bob["id"]}, headers=admin)
    assert [s["name"] for s in of_bob.json()] == ["Massage"]

    _appointment(database, bob["id"], massage["id"], NOW + timedelta(days=1))
    kept = api.client.delete(url, headers=admin).json()
    assert (kept["deleted"], kept["service"]["isActive"]) == (False, False)
    assert api.client.delete(f"{ADMIN}/services/{defaults['id']}", headers=admin).json() == {
        "deleted": True,
        "service": None,
    }
    assert [s["name"] for s in api.client.get(f"{ADMIN}/services", headers=admin).json()] == [
        "Massage"
    ]


def test_service_validation_errors_change_nothing(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    api.org("other")
    foreign = _provider(api, api.user(org="other"))
    base = {"name": "Checkup", "duration": 30}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"duration": 4}, "duration"),
        ({"duration": 1441}, "duration"),
        ({"slotStep": 4}, "slotStep"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 1001}, "capacity"),
        ({"bufferBefore": -1}, "bufferBefore"),
        ({"bufferAfter": 1441}, "bufferAfter"),
        ({"minimumNotice": -5}, "minimumNotice"),
        ({"maxDaysAhead": 0}, "maxDaysAhead"),
        ({"maxDaysAhead": 731}, "maxDaysAhead"),
        ({"roomType": "garage"}, "roomType"),
        ({"price": -1}, "price"),
        ({"price": 10.001}, "more decimals"),
        ({"providerIds": [foreign["id"]]}, "providerIds"),
        ({"providerIds": ["not-a-uuid"]}, "providerIds"),
        ({"kind": "course"}, "kind"),
    ]
    for change, message in bad:
        r = api.client.post(f"{ADMIN}/services", json=base | change, headers=admin)
        assert r.status_code == 422, (change, r.text)
        assert message in r.json()["error"]["message"], (change, r.text)
    assert api.client.get(f"{ADMIN}/services", headers=admin).json() == []
    service = _service(api, admin)
    for change, _ in bad[1:]:
        r = api.client.put(f"{ADMIN}/services/{service['id']}", json=change, headers=admin)
        assert r.status_code == 422, (change, r.text)
    assert api.client.get(f"{ADMIN}/services/{service['id']}", headers=admin).json() == service


# --- schedules, dated availability, time off ------------------------------------------


def test_schedules_blocks_and_the_one_default(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    who = _provider(api, admin)
    url = f"{ADMIN}/providers/{who['id']}/schedules"
    clinic = _post(
        api,
        admin,
        f"/providers/{who['id']}/schedules",
        {
            "name": "clinic",
            "blocks": [
                {"weekday": 0, "start": "09:00", "end": "13:00"},
                {"weekday": 0, "start": "15:00", "end": "19:30"},
                {"weekday": 4, "start": "22:00", "end": "24:00"},
            ],
        },
    )
    assert clinic["isDefault"] is True  # the first one
    assert clinic["timezone"] == "Europe/Madrid"
    assert clinic["blocks"][2] == {"weekday": 4, "start": "22:00", "end": "24:00"}
    online = _post(
        api,
        admin,
        f"/providers/{who['id']}/schedules",
        {"name": "online", "timezone": "UTC", "isDefault": True, "blocks": []},
    )
    listed = api.client.get(url, headers=admin).json()
    assert [(s["name"], s["isDefault"]) for s in listed] == [("online", True), ("clinic", False)]

    r = api.client.put(
        f"{url}/{clinic['id']}",
        json={"isDefault": True, "blocks": [{"weekday": 2, "start": "08:00", "end": "12:00"}]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["blocks"] == [{"weekday": 2, "start": "08:00", "end": "12:00"}]
    listed = api.client.get(url, headers=admin).json()
    assert [(s["name"], s["isDefault"]) for s in listed] == [("clinic", True), ("online", False)]
    r = api.client.put(f"{url}/{clinic['id']}", json={"isDefault": False}, headers=admin)
    assert r.status_code == 422
    assert "default" in r.json()["error"]["message"]
    r = api.client.put(f"{url}/{online['id']}", json={"name": "clinic"}, headers=admin)
    assert r.status_code == 409

    assert api.client.delete(f"{url}/{clinic['id']}", headers=admin).status_code == 204
    assert [(s["name"], s["isDefault"]) for s in api.client.get(url, headers=admin).json()] == [
        ("online", True)
    ]
    assert api.client.delete(f"{url}/{clinic['id']}", headers=admin).status_code == 404


def test_schedule_validation_errors_change_nothing(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    who = _provider(api, admin)
    url = f"{ADMIN}/providers/{who['id']}/schedules"

    def block(**b: Any) -> dict[str, Any]:
        return {"name": "clinic", "blocks": [{"weekday": 0, "start": "09:00", "end": "17:00"} | b]}

    cases: list[tuple[dict[str, Any], str]] = [
        (block(start="17:00", end="09:00"), "after the start"),
        (block(start="09:00", end="09:00"), "after the start"),
        (block(end="24:30"), "HH:MM"),
        (block(start="9:00"), "HH:MM"),
        (block(start=540), "HH:MM"),
        (block(weekday=7), "weekday"),
        ({"name": "clinic", "timezone": "Europe/Atlantis"}, "Unknown time zone"),
        ({"name": " "}, "name"),
        ({"name": "clinic", "blocks": [{"weekday": 0, "start": "09:00"}]}, "end"),
    ]
    for body, message in cases:
        r = api.client.post(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert message in r.json()["error"]["message"], (body, r.text)
    assert api.client.get(url, headers=admin).json() == []
    clinic = _post(api, admin, f"/providers/{who['id']}/schedules", block())
    r = api.client.put(f"{url}/{clinic['id']}", json=block(end="08:00"), headers=admin)
    assert r.status_code == 422
    r = api.client.put(f"{url}/{clinic['id']}", json={"timezone": "Nowhere/Else"}, headers=admin)
    assert r.status_code == 422
    assert api.client.get(url, headers=admin).json() == [clinic]


def test_dated_availability_modes(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    who, other = _provider(api, admin), _provider(api, admin, name="Other")
    path = f"/providers/{who['id']}/dated-availability"
    clinic = _post(api, admin, f"/providers/{who['id']}/schedules", {"name": "clinic"})
    foreign = _post(api, admin, f"/providers/{other['id']}/schedules", {"name": "clinic"})

    added = _post(api, admin, path, {"date": "2030-03-09", "start": "10:00", "end": "14:00"})
    assert (added["mode"], added["start"], added["end"], added["scheduleId"]) == (
        "add",
        "10:00",
        "14:00",
        None,
    )
    replaced = _post(
        api,
        admin,
        path,
        {
            "date": "2030-03-11",
            "mode": "replace",
            "start": "12:00",
            "end": "24:00",
            "scheduleId": clinic["id"],
        },
    )
    assert (replaced["mode"], replaced["end"], replaced["scheduleId"]) == (
        "replace",
        "24:00",
        clinic["id"],
    )
    closed = _post(api, admin, path, {"date": "2030-03-12", "mode": "closed"})
    assert (closed["mode"], closed["start"], closed["end"]) == ("closed", None, None)

    for body, status in [
        ({"date": "2030-03-12", "mode": "closed", "start": "09:00", "end": "10:00"}, 422),
        ({"date": "2030-03-12", "start": "09:00"}, 422),
        ({"date": "2030-03-12", "start": "11:00", "end": "10:00"}, 422),
        ({"date": "2030-03-12", "mode": "sometimes", "start": "09:00", "end": "10:00"}, 422),
        ({"date": "2030-02-30", "start": "09:00", "end": "10:00"}, 422),
        (
            {"date": "2030-03-12", "start": "09:00", "end": "10:00", "scheduleId": foreign["id"]},
            404,
        ),
    ]:
        r = api.client.post(ADMIN + path, json=body, headers=admin)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]

    url = ADMIN + path
    window = api.client.get(url, params={"from": "2030-03-10", "to": "2030-03-11"}, headers=admin)
    assert [d["id"] for d in window.json()] == [replaced["id"]]
    assert len(api.client.get(url, headers=admin).json()) == 3
    assert api.client.delete(f"{url}/{added['id']}", headers=admin).status_code == 204
    assert api.client.delete(f"{url}/{added['id']}", headers=admin).status_code == 404
    assert [d["mode"] for d in api.client.get(url, headers=admin).json()] == ["replace", "closed"]


def test_time_off_round_trip_and_errors(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    who = _provider(api, admin)
    url = f"{ADMIN}/providers/{who['id']}/time-off"
    week = _post(
        api,
        admin,
        f"/providers/{who['id']}/time-off",
        {
            "startAt": "2030-04-01T00:00:00+02:00",
            "endAt": "2030-04-08T00:00:00+02:00",
            "reason": "Holiday",
        },
    )
    assert (week["startAt"], week["endAt"], week["reason"]) == (
        "2030-03-31T22:00:00Z",
        "2030-04-07T22:00:00Z",
        "Holiday",
    )
    afternoon = _post(
        api,
        admin,
        f"/providers/{who['id']}/time-off",
        {"startAt": "2030-05-02T13:00:00Z", "endAt": "2030-05-02T18:00:00Z"},
    )
    for body in [
        {"startAt": "2030-05-02T13:00:00Z", "endAt": "2030-05-02T13:00:00Z"},
        {"startAt": "2030-05-02T13:00:00Z", "endAt": "2030-05-01T13:00:00Z"},
        {"startAt": "2030-01-01T00:00:00Z", "endAt": "2031-01-03T00:00:00Z"},
        {"startAt": "2030-05-02T13:00:00", "endAt": "2030-05-02T18:00:00"},
        {"startAt": "2030-05-02T13:00:00Z"},
    ]:
        r = api.client.post(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"]
    overlapping = api.client.get(
        url, params={"from": "2030-04-07T12:00:00Z", "to": "2030-05-02T13:00:01Z"}, headers=admin
    )
    assert [t["id"] for t in overlapping.json()] == [week["id"], afternoon["id"]]
    later = api.client.get(url, params={"from": "2030-04-08T00:00:00Z"}, headers=admin)
    assert [t["id"] for t in later.json()] == [afternoon["id"]]
    assert api.client.delete(f"{url}/{week['id']}", headers=admin).status_code == 204
    assert [t["id"] for t in api.client.get(url, headers=admin).json()] == [afternoon["id"]]


def test_agenda_lists_sessions_with_bookings(api: Api, database: Database) -> None:
    api.org()
    admin = api.user(org="acme")
    who = _provider(api, admin)
    service = _service(api, admin, providerIds=[who["id"]])
    first = _appointment(database, who["id"], service["id"], NOW + timedelta(days=1))
    _appointment(database, who["id"], service["id"], NOW + timedelta(days=40))
    url = f"{ADMIN}/providers/{who['id']}/agenda"
    r = api.client.get(
        url, params={"from": "2030-03-04T00:00:00Z", "to": "2030-03-06T00:00:00Z"}, headers=admin
    )
    assert r.status_code == 200, r.text
    agenda = r.json()
    assert (agenda["providerId"], agenda["timezone"]) == (who["id"], "Europe/Madrid")
    [session] = agenda["sessions"]
    assert (session["id"], session["serviceName"], session["startTime"]) == (
        str(first),
        "Checkup",
        "2030-03-05T09:00:00Z",
    )
    assert [(b["customerEmail"], b["status"]) for b in session["bookings"]] == [
        ("ada@example.com", "confirmed")
    ]
    for params in [
        {"from": "2030-03-04T00:00:00Z", "to": "2030-05-06T00:00:00Z"},  # 63 days
        {"from": "2030-03-06T00:00:00Z", "to": "2030-03-04T00:00:00Z"},
        {"from": "2030-03-04T00:00:00Z"},
        {"from": "2030-03-04T00:00:00", "to": "2030-03-05T00:00:00"},
    ]:
        r = api.client.get(url, params=params, headers=admin)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["message"]


# --- who may do what --------------------------------------------------------------------


def test_roles_and_organisations_are_enforced(api: Api) -> None:
    api.org()
    api.org("other")
    admin, staff, stranger = api.user(org="acme"), api.user(org="acme", role="staff"), api.user()
    other_admin = api.user(org="other")
    who = _provider(api, admin)
    for headers in (staff, stranger):
        r = api.client.post(f"{ADMIN}/providers", json={"name": "X"}, headers=headers)
        assert r.status_code == 403, r.text
        r = api.client.post(
            f"{ADMIN}/services", json={"name": "X", "duration": 30}, headers=headers
        )
        assert r.status_code == 403, r.text
        r = api.client.post(
            f"{ADMIN}/providers/{who['id']}/time-off",
            json={"startAt": "2030-05-02T13:00:00Z", "endAt": "2030-05-02T18:00:00Z"},
            headers=headers,
        )
        assert r.status_code == 403, r.text
    assert api.client.get(f"{ADMIN}/leads", headers=stranger).status_code == 403
    assert api.client.get(f"{ADMIN}/clients", headers=staff).status_code == 200
    assert api.client.get(f"{ADMIN}/providers").status_code == 401
    for path in ("", "/schedules", "/time-off", "/dated-availability"):
        r = api.client.get(f"{ADMIN}/providers/{who['id']}{path}", headers=other_admin)
        assert r.status_code == 404, (path, r.text)
    r = api.client.put(f"{ADMIN}/providers/{who['id']}", json={"name": "Mine"}, headers=other_admin)
    assert r.status_code == 404
    assert api.client.get(f"{ADMIN}/providers", headers=other_admin).json() == []


def test_linked_user_manages_only_their_own_calendar(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    ana_headers = api.user(org="acme", role="staff")
    ana = _provider(api, admin, name="Ana", userId=_user_id(api, ana_headers))
    bob = _provider(api, admin, name="Bob")
    off = {"startAt": "2030-05-02T13:00:00Z", "endAt": "2030-05-02T18:00:00Z"}

    mine = _post(api, ana_headers, f"/providers/{ana['id']}/time-off", off)
    assert [
        t["id"]
        for t in api.client.get(
            f"{ADMIN}/providers/{ana['id']}/time-off", headers=ana_headers
        ).json()
    ] == [mine["id"]]
    _post(api, ana_headers, f"/providers/{ana['id']}/schedules", {"name": "clinic"})
    r = api.client.get(
        f"{ADMIN}/providers/{ana['id']}/agenda",
        params={"from": "2030-03-04T00:00:00Z", "to": "2030-03-06T00:00:00Z"},
        headers=ana_headers,
    )
    assert r.status_code == 200, r.text
    assert api.client.get(f"{ADMIN}/providers/{ana['id']}", headers=ana_headers).status_code == 200
    r = api.client.delete(
        f"{ADMIN}/providers/{ana['id']}/time-off/{mine['id']}", headers=ana_headers
    )
    assert r.status_code == 204

    _post(api, ana_headers, f"/providers/{bob['id']}/time-off", off, expect=403)
    r = api.client.get(f"{ADMIN}/providers/{bob['id']}/schedules", headers=ana_headers)
    assert r.status_code == 403
    r = api.client.put(f"{ADMIN}/providers/{ana['id']}", json={"name": "Boss"}, headers=ana_headers)
    assert r.status_code == 403
    # A user manages one provider at most.
    r = api.client.put(
        f"{ADMIN}/providers/{bob['id']}", json={"userId": ana["userId"]}, headers=admin
    )
    assert r.status_code == 409


# --- leads and clients ------------------------------------------------------------------


def test_leads_and_clients_api(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    lead = _post(
        api, admin, "/leads", {"email": " Eve@Example.com", "name": "Eve", "source": "fair"}
    )
    assert (lead["email"], lead["status"], lead["clientId"]) == ("eve@example.com", "new", None)
    _post(api, admin, "/leads", {"email": "eve@example.COM"}, expect=409)
    for body in (
        {"email": "nope"},
        {"email": "x@example.com", "status": "converted"},
        {"email": "x@example.com", "status": "lost"},
    ):
        _post(api, admin, "/leads", body, expect=422)
    _post(api, admin, "/leads", {"email": "max@example.com", "status": "contacted"})

    r = api.client.put(
        f"{ADMIN}/leads/{lead['id']}",
        json={"status": "contacted", "notes": "Called"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["notes"], r.json()["source"]) == (
        "contacted",
        "Called",
        "fair",
    )
    r = api.client.put(f"{ADMIN}/leads/{lead['id']}", json={"status": "converted"}, headers=admin)
    assert r.status_code == 422
    page = api.client.get(f"{ADMIN}/leads", params={"status": "contacted"}, headers=admin).json()
    assert page["total"] == 2
    page = api.client.get(f"{ADMIN}/leads", params={"email": "EVE"}, headers=admin).json()
    assert [x["id"] for x in page["items"]] == [lead["id"]]
    assert (
        api.client.get(f"{ADMIN}/leads", params={"status": "lost"}, headers=admin).status_code
        == 422
    )

    client = _post(
        api, admin, "/clients", {"email": "Zed@example.com", "name": "Zed", "phone": "+34 600"}
    )
    assert (client["email"], client["profile"]) == ("zed@example.com", {})
    _post(api, admin, "/clients", {"email": "zed@EXAMPLE.com"}, expect=409)
    _post(api, admin, "/clients", {"email": "amy@example.com"})
    everyone = api.client.get(f"{ADMIN}/clients", headers=admin).json()
    assert [c["email"] for c in everyone["items"]] == ["amy@example.com", "zed@example.com"]
    found = api.client.get(f"{ADMIN}/clients", params={"email": "zed@"}, headers=admin).json()
    assert (found["total"], found["items"][0]["id"]) == (1, client["id"])
    assert (
        api.client.get(f"{ADMIN}/clients", params={"email": "%"}, headers=admin).json()["total"]
        == 0
    )


def _org_id(database: Database, slug: str = "acme") -> uuid.UUID:
    with database.read() as s:
        return s.execute(select(Organization.id).where(Organization.slug == slug)).scalar_one()


def test_booking_converts_a_lead_once(api: Api, database: Database) -> None:
    api.org()
    api.org("other")
    admin = api.user(org="acme")
    lead = _post(
        api,
        admin,
        "/leads",
        {"email": "eve@example.com", "source": "fair", "notes": "Likes mornings"},
    )
    _post(api, api.user(org="other"), "/leads", {"email": "eve@example.com", "source": "web"})
    org_id = _org_id(database)

    with database.write() as s:
        client = clients.convert_lead_on_booking(
            s, org_id, "EVE@example.com", "Eve", "+34 600", NOW
        )
        client_id, first_profile = client.id, dict(client.profile)
    assert first_profile == {
        "referral_source": "fair",
        "initial_notes": "Likes mornings",
        "converted_from_lead": lead["id"],
        "auto_converted_via": "public_booking",
    }
    with database.write() as s:
        again = clients.convert_lead_on_booking(
            s, org_id, "eve@example.com", "Someone", None, NOW + timedelta(days=1)
        )
        assert (again.id, again.profile, again.name, again.phone) == (
            client_id,
            first_profile,
            "Eve",
            "+34 600",
        )

    leads = api.client.get(f"{ADMIN}/leads", headers=admin).json()["items"]
    assert [(x["status"], x["clientId"]) for x in leads] == [("converted", str(client_id))]
    assert leads[0]["updatedAt"] == "2030-03-04T09:00:00Z"  # the second call changed nothing
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Client)).scalar_one() == 1
        other_lead = s.execute(select(Lead).where(Lead.org_id != org_id)).scalar_one()
        assert (other_lead.status, other_lead.client_id) == ("new", None)


def test_conversion_reuses_an_existing_client(api: Api, database: Database) -> None:
    api.org()
    admin = api.user(org="acme")
    existing = _post(api, admin, "/clients", {"email": "eve@example.com", "name": "Eve E."})
    lead = _post(api, admin, "/leads", {"email": "eve@example.com", "name": "Eve", "source": "ad"})
    with database.write() as s:
        client = clients.convert_lead_on_booking(
            s, _org_id(database), "eve@example.com", "E", "1", NOW
        )
        assert str(client.id) == existing["id"]
        assert client.name == "Eve E."
        assert client.profile["converted_from_lead"] == lead["id"]
        assert client.profile["referral_source"] == "ad"
    # Without a lead, a booking just finds or makes the client.
    with database.write() as s:
        plain = clients.convert_lead_on_booking(
            s, _org_id(database), "new@example.com", "New", None, NOW
        )
        assert (plain.profile, plain.name) == ({}, "New")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("with_lead", [True, False])
def test_concurrent_conversions_make_one_client(database: Database, with_lead: bool) -> None:
    """The second call waits for the first one's uncommitted client (on the lead's row
    lock, or on the unique key), then finds it."""
    with database.write() as s:
        org_id = create_organization(s, slug="race", name="R", timezone="UTC", currency="EUR").id
        if with_lead:
            clients.create_lead(s, org_id=org_id, email="eve@example.com", source="fair")
    second: list[Any] = []

    def convert_second() -> None:
        try:
            with database.write() as s:
                client = clients.convert_lead_on_booking(
                    s, org_id, "eve@example.com", "E", None, NOW
                )
                second.append((client.id, dict(client.profile)))
        except Exception as exc:  # reported by the assertion below
            second.append(exc)

    with database.write() as s:
        first = clients.convert_lead_on_booking(s, org_id, "Eve@example.com", "Eve", None, NOW)
        first_id, first_profile = first.id, dict(first.profile)
        thread = threading.Thread(target=convert_second)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive()  # blocked behind this transaction
    thread.join(timeout=30)
    assert second == [(first_id, first_profile)]
    assert first_profile.get("referral_source") == ("fair" if with_lead else None)
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Client)).scalar_one() == 1
