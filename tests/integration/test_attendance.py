"""Attendance: LiveKit's signed webhooks, the organiser's check-ins and corrections, the
worker's no-shows and a course's completion rate, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from livekit import api as lk
from sqlalchemy import func, select
from starlette.testclient import TestClient

from boxoffice.app import create_app
from boxoffice.db.models import Attendance, Booking, BookingStatusChange, Course, Session
from boxoffice.db.session import Database
from boxoffice.domain.bookings import BookingStatus, PaymentStatus
from boxoffice.services import attendance, auth, bookings, orders
from boxoffice.services.attendance import PresenceEvent, Source
from boxoffice.services.organizations import get_organization, get_organization_by_slug
from boxoffice.settings import Settings
from boxoffice.worker.dispatcher import Worker
from tests.conftest import PASSWORD, Api, Clock

KEY = "APIattendance"
SECRET = "attendance-secret-" + "x" * 24
WEBHOOK = "/api/v1/attendance/webhook/livekit"
START = datetime(2030, 3, 5, 10, 0, tzinfo=UTC)  # the test clock starts a day before
END = START + timedelta(hours=1)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"livekit_api_key": KEY, "livekit_api_secret": SECRET})


@dataclass(frozen=True)
class Org:
    slug: str
    id: uuid.UUID
    admin: dict[str, str]


def make_org(api: Api, slug: str = "acme") -> Org:
    api.org(slug, payments_enabled=False)
    admin = api.user(org=slug)
    with api.database.read() as s:
        org_id = get_organization_by_slug(s, slug).id
    return Org(slug, org_id, admin)


@pytest.fixture
def org(api: Api) -> Org:
    return make_org(api)


def new_session(
    database: Database,
    org_id: uuid.UUID,
    *,
    start: datetime = START,
    track: bool = True,
    course_id: uuid.UUID | None = None,
) -> uuid.UUID:
    with database.write() as s:
        session = Session(
            org_id=org_id,
            kind="course" if course_id else "workshop",
            title="Pottery",
            start_at=start,
            end_at=start + timedelta(hours=1),
            status="scheduled",
            max_participants=10,
            track_attendance=track,
            course_id=course_id,
        )
        s.add(session)
        s.flush()
        return session.id


def new_user(database: Database, name: str = "Ana") -> uuid.UUID:
    with database.write() as s:
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        return auth.register_user(s, email=email, password=PASSWORD, name=name).id


def new_booking(
    database: Database,
    session_id: uuid.UUID,
    now: datetime,
    *,
    user_id: uuid.UUID | None = None,
    customer: bookings.Customer | None = None,
) -> uuid.UUID:
    """A confirmed booking (the sessions are free) for a user, a guest or a new user."""
    if user_id is None and customer is None:
        user_id = new_user(database)
    with database.write() as s:
        session = s.get(Session, session_id)
        assert session is not None and bookings.try_take_seat(s, session)
        booking = bookings.add_booking(
            s, session, currency="EUR", notes="", now=now, user_id=user_id, customer=customer
        )
        assert booking.status == BookingStatus.CONFIRMED
        return booking.id


def status_of(database: Database, booking_id: uuid.UUID) -> str:
    with database.read() as s:
        return s.execute(select(Booking.status).where(Booking.id == booking_id)).scalar_one()


def attendance_rows(database: Database) -> int:
    with database.read() as s:
        return s.execute(select(func.count()).select_from(Attendance)).scalar_one()


def listing(api: Api, org: Org, session_id: uuid.UUID) -> dict[str, Any]:
    r = api.client.get(f"/api/v1/admin/sessions/{session_id}/attendance", headers=org.admin)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def entry(api: Api, org: Org, session_id: uuid.UUID, booking_id: uuid.UUID) -> dict[str, Any]:
    items = {i["bookingId"]: i for i in listing(api, org, session_id)["items"]}
    return items[str(booking_id)]  # type: ignore[no-any-return]


# --- LiveKit webhooks -------------------------------------------------------------------------


def lk_event(
    kind: str,
    session_id: uuid.UUID | str,
    identity: uuid.UUID | str,
    at: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A webhook body as LiveKit sends it (protobuf JSON: int64 as a string)."""
    room = session_id if isinstance(session_id, str) else f"session-{session_id}"
    return {
        "event": kind,
        "id": event_id or f"EV_{uuid.uuid4().hex[:12]}",
        "createdAt": str(int(at.timestamp())),
        "room": {"sid": "RM_test", "name": room},
        "participant": {"sid": "PA_test", "identity": str(identity), "name": "Ana"},
    }


def lk_token(
    signed_body: str | None,
    *,
    key: str = KEY,
    secret: str = SECRET,
    ttl: timedelta = timedelta(minutes=5),
) -> str:
    """The Authorization LiveKit sends: a JWT from the API key carrying the body's hash."""
    token = lk.AccessToken(key, secret).with_ttl(ttl)
    if signed_body is not None:
        digest = hashlib.sha256(signed_body.encode()).digest()
        token = token.with_sha256(base64.b64encode(digest).decode())
    return token.to_jwt()


def post_webhook(
    client: TestClient,
    event: dict[str, Any],
    *,
    authorization: str | None = None,
    body: str | None = None,
) -> Any:
    """Post ``event`` signed as LiveKit would (unless another ``authorization`` or a
    ``body`` other than the signed one is given)."""
    signed = json.dumps(event)
    headers = {"Content-Type": "application/webhook+json"}
    headers["Authorization"] = authorization if authorization is not None else lk_token(signed)
    if authorization == "":
        del headers["Authorization"]
    return client.post(WEBHOOK, content=body if body is not None else signed, headers=headers)


def test_livekit_join_and_leave_make_a_stay_with_its_duration(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    joined = lk_event("participant_joined", session_id, booking_id, START + timedelta(minutes=2))
    r = post_webhook(api.client, joined)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "outcome": "joined"}
    assert entry(api, org, session_id, booking_id)["isPresent"] is True

    # LiveKit delivers the same event again: still one stay.
    assert post_webhook(api.client, joined).json()["outcome"] == "duplicate"
    left = lk_event("participant_left", session_id, booking_id, START + timedelta(minutes=47))
    assert post_webhook(api.client, left).json()["outcome"] == "left"
    assert post_webhook(api.client, left).json()["outcome"] == "not_in"

    seen = entry(api, org, session_id, booking_id)
    assert seen["stays"] == [
        {
            "source": "livekit",
            "joinedAt": "2030-03-05T10:02:00Z",
            "leftAt": "2030-03-05T10:47:00Z",
            "durationSeconds": 45 * 60,
        }
    ]
    assert (seen["attended"], seen["isPresent"], seen["totalDurationSeconds"]) == (
        True,
        False,
        2700,
    )
    assert seen["customerName"] == "Ana"
    with database.read() as s:
        row = s.execute(select(Attendance)).scalar_one()
    assert row.external_id == f"livekit:{joined['id']}"


def test_someone_who_drops_and_rejoins_has_two_stays_and_the_total(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    at = START

    def send(kind: str, minute: int, event_id: str | None = None) -> str:
        event = lk_event(kind, session_id, booking_id, at + timedelta(minutes=minute), event_id)
        r = post_webhook(api.client, event)
        assert r.status_code == 200, r.text
        return str(r.json()["outcome"])

    assert send("participant_joined", 0) == "joined"
    assert send("participant_joined", 1) == "already_in"  # a second device, say
    assert send("participant_left", 10, "EV_first_leave") == "left"
    assert send("participant_joined", 15) == "joined"
    # The first leave delivered again after the rejoin leaves the new stay open.
    assert send("participant_left", 10, "EV_first_leave") == "not_in"
    assert entry(api, org, session_id, booking_id)["isPresent"] is True
    assert send("participant_left", 55) == "left"

    seen = entry(api, org, session_id, booking_id)
    assert [s["durationSeconds"] for s in seen["stays"]] == [600, 2400]
    assert seen["totalDurationSeconds"] == 3000


@pytest.mark.parametrize(
    "forgery",
    ["unsigned", "wrong secret", "wrong key", "tampered body", "stale", "no body hash", "garbage"],
)
def test_webhooks_that_do_not_verify_are_400_and_change_nothing(
    api: Api, org: Org, database: Database, clock: Clock, forgery: str
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    event = lk_event("participant_joined", session_id, booking_id, START)
    signed = json.dumps(event)
    body = None
    authorization = {
        "unsigned": "",
        "wrong secret": lk_token(signed, secret="another-secret-" + "y" * 24),
        "wrong key": lk_token(signed, key="APIother"),
        "stale": lk_token(signed, ttl=timedelta(minutes=-10)),
        "no body hash": lk_token(None),
        "garbage": "Bearer not.a.jwt",
        "tampered body": lk_token(signed),
    }[forgery]
    if forgery == "tampered body":
        other = uuid.uuid4()
        body = signed.replace(str(booking_id), str(other))
        assert body != signed
    r = post_webhook(api.client, event, authorization=authorization, body=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_signature"
    assert attendance_rows(database) == 0
    # The genuine event still goes through afterwards.
    assert post_webhook(api.client, event).json()["outcome"] == "joined"


def test_a_signed_body_that_is_not_an_event_is_refused(api: Api, org: Org) -> None:
    body = "not json"
    r = api.client.post(WEBHOOK, content=body, headers={"Authorization": lk_token(body)})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"


def test_events_that_are_not_ours_are_acknowledged_and_ignored(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    other_session = new_session(database, org.id, start=START + timedelta(days=1))
    booking_id = new_booking(database, session_id, clock.now)
    cases = [
        (lk_event("room_started", session_id, booking_id, START), "ignored"),
        (lk_event("track_published", session_id, booking_id, START), "ignored"),
        (lk_event("participant_joined", "lobby", booking_id, START), "ignored"),
        (lk_event("participant_joined", str(session_id), booking_id, START), "ignored"),
        (lk_event("participant_joined", session_id, "host-maria", START), "ignored"),
        # Well-formed, but the booking cannot be in that room: acknowledged, not recorded.
        (lk_event("participant_joined", other_session, booking_id, START), "rejected"),
        (lk_event("participant_joined", uuid.uuid4(), booking_id, START), "rejected"),
        (lk_event("participant_joined", session_id, uuid.uuid4(), START), "rejected"),
    ]
    for event, outcome in cases:
        r = post_webhook(api.client, event)
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == outcome, event
    assert attendance_rows(database) == 0


def test_cancelled_bookings_cannot_attend(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    with database.write() as s:
        bookings.cancel_booking(
            s,
            booking_id,
            bookings.Owner(org_id=org.id),
            actor_id=None,
            reason="changed plans",
            by_organiser=True,
            now=clock.now,
        )
    event = lk_event("participant_joined", session_id, booking_id, START)
    assert post_webhook(api.client, event).json()["outcome"] == "rejected"
    r = api.client.post(
        f"/api/v1/admin/sessions/{session_id}/attendance",
        json={"bookingId": str(booking_id), "action": "check_in"},
        headers=org.admin,
    )
    assert r.status_code == 409
    assert r.json()["error"]["message"].startswith("A cancelled booking cannot attend")
    assert attendance_rows(database) == 0


def test_the_webhook_is_404_until_livekit_is_configured(
    settings: Settings, database: Database
) -> None:
    bare = settings.model_copy(update={"livekit_api_key": None, "livekit_api_secret": None})
    with TestClient(create_app(bare, database), raise_server_exceptions=False) as client:
        event = lk_event("participant_joined", uuid.uuid4(), uuid.uuid4(), START)
        r = post_webhook(client, event)
    assert r.status_code == 404
    assert "not configured" in r.json()["error"]["message"]


def test_the_same_join_delivered_twice_at_once_is_one_stay(
    org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    event = PresenceEvent(
        kind="join",
        session_id=session_id,
        booking_id=booking_id,
        at=START,
        source=Source.LIVEKIT,
        external_id="livekit:EV_race",
    )
    rejoin = PresenceEvent(
        kind="join",
        session_id=session_id,
        booking_id=booking_id,
        at=START,
        source=Source.LIVEKIT,
        external_id="livekit:EV_other_device",
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deliver(e: PresenceEvent) -> None:
        barrier.wait()
        with database.write() as s:
            outcomes.append(attendance.apply_presence_event(s, e, now=clock.now))

    threads = [threading.Thread(target=deliver, args=(e,)) for e in (event, event, rejoin, rejoin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("joined") == 1
    assert set(outcomes) <= {"joined", "duplicate", "already_in"}
    assert attendance_rows(database) == 1


# --- the organiser's view and check-ins -------------------------------------------------------


def mark(api: Api, headers: dict[str, str], session_id: uuid.UUID, **body: Any) -> Any:
    return api.client.post(
        f"/api/v1/admin/sessions/{session_id}/attendance",
        json={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in body.items()},
        headers=headers,
    )


def test_organiser_records_joins_leaves_and_check_ins(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    ana = new_booking(database, session_id, clock.now)
    guest = bookings.Customer(name="Bea Guest", email="bea@example.com")
    bea = new_booking(database, session_id, clock.now, customer=guest)
    absent = new_booking(database, session_id, clock.now)
    clock.now = START + timedelta(minutes=5)

    r = mark(api, org.admin, session_id, bookingId=ana, action="join", at="2030-03-05T11:01+01:00")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "joined"
    assert mark(api, org.admin, session_id, bookingId=ana, action="join").json()["outcome"] == (
        "already_in"
    )
    clock.now = START + timedelta(minutes=31)
    r = mark(api, org.admin, session_id, bookingId=ana, action="leave")
    assert r.json()["outcome"] == "left"
    assert r.json()["attendance"]["totalDurationSeconds"] == 30 * 60
    r = mark(api, org.admin, session_id, bookingId=ana, action="leave")
    assert r.status_code == 409
    assert "no open stay" in r.json()["error"]["message"]

    staff = api.user(org=org.slug, role="staff")
    r = mark(api, staff, session_id, bookingId=bea, action="check_in")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "checked_in"
    again = mark(api, staff, session_id, bookingId=bea, action="check_in")
    assert again.json()["outcome"] == "already_checked_in"

    view = listing(api, org, session_id)
    assert (view["trackAttendance"], view["attendedCount"]) == (True, 2)
    items = {i["bookingId"]: i for i in view["items"]}
    assert set(items) == {str(ana), str(bea), str(absent)}
    assert items[str(bea)]["customerName"] == "Bea Guest"
    assert items[str(bea)]["checkedInAt"] == "2030-03-05T10:31:00Z"
    assert (items[str(bea)]["attended"], items[str(bea)]["stays"]) == (True, [])
    assert items[str(ana)]["stays"][0]["source"] == "api"
    assert items[str(ana)]["stays"][0]["joinedAt"] == "2030-03-05T10:01:00Z"
    assert (items[str(absent)]["attended"], items[str(absent)]["totalDurationSeconds"]) == (
        False,
        0,
    )


def test_attendance_routes_refuse_what_they_must(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    session_id = new_session(database, org.id)
    other_session = new_session(database, org.id, start=START + timedelta(days=1))
    booking_id = new_booking(database, session_id, clock.now)
    elsewhere = new_booking(database, other_session, clock.now)
    rival = make_org(api, "rival")
    rival_session = new_session(database, rival.id)

    def code(headers: dict[str, str], sid: uuid.UUID, **body: Any) -> tuple[int, str]:
        r = mark(api, headers, sid, **({"bookingId": booking_id, "action": "check_in"} | body))
        return r.status_code, r.json().get("error", {}).get("message", "")

    assert code(api.user(org=org.slug, role="scanner"), session_id)[0] == 403
    assert code(api.user(), session_id)[0] == 403
    assert api.client.get(f"/api/v1/admin/sessions/{session_id}/attendance").status_code == 401
    assert code(org.admin, uuid.uuid4()) == (404, "Session not found.")
    assert code(org.admin, rival_session) == (404, "Session not found.")
    assert code(rival.admin, session_id) == (404, "Session not found.")
    assert code(org.admin, session_id, bookingId=uuid.uuid4()) == (404, "Booking not found.")
    assert code(org.admin, session_id, bookingId=elsewhere) == (
        404,
        "That booking is not for this session.",
    )
    status, _ = code(org.admin, session_id, at=(clock.now + timedelta(hours=1)).isoformat())
    assert status == 422
    status, _ = code(org.admin, session_id, action="wave")
    assert status == 422
    assert attendance_rows(database) == 0


# --- the worker's no-shows and the organiser's corrections ------------------------------------


def test_the_worker_marks_no_shows_where_attendance_is_tracked(
    api: Api, org: Org, database: Database, clock: Clock, worker: Worker
) -> None:
    tracked = new_session(database, org.id)
    untracked = new_session(database, org.id, track=False)
    came = new_booking(database, tracked, clock.now)
    checked_in = new_booking(database, tracked, clock.now)
    missing = new_booking(database, tracked, clock.now)
    not_tracked = new_booking(database, untracked, clock.now)
    joined = lk_event("participant_joined", tracked, came, START + timedelta(minutes=3))
    assert post_webhook(api.client, joined).json()["outcome"] == "joined"
    clock.now = START + timedelta(minutes=10)
    assert mark(api, org.admin, tracked, bookingId=checked_in, action="check_in").status_code == 200

    assert worker.run_periodic(force=True)["complete_sessions"] == 0  # not over yet
    clock.now = END + timedelta(minutes=1)
    assert worker.run_periodic(force=True)["complete_sessions"] == 2
    assert worker.run_periodic(force=True)["complete_sessions"] == 0

    assert status_of(database, came) == "completed"  # still in the room (no leave): attended
    assert status_of(database, checked_in) == "completed"
    assert status_of(database, missing) == "no_show"
    assert status_of(database, not_tracked) == "completed"
    with database.read() as s:
        change = (
            s.execute(
                select(BookingStatusChange)
                .where(BookingStatusChange.booking_id == missing)
                .order_by(BookingStatusChange.id.desc())
            )
            .scalars()
            .first()
        )
    assert change is not None
    assert (change.from_status, change.to_status, change.reason) == (
        "confirmed",
        "no_show",
        "no attendance",
    )
    assert listing(api, org, tracked)["status"] == "completed"


def correct(api: Api, org: Org, session_id: uuid.UUID, booking_id: uuid.UUID, **body: Any) -> Any:
    return api.client.put(
        f"/api/v1/admin/sessions/{session_id}/attendance/{booking_id}",
        json=body,
        headers=org.admin,
    )


def test_organiser_corrects_a_no_show_and_back(
    api: Api, org: Org, database: Database, clock: Clock, worker: Worker
) -> None:
    session_id = new_session(database, org.id)
    booking_id = new_booking(database, session_id, clock.now)
    r = correct(api, org, session_id, booking_id, attended=True)
    assert r.status_code == 409  # the session has not started
    assert "once the session has started" in r.json()["error"]["message"]

    clock.now = END + timedelta(minutes=1)
    worker.run_periodic(force=True)
    assert status_of(database, booking_id) == "no_show"

    clock.now = END + timedelta(hours=2)
    r = correct(api, org, session_id, booking_id, attended=True, reason="was in the back row")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attended"]) == ("completed", True)
    assert r.json()["checkedInAt"] == "2030-03-05T11:00:00Z"  # the session's end at the latest
    assert status_of(database, booking_id) == "completed"
    # Asked again: nothing more to do.
    assert correct(api, org, session_id, booking_id, attended=True).json()["status"] == "completed"
    assert attendance_rows(database) == 1

    r = correct(api, org, session_id, booking_id, attended=False)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attended"], r.json()["checkedInAt"]) == (
        "no_show",
        False,
        None,
    )
    assert attendance_rows(database) == 0
    with database.read() as s:
        history = [
            (c.to_status, c.reason)
            for c in s.execute(
                select(BookingStatusChange)
                .where(BookingStatusChange.booking_id == booking_id)
                .order_by(BookingStatusChange.id)
            ).scalars()
        ]
    assert history[-3:] == [
        ("no_show", "no attendance"),
        ("completed", "was in the back row"),
        ("no_show", "attendance corrected by organiser"),
    ]


def test_a_correction_settles_an_ended_session_before_the_worker_does(
    api: Api, org: Org, database: Database, clock: Clock, worker: Worker
) -> None:
    session_id = new_session(database, org.id)
    stayed = new_booking(database, session_id, clock.now)
    wrong_room = new_booking(database, session_id, clock.now)
    event = lk_event("participant_joined", session_id, wrong_room, START + timedelta(minutes=1))
    assert post_webhook(api.client, event).json()["outcome"] == "joined"

    clock.now = START + timedelta(minutes=30)  # in progress: only the records change
    r = correct(api, org, session_id, stayed, attended=True)
    assert (r.json()["status"], r.json()["attended"]) == ("confirmed", True)
    r = correct(api, org, session_id, wrong_room, attended=False)
    assert (r.json()["status"], r.json()["attended"], r.json()["stays"]) == (
        "confirmed",
        False,
        [],
    )

    clock.now = END + timedelta(seconds=30)  # over, but the worker has not run yet
    r = correct(api, org, session_id, stayed, attended=True)
    assert r.json()["status"] == "completed"
    worker.run_periodic(force=True)
    assert status_of(database, stayed) == "completed"
    assert status_of(database, wrong_room) == "no_show"


# --- courses ------------------------------------------------------------------------------------


def enrol(
    database: Database, org_id: uuid.UUID, session_ids: list[uuid.UUID], now: datetime
) -> list[uuid.UUID]:
    """One order for one seat in each session, paid at the desk: confirmed bookings."""
    user_id = new_user(database, "Carla")
    with database.write() as s:
        order = orders.open_order(
            s, get_organization(s, org_id), total_minor=0, currency="EUR", now=now, user_id=user_id
        )
        ids = []
        for session_id in session_ids:
            session = s.get(Session, session_id)
            assert session is not None and bookings.try_take_seat(s, session)
            booking = bookings.add_booking(
                s, session, currency="EUR", notes="", now=now, user_id=user_id, order=order
            )
            ids.append(booking.id)
        bookings.change_status(
            s,
            ids[0],
            org_id=org_id,
            status=None,
            payment_status=PaymentStatus.PAID,
            actor_id=None,
            reason="paid at the desk",
            now=now,
        )
    assert {status_of(database, b) for b in ids} == {"confirmed"}
    return ids


def test_course_completion_rate_per_enrolled_customer(
    api: Api, org: Org, database: Database, clock: Clock, worker: Worker
) -> None:
    with database.write() as s:
        course = Course(
            org_id=org.id,
            title="Wheel throwing",
            timezone="Europe/Madrid",
            max_participants=10,
            currency="EUR",
        )
        s.add(course)
        s.flush()
        course_id = course.id
    weeks = [
        new_session(database, org.id, start=START + timedelta(weeks=i), course_id=course_id)
        for i in range(3)
    ]
    carla = enrol(database, org.id, weeks, clock.now)  # one order: one customer
    dani_id = new_user(database, "Dani")
    dani = [new_booking(database, w, clock.now, user_id=dani_id) for w in weeks]
    guest = bookings.Customer(name="Eva Guest", email="Eva@Example.com")
    eva = [new_booking(database, w, clock.now, customer=guest) for w in weeks[:2]]

    # Week 1: all three come; week 2: Carla only (by video). Week 3 is yet to come.
    for booking_id in (carla[0], dani[0], eva[0]):
        clock.now = START + timedelta(minutes=5)
        r = mark(api, org.admin, weeks[0], bookingId=booking_id, action="check_in")
        assert r.status_code == 200, r.text
    joined = lk_event("participant_joined", weeks[1], carla[1], START + timedelta(weeks=1))
    assert post_webhook(api.client, joined).json()["outcome"] == "joined"
    clock.now = START + timedelta(weeks=1, hours=2)
    worker.run_periodic(force=True)

    r = api.client.get(f"/api/v1/admin/courses/{course_id}/progress", headers=org.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["title"], body["sessionCount"], body["completedSessionCount"]) == (
        "Wheel throwing",
        3,
        2,
    )
    people = {p["customerName"]: p for p in body["participants"]}
    assert sorted(people) == ["Carla", "Dani", "Eva Guest"]
    rates = {
        name: (p["enrolledSessions"], p["completedSessions"], p["attendedSessions"])
        for name, p in people.items()
    }
    assert rates == {"Carla": (3, 2, 2), "Dani": (3, 2, 1), "Eva Guest": (2, 2, 1)}
    assert {n: p["completionRate"] for n, p in people.items()} == {
        "Carla": 1.0,
        "Dani": 0.5,
        "Eva Guest": 0.5,
    }
    carla_view = people["Carla"]
    assert carla_view["key"].startswith("order:")
    assert people["Dani"]["key"] == f"user:{dani_id}"
    assert people["Eva Guest"]["key"] == "email:eva@example.com"
    assert [
        (s["sessionId"], s["sessionStatus"], s["bookingStatus"], s["attended"])
        for s in carla_view["sessions"]
    ] == [
        (str(weeks[0]), "completed", "completed", True),
        (str(weeks[1]), "completed", "completed", True),
        (str(weeks[2]), "scheduled", "confirmed", False),
    ]
    assert [s["bookingStatus"] for s in people["Dani"]["sessions"][:2]] == ["completed", "no_show"]

    other = make_org(api, "rival")
    assert (
        api.client.get(
            f"/api/v1/admin/courses/{course_id}/progress", headers=other.admin
        ).status_code
        == 404
    )
    r = api.client.get(f"/api/v1/admin/courses/{uuid.uuid4()}/progress", headers=org.admin)
    assert (r.status_code, r.json()["error"]["message"]) == (404, "Course not found.")


def test_a_course_before_its_first_session_has_no_rate_yet(
    api: Api, org: Org, database: Database, clock: Clock
) -> None:
    with database.write() as s:
        course = Course(
            org_id=org.id, title="Glazing", timezone="UTC", max_participants=5, currency="EUR"
        )
        s.add(course)
        s.flush()
        course_id = course.id
    week = new_session(database, org.id, course_id=course_id)
    new_booking(database, week, clock.now)
    r = api.client.get(f"/api/v1/admin/courses/{course_id}/progress", headers=org.admin)
    assert r.status_code == 200, r.text
    [person] = r.json()["participants"]
    assert (person["completedSessions"], person["completionRate"]) == (0, None)
