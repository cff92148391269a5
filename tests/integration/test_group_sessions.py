"""Workshops, courses and waitlists through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from boxoffice.db.models import Booking, Session
from boxoffice.db.session import Database
from boxoffice.domain.bookings import SEAT_HOLDING
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import Api, Clock, sent_mail
from tests.integration.test_payments import pay

START = "2030-03-10T16:00:00Z"
END = "2030-03-10T18:00:00Z"


@pytest.fixture
def admin(api: Api) -> dict[str, str]:
    api.org()
    return api.user(org="acme")


def workshop(api: Api, admin: dict[str, str], *, expect: int = 201, **fields: Any) -> Any:
    body = {"title": "Pottery", "startAt": START, "endAt": END, "maxParticipants": 2} | fields
    r = api.client.post("/api/v1/admin/sessions", json=body, headers=admin)
    assert r.status_code == expect, r.text
    return r.json()


def book(api: Api, customer: dict[str, str], session_id: str) -> Any:
    return api.client.post("/api/v1/bookings", json={"sessionId": session_id}, headers=customer)


def set_status(api: Api, admin: dict[str, str], session_id: str, status: str, **extra: Any) -> Any:
    return api.client.put(
        f"/api/v1/admin/sessions/{session_id}/status",
        json={"status": status} | extra,
        headers=admin,
    )


def subjects(settings: Settings) -> list[str]:
    return sorted(str(m["Subject"]).split(":")[0] for m in sent_mail(settings))


def seats_match_bookings(database: Database) -> None:
    with database.read() as s:
        held = dict(
            s.execute(
                select(Booking.session_id, func.count())
                .where(Booking.status.in_([x.value for x in SEAT_HOLDING]))
                .group_by(Booking.session_id)
            ).all()
        )
        for session in s.execute(select(Session)).scalars():
            assert held.get(session.id, 0) == session.booked_count <= session.max_participants


def test_a_workshop_takes_seats_until_full(api: Api, admin: dict[str, str]) -> None:
    w = workshop(api, admin)
    assert (w["kind"], w["status"], w["availableSpots"]) == ("workshop", "scheduled", 2)
    first, second, third = api.user(), api.user(), api.user()
    made = book(api, first, w["id"])
    assert made.status_code == 201, made.text
    assert made.json()["session"]["id"] == w["id"]
    assert made.json()["status"] == "confirmed"
    other = book(api, second, w["id"])
    assert other.status_code == 201
    full = book(api, third, w["id"])
    assert full.status_code == 409
    assert full.json()["error"]["code"] == "slot_full"
    assert "fully booked" in full.json()["error"]["message"]
    listed = api.client.get(
        "/api/v1/sessions",
        params={"org": "acme", "from": "2030-03-01T00:00:00Z", "to": "2030-04-01T00:00:00Z"},
    ).json()["sessions"]
    assert [(x["id"], x["availableSpots"]) for x in listed] == [(w["id"], 0)]
    detail = api.client.get(f"/api/v1/admin/sessions/{w['id']}", headers=admin).json()
    assert {a["bookingId"] for a in detail["attendees"]} == {made.json()["id"], other.json()["id"]}


def test_private_and_draft_sessions_are_neither_listed_nor_bookable(
    api: Api, admin: dict[str, str]
) -> None:
    private = workshop(api, admin, visibility="private")
    draft = workshop(
        api, admin, status="draft", startAt="2030-03-11T16:00:00Z", endAt="2030-03-11T18:00:00Z"
    )
    customer = api.user()
    for session in (private, draft):
        r = book(api, customer, session["id"])
        assert (r.status_code, r.json()["error"]["code"]) == (409, "slot_unavailable")
    listed = api.client.get(
        "/api/v1/sessions",
        params={"org": "acme", "from": "2030-03-01T00:00:00Z", "to": "2030-04-01T00:00:00Z"},
    ).json()["sessions"]
    assert listed == []
    assert set_status(api, admin, draft["id"], "scheduled").status_code == 200
    assert book(api, customer, draft["id"]).status_code == 201


def test_the_session_lifecycle_refuses_illegal_steps(
    api: Api, admin: dict[str, str], clock: Clock
) -> None:
    w = workshop(api, admin)
    bad = set_status(api, admin, w["id"], "completed")
    assert (bad.status_code, bad.json()["error"]["code"]) == (409, "illegal_transition")
    clock.now = datetime(2030, 3, 10, 16, 2, tzinfo=UTC)
    started = set_status(api, admin, w["id"], "in_progress")
    assert started.status_code == 200, started.text
    assert started.json()["actualStartAt"] == "2030-03-10T16:02:00Z"
    clock.now = datetime(2030, 3, 10, 17, 55, tzinfo=UTC)
    done = set_status(api, admin, w["id"], "completed")
    assert (done.json()["status"], done.json()["actualEndAt"]) == (
        "completed",
        "2030-03-10T17:55:00Z",
    )
    for target in ("scheduled", "canceled", "in_progress"):
        assert set_status(api, admin, w["id"], target).status_code == 409


def test_bad_sessions_are_refused_and_nothing_is_made(api: Api, admin: dict[str, str]) -> None:
    assert workshop(api, admin, endAt=START, expect=422)["error"]["code"] == "invalid_input"
    assert workshop(
        api, admin, startAt="2020-01-01T10:00:00Z", endAt="2020-01-01T11:00:00Z", expect=422
    )
    assert workshop(api, admin, maxParticipants=0, expect=422)
    room = api.room(admin, capacity=3)
    assert (
        "holds 3"
        in workshop(api, admin, roomId=room["id"], maxParticipants=4, expect=422)["error"][
            "message"
        ]
    )
    workshop(api, admin, roomId=room["id"], maxParticipants=3)
    clash = workshop(
        api,
        admin,
        roomId=room["id"],
        startAt="2030-03-10T17:00:00Z",
        endAt="2030-03-10T19:00:00Z",
        expect=409,
    )
    assert "another session" in clash["error"]["message"]
    customer = api.user()
    r = api.client.post(
        "/api/v1/admin/sessions",
        json={"title": "x", "startAt": START, "endAt": END, "maxParticipants": 2},
        headers=customer,
    )
    assert r.status_code == 403


def test_cancelling_a_session_refunds_everyone_in_full_and_tells_them(
    api: Api, admin: dict[str, str], worker: Worker, settings: Settings
) -> None:
    w = workshop(api, admin, price=40)
    paid, unpaid = api.user(), api.user()
    booking = book(api, paid, w["id"]).json()
    pay(api, booking)
    pending = book(api, unpaid, w["id"]).json()
    assert pending["status"] == "pending"
    worker.drain()
    r = set_status(api, admin, w["id"], "canceled", reason="the teacher is ill")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attendees"], r.json()["bookedCount"]) == (
        "canceled",
        [],
        0,
    )
    seen = api.booking(paid, booking["id"])
    assert (seen["status"], seen["refundedAmount"], seen["paymentStatus"]) == (
        "cancelled",
        40.0,
        "refunded",
    )
    assert api.booking(unpaid, pending["id"])["status"] == "cancelled"
    worker.drain()
    order = api.order(paid, booking["orderId"])
    assert [(x["amount"], x["status"]) for x in order["refunds"]] == [(40.0, "succeeded")]
    assert subjects(settings) == ["Booking cancelled", "Booking confirmed"]
    cancelled = [
        m for m in sent_mail(settings) if str(m["Subject"]).startswith("Booking cancelled")
    ]
    assert "40.00" in cancelled[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_moving_a_session_tells_its_attendees(
    api: Api, admin: dict[str, str], worker: Worker, settings: Settings
) -> None:
    w = workshop(api, admin)
    customer = api.user()
    assert book(api, customer, w["id"]).status_code == 201
    worker.drain()
    r = api.client.put(
        f"/api/v1/admin/sessions/{w['id']}",
        json={"startAt": "2030-03-12T16:00:00Z", "endAt": "2030-03-12T18:00:00Z"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    worker.drain()
    assert subjects(settings) == ["Booking confirmed", "Booking moved"]
    low = api.client.put(
        f"/api/v1/admin/sessions/{w['id']}", json={"maxParticipants": 1}, headers=admin
    )
    assert low.status_code == 200
    lower = api.client.put(
        f"/api/v1/admin/sessions/{w['id']}", json={"maxParticipants": 1}, headers=admin
    )
    assert lower.status_code == 200
    w2 = workshop(api, admin, startAt="2030-03-20T16:00:00Z", endAt="2030-03-20T18:00:00Z")
    book(api, api.user(), w2["id"])
    book(api, api.user(), w2["id"])
    refused = api.client.put(
        f"/api/v1/admin/sessions/{w2['id']}", json={"maxParticipants": 1}, headers=admin
    )
    assert refused.status_code == 409


# --- courses -------------------------------------------------------------------------------


def course(api: Api, admin: dict[str, str], *, expect: int = 201, **fields: Any) -> Any:
    body = {
        "title": "Spanish A1",
        "maxParticipants": 2,
        "price": 120,
        "durationMin": 90,
        "schedule": {"firstStartAt": "2030-03-19T17:00:00Z", "count": 3},
    } | fields
    r = api.client.post("/api/v1/admin/courses", json=body, headers=admin)
    assert r.status_code == expect, r.text
    return r.json()


def test_weekly_course_sessions_keep_their_local_time_across_dst(
    api: Api, admin: dict[str, str]
) -> None:
    # Madrid moves to summer time on Sunday 2030-03-31: 18:00 local is 17:00 UTC before
    # and 16:00 UTC after.
    c = course(api, admin)
    starts = [s["startAt"] for s in c["sessions"]]
    assert starts == ["2030-03-19T17:00:00Z", "2030-03-26T17:00:00Z", "2030-04-02T16:00:00Z"]
    zone = ZoneInfo("Europe/Madrid")
    local = {datetime.fromisoformat(x).astimezone(zone).strftime("%a %H:%M") for x in starts}
    assert local == {"Tue 18:00"}
    assert [s["sequenceNo"] for s in c["sessions"]] == [1, 2, 3]
    assert [s["title"] for s in c["sessions"]] == [f"Spanish A1 ({n}/3)" for n in (1, 2, 3)]
    assert (c["price"], c["availableSpots"], c["timezone"]) == (120.0, 2, "Europe/Madrid")


def test_enrolling_is_one_order_for_every_session(
    api: Api, admin: dict[str, str], worker: Worker, settings: Settings
) -> None:
    c = course(api, admin)
    customer = api.user()
    r = api.client.post(
        f"/api/v1/courses/{c['id']}/enroll", headers=customer | {"Idempotency-Key": "e1"}
    )
    assert r.status_code == 201, r.text
    enrolment = r.json()
    assert [b["price"] for b in enrolment["bookings"]] == [0.0, 0.0, 0.0]
    assert {b["status"] for b in enrolment["bookings"]} == {"pending"}
    assert enrolment["payment"]["amount"] == 120.0
    again = api.client.post(
        f"/api/v1/courses/{c['id']}/enroll", headers=customer | {"Idempotency-Key": "e1"}
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert [b["id"] for b in again.json()["bookings"]] == [b["id"] for b in enrolment["bookings"]]
    twice = api.client.post(f"/api/v1/courses/{c['id']}/enroll", headers=customer)
    assert twice.status_code == 409
    pay(api, enrolment)
    order = api.order(customer, enrolment["orderId"])
    assert (order["status"], order["total"], len(order["bookings"])) == ("paid", 120.0, 3)
    assert {b["status"] for b in order["bookings"]} == {"confirmed"}
    worker.drain()
    assert subjects(settings) == ["Booking confirmed"] * 3


def test_an_enrolment_needs_a_seat_in_every_session_or_books_nothing(
    api: Api, admin: dict[str, str], database: Database
) -> None:
    c = course(api, admin, dropInPrice=25, maxParticipants=1)
    # One drop-in takes the only seat of the second session.
    r = book(api, api.user(), c["sessions"][1]["id"])
    assert r.status_code == 201, r.text
    assert r.json()["price"] == 25.0
    refused = api.client.post(f"/api/v1/courses/{c['id']}/enroll", headers=api.user())
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["sessionId"] == c["sessions"][1]["id"]
    with database.read() as s:
        assert s.execute(select(func.count()).select_from(Booking)).scalar_one() == 1
    seats_match_bookings(database)
    got = api.client.get(f"/api/v1/courses/{c['id']}").json()
    assert [x["bookedCount"] for x in got["sessions"]] == [0, 1, 0]
    assert got["availableSpots"] == 0


def test_course_sessions_without_drop_ins_take_no_single_bookings(
    api: Api, admin: dict[str, str]
) -> None:
    c = course(api, admin)
    r = book(api, api.user(), c["sessions"][0]["id"])
    assert r.status_code == 409
    assert "enrol in the course" in r.json()["error"]["message"]


def test_a_cancelled_course_session_refunds_its_share(
    api: Api, admin: dict[str, str], worker: Worker
) -> None:
    c = course(api, admin, price=100)
    customer = api.user()
    enrolment = api.client.post(f"/api/v1/courses/{c['id']}/enroll", headers=customer).json()
    pay(api, enrolment)
    r = set_status(api, admin, c["sessions"][2]["id"], "canceled")
    assert r.status_code == 200, r.text
    worker.drain()
    order = api.order(customer, enrolment["orderId"])
    # 100.00 over 3 sessions: 33.34, 33.33, 33.33 by booking id; one of them goes back.
    assert [x["amount"] for x in order["refunds"]] in ([33.34], [33.33])
    assert order["status"] == "partially_refunded"
    whole = api.client.put(
        f"/api/v1/admin/courses/{c['id']}/status", json={"status": "canceled"}, headers=admin
    )
    assert whole.status_code == 200, whole.text
    worker.drain()
    order = api.order(customer, enrolment["orderId"])
    assert sum(x["amount"] for x in order["refunds"]) == 100.0
    assert order["status"] == "refunded"


# --- waitlists -----------------------------------------------------------------------------


def test_a_freed_seat_goes_to_the_first_one_waiting(
    api: Api, admin: dict[str, str], worker: Worker, settings: Settings, clock: Clock
) -> None:
    w = workshop(api, admin, maxParticipants=1, waitlistEnabled=True)
    holder, first, second = api.user(), api.user(), api.user()
    taken = book(api, holder, w["id"]).json()
    early = api.client.post(f"/api/v1/sessions/{w['id']}/waitlist", headers=first)
    assert early.status_code == 201, early.text
    assert early.json()["position"] == 1
    clock.advance(seconds=1)
    late = api.client.post(f"/api/v1/sessions/{w['id']}/waitlist", headers=second)
    assert late.json()["position"] == 2
    assert (
        api.client.post(f"/api/v1/sessions/{w['id']}/waitlist", headers=second).status_code == 409
    )
    worker.run_periodic(force=True)
    assert (
        api.client.get("/api/v1/waitlist", headers=first).json()["entries"][0]["status"]
        == "waiting"
    )

    assert (
        api.client.put(f"/api/v1/bookings/{taken['id']}/cancel", headers=holder).status_code == 200
    )
    assert worker.run_periodic(force=True)["waitlists"] == 1
    offer = api.client.get("/api/v1/waitlist", headers=first).json()["entries"][0]
    assert offer["status"] == "offered" and offer["bookingId"]
    assert api.booking(first, offer["bookingId"])["status"] == "pending"
    worker.drain()
    assert "A seat is free for you" in subjects(settings)

    # The offer runs out: the seat goes to the next one.
    clock.advance(minutes=16)
    worker.run_periodic(force=True)
    assert (
        api.client.get("/api/v1/waitlist", headers=first).json()["entries"][0]["status"]
        == "expired"
    )
    assert api.booking(first, offer["bookingId"])["status"] == "cancelled"
    second_offer = api.client.get("/api/v1/waitlist", headers=second).json()["entries"][0]
    assert second_offer["status"] == "offered"
    accepted = api.client.post(f"/api/v1/waitlist/{second_offer['id']}/accept", headers=second)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "confirmed"
    assert (
        api.client.post(f"/api/v1/waitlist/{offer['id']}/accept", headers=first).status_code == 409
    )


def test_a_priced_offer_is_paid_before_it_runs_out(
    api: Api, admin: dict[str, str], worker: Worker
) -> None:
    w = workshop(api, admin, maxParticipants=1, waitlistEnabled=True, price=30)
    holder, waiting = api.user(), api.user()
    taken = book(api, holder, w["id"]).json()
    entry = api.client.post(f"/api/v1/sessions/{w['id']}/waitlist", headers=waiting).json()
    assert (
        api.client.put(f"/api/v1/bookings/{taken['id']}/cancel", headers=holder).status_code == 200
    )
    worker.run_periodic(force=True)
    accepted = api.client.post(f"/api/v1/waitlist/{entry['id']}/accept", headers=waiting)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "pending"
    assert accepted.json()["payment"]["amount"] == 30.0
    pay(api, accepted.json())
    assert api.booking(waiting, accepted.json()["id"])["status"] == "confirmed"


def test_no_waitlist_while_seats_are_free(api: Api, admin: dict[str, str]) -> None:
    w = workshop(api, admin, waitlistEnabled=True)
    r = api.client.post(f"/api/v1/sessions/{w['id']}/waitlist", headers=api.user())
    assert r.status_code == 409 and "book one instead" in r.json()["error"]["message"]
    closed = workshop(
        api, admin, maxParticipants=1, startAt="2030-03-11T16:00:00Z", endAt="2030-03-11T18:00:00Z"
    )
    book(api, api.user(), closed["id"])
    r = api.client.post(f"/api/v1/sessions/{closed['id']}/waitlist", headers=api.user())
    assert r.status_code == 409 and "no waitlist" in r.json()["error"]["message"]
