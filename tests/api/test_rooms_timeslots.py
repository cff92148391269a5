"""Rooms and timeslots through the HTTP API."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import Api


def test_admin_creates_updates_and_lists_rooms(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    room = api.room(
        admin,
        name="Board room",
        capacity=10,
        roomType="meeting",
        hourlyRate=45.5,
        metadata={"floor": 2},
    )
    assert room["hourlyRate"] == 45.5
    assert room["currency"] == "EUR"
    assert room["metadata"] == {"floor": 2}
    api.room(admin, name="Office", capacity=1, roomType="office")

    r = api.client.put(f"/api/v1/admin/rooms/{room['id']}", json={"capacity": 12}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["capacity"] == 12
    assert r.json()["name"] == "Board room"

    everything = api.client.get("/api/v1/bookings/rooms").json()
    assert {x["name"] for x in everything} == {"Board room", "Office"}
    meetings = api.client.get("/api/v1/bookings/rooms", params={"roomType": "meeting"}).json()
    assert [x["name"] for x in meetings] == ["Board room"]
    big = api.client.get("/api/v1/bookings/rooms", params={"capacity": 5}).json()
    assert [x["name"] for x in big] == ["Board room"]


def test_room_with_bookings_is_deactivated_and_unused_room_deleted(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    used = api.room(admin, name="Used")
    unused = api.room(admin, name="Unused")
    api.generate(admin, used["id"])
    api.generate(admin, unused["id"])
    slot = api.timeslots(used["id"], date="2030-03-05")[0]
    assert api.book(api.user(), slot["id"]).status_code == 201

    r = api.client.delete(f"/api/v1/admin/rooms/{used['id']}", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is False
    assert r.json()["room"]["isActive"] is False
    r = api.client.delete(f"/api/v1/admin/rooms/{unused['id']}", headers=admin)
    assert r.json() == {"deleted": True, "room": None}
    assert api.client.get(f"/api/v1/bookings/rooms/{unused['id']}/timeslots").status_code == 404

    # The deactivated room takes no new bookings and is hidden from the default listing.
    other = api.timeslots(used["id"], date="2030-03-05")[1]
    assert other["isAvailable"] is False
    r = api.book(api.user(), other["id"])
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "slot_unavailable"
    assert api.client.get("/api/v1/bookings/rooms").json() == []
    inactive = api.client.get("/api/v1/bookings/rooms", params={"isActive": "false"}).json()
    assert [x["name"] for x in inactive] == ["Used"]


def test_generation_prices_by_hourly_rate_and_never_duplicates(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    room = api.room(admin, hourlyRate=40)
    first = api.generate(
        admin, room["id"], slotDuration=90, workingHours={"start": "09:00", "end": "13:30"}
    )
    assert first["created"] == 3
    slots = api.timeslots(room["id"], date="2030-03-05")
    assert [s["price"] for s in slots] == [60.0, 60.0, 60.0]
    # Madrid is UTC+1 in March before the change: 09:00 local is 08:00Z.
    assert slots[0]["startTime"] == "2030-03-05T08:00:00Z"
    assert slots[0]["endTime"] == "2030-03-05T09:30:00Z"

    again = api.generate(
        admin, room["id"], slotDuration=90, workingHours={"start": "09:00", "end": "13:30"}
    )
    assert again["created"] == 0
    assert again["skipped"] == 3
    # A different grid over the same hours only fills what is free: 13:30-14:30.
    hourly = api.generate(
        admin, room["id"], slotDuration=60, workingHours={"start": "09:00", "end": "14:30"}
    )
    assert hourly["created"] == 0 or hourly["created"] == 1
    all_slots = api.timeslots(room["id"], date="2030-03-05")
    starts = [s["startTime"] for s in all_slots]
    assert len(starts) == len(set(starts))
    for a, b in itertools.pairwise(all_slots):
        assert a["endTime"] <= b["startTime"]
    assert [s["id"] for s in api.timeslots(room["id"], date="2030-03-05", duration=90)] == [
        s["id"] for s in slots
    ]


def test_generation_respects_weekdays_and_skips_the_past(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    room = api.room(admin)
    # 2030-03-03 is a Sunday (the past for the test clock), 03-04 Monday ... 03-10 Sunday.
    result = api.generate(
        admin,
        room["id"],
        startDate="2030-03-01",
        endDate="2030-03-10",
        weekdays=[1, 3],
        workingHours={"start": "10:00", "end": "12:00"},
    )
    # Monday 03-04 10:00 local = 09:00Z is not after the clock (09:00Z): only 11:00 counts.
    assert result["created"] == 1 + 2
    days = {s["startTime"][:10] for s in api.timeslots(room["id"], days=14)}
    assert days == {"2030-03-04", "2030-03-06"}


def test_generation_across_dst_keeps_local_hours(api: Api) -> None:
    api.org(timezone="America/New_York", currency="USD")
    admin = api.user(org="acme")
    room = api.room(admin)
    # US clocks spring forward on Sunday 2030-03-10.
    api.generate(
        admin,
        room["id"],
        startDate="2030-03-09",
        endDate="2030-03-11",
        workingHours={"start": "09:00", "end": "10:00"},
    )
    starts = [s["startTime"] for s in api.timeslots(room["id"], date="2030-03-09", days=3)]
    assert starts == ["2030-03-09T14:00:00Z", "2030-03-10T13:00:00Z", "2030-03-11T13:00:00Z"]


def test_room_validation_errors(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    cases: list[tuple[dict[str, Any], int]] = [
        ({"name": "", "capacity": 1, "roomType": "office"}, 422),
        ({"name": "X", "capacity": 0, "roomType": "office"}, 422),
        ({"name": "X", "capacity": 1, "roomType": "garage"}, 422),
        ({"name": "X", "capacity": "many", "roomType": "office"}, 422),
        ({"name": "X", "capacity": 1, "roomType": "office", "hourlyRate": -1}, 422),
        ({"name": "X", "capacity": 1, "roomType": "office", "hourlyRate": 10.001}, 422),
        ({"name": "X", "capacity": 1, "roomType": "office", "colour": "red"}, 422),
    ]
    for body, status in cases:
        r = api.client.post("/api/v1/admin/rooms", json=body, headers=admin)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}
    assert api.client.get("/api/v1/bookings/rooms").json() == []


def test_generation_validation_errors(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    room = api.room(admin)
    base = {
        "roomId": room["id"],
        "startDate": "2030-03-05",
        "endDate": "2030-03-06",
        "slotDuration": 60,
        "workingHours": {"start": "09:00", "end": "12:00"},
    }
    bad = [
        {"endDate": "2030-03-04"},  # end before start
        {"startDate": "2030-02-30"},  # impossible date
        {"slotDuration": -30},
        {"slotDuration": 10**9},
        {"slotDuration": 0},
        {"workingHours": {"start": "12:00", "end": "09:00"}},
        {"workingHours": {"start": "25:00", "end": "26:00"}},
        {"weekdays": [0, 8]},
        {"endDate": "2035-01-01"},  # too long a range
        {"roomId": "not-a-uuid"},
        {"maxBookings": 99},  # more than the room's capacity
    ]
    for change in bad:
        r = api.client.post("/api/v1/admin/timeslots/generate", json=base | change, headers=admin)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["error"]["message"]
    r = api.client.post(
        "/api/v1/admin/timeslots/generate",
        json=base | {"roomId": "00000000-0000-0000-0000-000000000000"},
        headers=admin,
    )
    assert r.status_code == 404
    assert api.timeslots(room["id"], date="2030-03-05") == []


def test_timeslot_listing_bad_queries(api: Api) -> None:
    api.org()
    admin = api.user(org="acme")
    room = api.room(admin)
    url = f"/api/v1/bookings/rooms/{room['id']}/timeslots"
    for params in (
        {"date": "2030-13-01"},
        {"duration": -5},
        {"duration": 100000},
        {"days": 0},
        {"limit": 100000},
    ):
        r = api.client.get(url, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    r = api.client.get("/api/v1/bookings/rooms/00000000-0000-0000-0000-000000000000/timeslots")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
