"""Ticket validation and scanning over HTTP, on SQLite and PostgreSQL: every validation
reason, forged codes, check-in rules, nonces, two gates racing, status corrections,
what offline scanners download and their uploaded batches."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from boxoffice.db.models import Event, Ticket, TicketRevocation, TicketScan, TicketType
from boxoffice.db.session import Database
from boxoffice.domain.checkin import ScanType
from boxoffice.domain.errors import DomainError
from boxoffice.domain.tickets import (
    TicketClaims,
    code_fingerprint,
    generate_signing_key,
    load_public_key,
    read_ticket,
    sign_ticket,
)
from boxoffice.services import event_keys, scans
from boxoffice.services.organizations import get_organization_by_slug
from boxoffice.settings import Settings
from tests.conftest import Api, Clock

DOORS = datetime(2030, 3, 4, 8, 0, tzinfo=UTC)  # the test clock says 09:00
CLOSE = datetime(2030, 3, 4, 20, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Org:
    slug: str
    id: uuid.UUID
    admin: dict[str, str]


@dataclass(frozen=True)
class Tkt:
    id: uuid.UUID
    code: str


class Factory:
    """Events, keys and tickets made directly with the ORM (no tickets service)."""

    def __init__(self, database: Database, secret: str, clock: Clock) -> None:
        self.database = database
        self.secret = secret
        self.clock = clock

    def event(self, org_id: uuid.UUID, *, single_entry: bool = True) -> uuid.UUID:
        with self.database.write() as s:
            event = Event(
                org_id=org_id,
                name="Concert",
                start_at=DOORS,
                end_at=CLOSE,
                timezone="Europe/Madrid",
                max_participants=100,
                currency="EUR",
                status="published",
                single_entry=single_entry,
            )
            s.add(event)
            s.flush()
            s.add(
                TicketType(
                    org_id=org_id,
                    event_id=event.id,
                    number=1,
                    kind="standard",
                    name="Standard",
                    price_minor=1000,
                    quota=100,
                )
            )
            event_keys.create_key(s, event, secret_key=self.secret, now=self.clock.now)
            return event.id

    def rotate(self, event_id: uuid.UUID) -> None:
        with self.database.write() as s:
            event = s.get(Event, event_id)
            assert event is not None
            event_keys.create_key(s, event, secret_key=self.secret, now=self.clock.now)

    def ticket(
        self,
        event_id: uuid.UUID,
        *,
        status: str = "active",
        is_paid: bool = True,
        valid_from: datetime = DOORS,
        valid_until: datetime = CLOSE,
        revision: int = 0,
        user_id: uuid.UUID | None = None,
    ) -> Tkt:
        with self.database.write() as s:
            event = s.get(Event, event_id)
            assert event is not None
            ttype = s.execute(
                select(TicketType).where(TicketType.event_id == event_id)
            ).scalar_one()
            ticket = Ticket(
                org_id=event.org_id,
                event_id=event_id,
                ticket_type_id=ttype.id,
                user_id=user_id,
                holder_name="Ada Lovelace",
                holder_email="ada@example.com",
                status=status,
                is_paid=is_paid,
                price_minor=1000,
                currency="EUR",
                revision=revision,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            s.add(ticket)
            s.flush()
            code = self.sign(s, ticket, revision=revision)
            ticket.code = code
            event.current_participants += 1
            ttype.sold_count += 1
            return Tkt(ticket.id, code)

    def sign(self, s: Any, ticket: Ticket, *, revision: int) -> str:
        signing = event_keys.signing_key(s, ticket.event_id, secret_key=self.secret)
        assert signing is not None
        key_id, key = signing
        claims = TicketClaims.issue(
            ticket_id=ticket.id,
            event_id=ticket.event_id,
            ticket_type=1,
            valid_from=ticket.valid_from,
            valid_until=ticket.valid_until,
            revision=revision,
        )
        return sign_ticket(claims, key, key_id)

    def code_for(self, event_id: uuid.UUID, ticket_id: uuid.UUID, revision: int = 0) -> str:
        """A genuine code of the event for any ticket id (a ticket that does not exist)."""
        with self.database.read() as s:
            signing = event_keys.signing_key(s, event_id, secret_key=self.secret)
        assert signing is not None
        claims = TicketClaims.issue(
            ticket_id=ticket_id,
            event_id=event_id,
            ticket_type=1,
            valid_from=DOORS,
            valid_until=CLOSE,
            revision=revision,
        )
        return sign_ticket(claims, signing[1], signing[0])

    def set(self, ticket_id: uuid.UUID, **values: Any) -> None:
        with self.database.write() as s:
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            for name, value in values.items():
                setattr(ticket, name, value)


def make_org(api: Api, slug: str = "acme") -> Org:
    api.org(slug, payments_enabled=False)
    admin = api.user(org=slug)
    with api.database.read() as s:
        org_id = get_organization_by_slug(s, slug).id
    return Org(slug, org_id, admin)


@pytest.fixture
def org(api: Api) -> Org:
    return make_org(api)


@pytest.fixture
def make(database: Database, settings: Settings, clock: Clock) -> Factory:
    return Factory(database, settings.secret_key, clock)


def validate(client: TestClient, code: str) -> dict[str, Any]:
    r = client.post(f"/api/v1/tickets/{code}/validate")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def scan(
    client: TestClient,
    headers: dict[str, str],
    code: str,
    event_id: uuid.UUID,
    scan_type: str = "check_in",
    *,
    location: str = "Gate A",
    nonce: str | None = None,
    expect: int = 200,
) -> dict[str, Any]:
    body = {
        "scanType": scan_type,
        "eventId": str(event_id),
        "location": location,
        "nonce": nonce or uuid.uuid4().hex,
    }
    r = client.post(f"/api/v1/admin/tickets/{code}/scan", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


def tamper(code: str, at: int) -> str:
    replacement = "A" if code[at] != "A" else "B"
    return code[:at] + replacement + code[at + 1 :]


# --- validation -------------------------------------------------------------------------


def test_a_valid_code(client: TestClient, org: Org, make: Factory) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    body = validate(client, t.code)
    assert body["valid"] is True and body["reason"] == "Ticket is valid"
    assert body["reasonCode"] is None
    assert body["ticket"]["id"] == str(t.id)
    assert body["ticket"]["eventId"] == str(event)
    assert body["ticket"]["status"] == "active" and body["ticket"]["holderName"] == "Ada Lovelace"
    assert body["ticket"]["ticketType"] == 1 and body["ticket"]["kind"] == "standard"
    # Scanners send lower case and a keyboard wedge's trailing whitespace.
    assert validate(client, t.code.lower())["valid"] is True


@pytest.mark.parametrize(
    ("fields", "reason", "code"),
    [
        ({"status": "cancelled"}, "Ticket is cancelled", "cancelled"),
        ({"status": "refunded"}, "Ticket is refunded", "cancelled"),
        ({"status": "used"}, "Ticket is used", "already_checked_in"),
        ({"status": "expired"}, "Ticket is expired", "expired"),
        ({"status": "pending", "is_paid": False}, "Ticket is pending", "unpaid"),
        ({"is_paid": False}, "Ticket is not paid", "unpaid"),
        ({"valid_from": DOORS + timedelta(hours=3)}, "Ticket not yet valid", "not_yet_valid"),
        ({"valid_until": DOORS + timedelta(minutes=30)}, "Ticket expired", "expired"),
    ],
)
def test_every_refusal_reason(
    client: TestClient,
    org: Org,
    make: Factory,
    fields: dict[str, Any],
    reason: str,
    code: str,
) -> None:
    event = make.event(org.id)
    t = make.ticket(event, **fields)
    body = validate(client, t.code)
    assert (body["valid"], body["reason"], body["reasonCode"]) == (False, reason, code)
    assert body["ticket"]["id"] == str(t.id)


def test_not_found_only_for_a_genuine_code(client: TestClient, org: Org, make: Factory) -> None:
    event = make.event(org.id)
    genuine = make.code_for(event, uuid.uuid4())
    body = validate(client, genuine)
    assert (body["valid"], body["reason"], body["ticket"]) == (False, "Ticket not found", None)
    # A code of no ticket signed with a key nobody knows: invalid, never "not found".
    claims = TicketClaims.issue(
        ticket_id=uuid.uuid4(),
        event_id=event,
        ticket_type=1,
        valid_from=DOORS,
        valid_until=CLOSE,
    )
    forged = sign_ticket(claims, generate_signing_key(), 0)
    body = validate(client, forged)
    assert (body["reason"], body["reasonCode"], body["ticket"]) == (
        "Invalid ticket code",
        "invalid",
        None,
    )
    # And a code for an event nobody knows.
    stray = TicketClaims.issue(
        ticket_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_type=1,
        valid_from=DOORS,
        valid_until=CLOSE,
    )
    assert validate(client, sign_ticket(stray, generate_signing_key(), 0))["reasonCode"] == (
        "invalid"
    )


def test_forged_and_tampered_codes_are_invalid(client: TestClient, org: Org, make: Factory) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    # A claim changed (the validity end, inside the payload), a signature character,
    # and the real ticket's claims signed with a key of another event.
    for bad in (tamper(t.code, 60), tamper(t.code, 120), "hello", "A" * 164):
        body = validate(client, bad)
        assert (body["valid"], body["reasonCode"], body["ticket"]) == (False, "invalid", None)
    other = make.event(org.id)
    with make.database.read() as s:
        key_id, key = event_keys.signing_key(s, other, secret_key=make.secret) or (0, None)
    assert key is not None
    claims = TicketClaims.issue(
        ticket_id=t.id, event_id=event, ticket_type=1, valid_from=DOORS, valid_until=CLOSE
    )
    assert validate(client, sign_ticket(claims, key, key_id))["reasonCode"] == "invalid"


def test_revoked_codes(client: TestClient, org: Org, make: Factory, database: Database) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    with database.write() as s:
        s.add(
            TicketRevocation(
                org_id=org.id,
                event_id=event,
                ticket_id=t.id,
                fingerprint=code_fingerprint(t.code),
                reason="reissued",
                revoked_at=DOORS,
            )
        )
    body = validate(client, t.code)
    assert (body["valid"], body["reason"], body["reasonCode"]) == (
        False,
        "Ticket code is revoked",
        "revoked",
    )
    # A code older than the ticket's revision is revoked, listed or not.
    u = make.ticket(event)
    make.set(u.id, revision=1)
    assert validate(client, u.code)["reasonCode"] == "revoked"
    assert validate(client, make.code_for(event, u.id, revision=1))["valid"] is True


def test_codes_of_a_rotated_key_validate_at_once(
    client: TestClient, org: Org, make: Factory
) -> None:
    event = make.event(org.id)
    old = make.ticket(event)
    assert validate(client, old.code)["valid"] is True  # the keys are cached now
    make.rotate(event)
    new = make.ticket(event)
    assert validate(client, new.code)["valid"] is True
    assert validate(client, old.code)["valid"] is True  # the retired key still verifies


# --- scanning ---------------------------------------------------------------------------


def test_double_check_in_is_refused_with_time_and_place(
    client: TestClient, org: Org, make: Factory, clock: Clock
) -> None:
    event = make.event(org.id, single_entry=False)
    t = make.ticket(event)
    first = scan(client, org.admin, t.code, event, location="North Gate")
    assert first["accepted"] is True and first["reason"] is None
    assert first["scan"]["ticketId"] == str(t.id)
    clock.advance(minutes=12)
    second = scan(client, org.admin, t.code, event, location="South Gate")
    assert (second["accepted"], second["reason"]) == (False, "already_checked_in")
    assert second["previous"] == {"scannedAt": "2030-03-04T09:00:00Z", "location": "North Gate"}
    # 10:00 in Madrid, the event's time zone.
    assert second["message"] == "Already checked in at 10:00 at North Gate."
    # Out and in again: re-entry is allowed at this event.
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event, "check_out")["accepted"] is True
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event)["accepted"] is True
    assert validate(client, t.code)["ticket"]["status"] == "active"


def test_check_out_needs_a_check_in_and_access_changes_nothing(
    client: TestClient, org: Org, make: Factory
) -> None:
    event = make.event(org.id, single_entry=False)
    t = make.ticket(event)
    out = scan(client, org.admin, t.code, event, "check_out")
    assert (out["accepted"], out["reason"]) == (False, "not_checked_in")
    assert scan(client, org.admin, t.code, event, "access")["accepted"] is True
    assert scan(client, org.admin, t.code, event)["accepted"] is True


def test_single_entry_marks_used_and_allows_no_re_entry(
    client: TestClient, org: Org, make: Factory, clock: Clock
) -> None:
    event = make.event(org.id, single_entry=True)
    t = make.ticket(event)
    assert scan(client, org.admin, t.code, event)["accepted"] is True
    assert validate(client, t.code)["reason"] == "Ticket is used"
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event, "access")["accepted"] is True
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event, "check_out")["accepted"] is True
    clock.advance(minutes=1)
    again = scan(client, org.admin, t.code, event)
    assert (again["accepted"], again["reason"]) == (False, "already_checked_in")
    assert again["message"].endswith("No re-entry.")
    # The organiser lets them back in once: used -> active.
    r = client.put(
        f"/api/v1/admin/tickets/{t.id}/status",
        json={"status": "active", "reason": "left their coat inside"},
        headers=org.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event)["accepted"] is True
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event)["reason"] == "already_checked_in"
    log = client.get(f"/api/v1/admin/tickets/{t.id}/scans", headers=org.admin).json()["scans"]
    kinds = [(x["kind"], x["scanType"], x["result"]) for x in log]
    assert ("correction", "access", "refused") in kinds
    assert sum(1 for x in log if x["result"] == "accepted" and x["scanType"] == "check_in") == 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": "cancelled"}, "cancelled"),
        ({"is_paid": False}, "unpaid"),
        ({"valid_from": DOORS + timedelta(hours=3)}, "not_yet_valid"),
        ({"valid_until": DOORS + timedelta(minutes=30)}, "expired"),
    ],
)
def test_scan_refusals(
    client: TestClient, org: Org, make: Factory, fields: dict[str, Any], reason: str
) -> None:
    event = make.event(org.id)
    t = make.ticket(event, **fields)
    body = scan(client, org.admin, t.code, event)
    assert (body["accepted"], body["reason"]) == (False, reason)
    assert body["message"]


def test_invalid_revoked_and_wrong_event_scans(client: TestClient, org: Org, make: Factory) -> None:
    event, other = make.event(org.id), make.event(org.id)
    t = make.ticket(event)
    assert scan(client, org.admin, tamper(t.code, 120), event)["reason"] == "invalid"
    assert scan(client, org.admin, "garbage", event)["reason"] == "invalid"
    wrong = scan(client, org.admin, t.code, other)
    assert (wrong["reason"], wrong["scan"]["ticketId"]) == ("wrong_event", None)
    assert wrong["message"] == "This ticket is for another event."
    make.set(t.id, revision=1)
    assert scan(client, org.admin, t.code, event)["reason"] == "revoked"


def test_a_retried_nonce_returns_the_first_answer(
    client: TestClient, org: Org, make: Factory, database: Database, clock: Clock
) -> None:
    event = make.event(org.id, single_entry=False)
    t = make.ticket(event)
    scan(client, org.admin, t.code, event, nonce="first")
    refused = scan(client, org.admin, t.code, event, location="B", nonce="n-2")
    clock.advance(minutes=5)
    again = scan(client, org.admin, t.code, event, location="B", nonce="n-2")
    assert again["repeated"] is True and refused["repeated"] is False
    assert {k: v for k, v in again.items() if k != "repeated"} == {
        k: v for k, v in refused.items() if k != "repeated"
    }
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(TicketScan)) == 2


def test_concurrent_scans_at_two_gates_admit_once(
    database: Database, org: Org, make: Factory, api: Api, clock: Clock
) -> None:
    """Two gates scan the same ticket at the same moment, many times over: one check-in
    is accepted per ticket (the ticket row is locked while deciding)."""
    event = make.event(org.id, single_entry=False)
    tickets = [make.ticket(event) for _ in range(6)]
    user_id = _user_id(database, "gate@example.com", org)
    results: dict[uuid.UUID, list[bool]] = {t.id: [] for t in tickets}
    errors: list[BaseException] = []

    def gate(t: Tkt, location: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            with database.write() as s:
                answer = scans.record_scan(
                    s,
                    org_id=org.id,
                    event_id=event,
                    code=t.code,
                    scan_type=ScanType.CHECK_IN,
                    location=location,
                    nonce=uuid.uuid4().hex,
                    scanner_id=user_id,
                    now=clock.now,
                )
                results[t.id].append(answer.scan.result == "accepted")
        except (DomainError, Exception) as exc:  # a busy SQLite would show up here
            errors.append(exc)

    for t in tickets:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=gate, args=(t, g, barrier)) for g in ("A", "B")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert errors == []
    assert all(sorted(r) == [False, True] for r in results.values()), results


def test_the_same_nonce_at_once_is_recorded_once(
    database: Database, org: Org, make: Factory, clock: Clock
) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    user_id = _user_id(database, "gate@example.com", org)
    answers: list[scans.ScanAnswer] = []
    barrier = threading.Barrier(4)

    def retry() -> None:
        barrier.wait()
        with database.write() as s:
            answers.append(
                scans.record_scan(
                    s,
                    org_id=org.id,
                    event_id=event,
                    code=t.code,
                    scan_type=ScanType.CHECK_IN,
                    location="A",
                    nonce="same",
                    scanner_id=user_id,
                    now=clock.now,
                )
            )

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(answers) == 4
    assert {a.scan.id for a in answers} == {answers[0].scan.id}
    assert sorted(a.is_repeat for a in answers) == [False, True, True, True]
    assert all(a.scan.result == "accepted" for a in answers)


def _user_id(database: Database, email: str, org: Org) -> uuid.UUID:
    from boxoffice.services import auth

    with database.write() as s:
        user = auth.register_user(s, email=email, password="x" * 12, name="Gate")
        auth.grant_role(s, user=user, org_slug=org.slug, role="scanner")
        return user.id


def test_roles(client: TestClient, api: Api, org: Org, make: Factory) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    customer = api.user()
    scanner = api.user(org=org.slug, role="scanner")
    staff = api.user(org=org.slug, role="staff")
    assert scan(client, customer, t.code, event, expect=403)["error"]["code"] == "forbidden"
    assert client.post(f"/api/v1/admin/tickets/{t.code}/scan", json={}).status_code in (401, 422)
    for path in (
        f"/api/v1/admin/tickets/{t.id}/scans",
        f"/api/v1/admin/events/{event}/offline-pack",
    ):
        assert client.get(path, headers=customer).status_code == 403
        assert client.get(path, headers=scanner).status_code == 200
    batch = {"deviceId": "d", "scans": []}
    url = f"/api/v1/admin/events/{event}/scans/batch"
    assert client.post(url, json=batch, headers=customer).status_code == 403
    assert client.post(url, json=batch, headers=scanner).status_code == 200
    assert scan(client, scanner, t.code, event)["accepted"] is True
    status = {"status": "active", "reason": "oops"}
    url = f"/api/v1/admin/tickets/{t.id}/status"
    assert client.put(url, json=status, headers=scanner).status_code == 403
    assert client.put(url, json=status, headers=customer).status_code == 403
    assert client.put(url, json=status, headers=staff).status_code == 200
    # Another organisation's admin sees neither the event nor the ticket.
    other = make_org(api, "other")
    assert scan(client, other.admin, t.code, event, expect=404)["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/admin/tickets/{t.id}/scans", headers=other.admin).status_code == (
        404
    )


def test_cancelling_revokes_the_code_and_frees_the_place(
    client: TestClient, org: Org, make: Factory, database: Database
) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    url = f"/api/v1/admin/tickets/{t.id}/status"
    r = client.put(url, json={"status": "cancelled", "reason": "fraud"}, headers=org.admin)
    assert r.status_code == 200, r.text
    assert r.json()["cancelledAt"] == "2030-03-04T09:00:00Z"
    assert validate(client, t.code)["reason"] == "Ticket is cancelled"
    revoked = client.get(f"/api/v1/events/{event}/revocations").json()
    assert revoked["fingerprints"] == [code_fingerprint(t.code)]
    with database.read() as s:
        e = s.get(Event, event)
        assert e is not None and e.current_participants == 0
    r = client.put(url, json={"status": "active"}, headers=org.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "illegal_transition")
    assert (
        client.put(
            f"/api/v1/admin/tickets/{uuid.uuid4()}/status",
            json={"status": "used"},
            headers=org.admin,
        ).status_code
        == 404
    )


# --- what scanners download -------------------------------------------------------------


def test_ticket_keys_and_revocations_are_public(
    client: TestClient, org: Org, make: Factory, database: Database
) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    keys = client.get(f"/api/v1/events/{event}/ticket-keys").json()
    assert [(k["keyId"], k["status"]) for k in keys] == [(0, "active")]
    make.rotate(event)
    keys = client.get(f"/api/v1/events/{event}/ticket-keys").json()
    assert [(k["keyId"], k["status"]) for k in keys] == [(1, "active"), (0, "retired")]
    published = {k["keyId"]: load_public_key(k["publicKey"]) for k in keys}
    assert read_ticket(t.code, published).ticket_id == t.id
    assert client.get(f"/api/v1/events/{uuid.uuid4()}/ticket-keys").status_code == 404
    assert client.get(f"/api/v1/events/{event}/revocations").json() == {
        "eventId": str(event),
        "fingerprints": [],
        "revocations": [],
    }
    assert client.get(f"/api/v1/events/{uuid.uuid4()}/revocations").status_code == 404


def test_offline_pack(client: TestClient, org: Org, make: Factory) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    make.ticket(event, status="cancelled")
    r = client.get(f"/api/v1/admin/events/{event}/offline-pack", headers=org.admin)
    assert r.status_code == 200, r.text
    pack = r.json()
    assert pack["eventId"] == str(event) and pack["generatedAt"] == "2030-03-04T09:00:00Z"
    assert pack["singleEntry"] is True and pack["timezone"] == "Europe/Madrid"
    assert [k["keyId"] for k in pack["keys"]] == [0]
    mine = next(x for x in pack["tickets"] if x["id"] == str(t.id))
    assert mine["fingerprint"] == code_fingerprint(t.code)
    assert (mine["status"], mine["revision"], mine["ticketType"], mine["holderName"]) == (
        "active",
        0,
        1,
        "Ada Lovelace",
    )
    assert sorted(x["status"] for x in pack["tickets"]) == ["active", "cancelled"]
    assert pack["revocations"] == []


# --- offline batches --------------------------------------------------------------------


def upload(
    client: TestClient, headers: dict[str, str], event: uuid.UUID, device: str, scans_: list[Any]
) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/admin/events/{event}/scans/batch",
        json={"deviceId": device, "scans": scans_},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def offline(code: str, nonce: str, at: str, scan_type: str = "check_in", **extra: Any) -> Any:
    return {
        "ticketCode": code,
        "scanType": scan_type,
        "scannedAt": at,
        "location": extra.pop("location", "Gate"),
        "nonce": nonce,
    } | extra


def _stored(database: Database, event: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    with database.read() as s:
        rows = s.execute(select(TicketScan).where(TicketScan.event_id == event)).scalars()
        return {r.nonce: (r.result, r.reason) for r in rows}


@pytest.mark.parametrize("a_first", [True, False])
def test_two_devices_resolve_the_same_in_either_upload_order(
    client: TestClient, org: Org, make: Factory, database: Database, a_first: bool
) -> None:
    event = make.event(org.id)
    t = make.ticket(event)
    a = [offline(t.code, "a-1", "2030-03-04T08:10:00Z", location="North")]
    b = [offline(t.code, "b-1", "2030-03-04T08:12:00Z", location="South")]
    first, second = (("dev-a", a), ("dev-b", b)) if a_first else (("dev-b", b), ("dev-a", a))
    upload(client, org.admin, event, *first)
    report = upload(client, org.admin, event, *second)
    assert _stored(database, event) == {
        "a-1": ("accepted", None),
        "b-1": ("refused", "conflict:already_checked_in"),
    }
    if a_first:
        assert report["results"] == [
            {
                "nonce": "b-1",
                "outcome": "conflict",
                "reason": "already_checked_in",
                "winner": "a-1",
                "ticketId": str(t.id),
            }
        ]
        assert report["revised"] == []
    else:  # b-1 was accepted, until a-1 came in: it is revised into a conflict
        assert report["results"][0]["outcome"] == "accepted"
        assert [(x["nonce"], x["outcome"], x["winner"]) for x in report["revised"]] == [
            ("b-1", "conflict", "a-1")
        ]
    assert validate(client, t.code)["ticket"]["status"] == "used"
    # Re-uploading either batch changes nothing.
    again = upload(client, org.admin, event, *first)
    assert [x["outcome"] for x in again["results"]] == ["duplicate"]
    assert _stored(database, event)["b-1"] == ("refused", "conflict:already_checked_in")


def test_batch_outcomes(
    client: TestClient, org: Org, make: Factory, database: Database, clock: Clock
) -> None:
    event = make.event(org.id, single_entry=False)
    t, u, cancelled = make.ticket(event), make.ticket(event), make.ticket(event)
    # Cancelled at 08:30 (before the upload): a scan at 08:40 admitted it wrongly, one at
    # 08:20 was right.
    make.set(cancelled.id, status="cancelled", cancelled_at=datetime(2030, 3, 4, 8, 30, tzinfo=UTC))
    online = scan(client, org.admin, u.code, event, location="Main")  # 09:00, accepted
    assert online["accepted"] is True
    report = upload(
        client,
        org.admin,
        event,
        "dev-1",
        [
            offline(t.code, "t-in", "2030-03-04T08:05:00Z"),
            offline(t.code, "t-out", "2030-03-04T08:50:00Z", "check_out"),
            offline(t.code, "t-in-2", "2030-03-04T08:55:00Z"),
            offline(t.code, "t-in", "2030-03-04T08:05:00Z"),  # repeated in the batch
            offline(t.code, "t-refused", "2030-03-04T08:56:00Z", deviceResult="refused"),
            offline(tamper(t.code, 120), "forged", "2030-03-04T08:06:00Z", deviceResult="refused"),
            offline(tamper(t.code, 121), "forged-in", "2030-03-04T08:06:00Z"),
            offline(cancelled.code, "c-early", "2030-03-04T08:20:00Z"),
            offline(cancelled.code, "c-late", "2030-03-04T08:40:00Z"),
            {
                "ticketId": str(u.id),
                "scanType": "check_in",
                "scannedAt": "2030-03-04T08:30:00Z",
                "nonce": "u-by-id",
            },
            offline(u.code, "u-out", "2030-03-04T08:45:00Z", "check_out"),
        ],
    )
    outcomes = {(x["nonce"], x["outcome"], x["reason"]) for x in report["results"]}
    assert outcomes == {
        ("t-in", "accepted", None),
        ("t-out", "accepted", None),
        ("t-in-2", "accepted", None),
        ("t-refused", "refused", None),
        ("forged", "refused", "invalid"),
        ("forged-in", "conflict", "invalid"),  # let through, though it does not verify
        ("c-early", "accepted", None),
        ("c-late", "conflict", "cancelled"),
        ("u-by-id", "accepted", None),
        ("u-out", "accepted", None),
    }
    assert len(report["results"]) == 10  # the repeated nonce answered once
    # The online check-in at 09:00 still stands (u went out at 08:45); nothing revised.
    assert report["revised"] == []
    assert _stored(database, event)[online["scan"]["nonce"]] == ("accepted", None)
    r = client.post(
        f"/api/v1/admin/events/{event}/scans/batch",
        json={
            "deviceId": "d",
            "scans": [{"scanType": "check_in", "nonce": "x", "scannedAt": "2030-03-04T08:00:00Z"}],
        },
        headers=org.admin,
    )
    assert r.status_code == 422


def test_an_online_check_in_becomes_a_conflict_when_an_earlier_one_arrives(
    client: TestClient, org: Org, make: Factory, database: Database, clock: Clock
) -> None:
    event = make.event(org.id, single_entry=False)
    t = make.ticket(event)
    online = scan(client, org.admin, t.code, event, location="Main")
    report = upload(
        client, org.admin, event, "dev", [offline(t.code, "early", "2030-03-04T08:30:00Z")]
    )
    assert report["results"][0]["outcome"] == "accepted"
    assert [(x["nonce"], x["outcome"], x["winner"]) for x in report["revised"]] == [
        (online["scan"]["nonce"], "conflict", "early")
    ]
    # The ticket is inside once: a check-out is accepted, then a check-in again.
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event, "check_out")["accepted"] is True
    clock.advance(minutes=1)
    assert scan(client, org.admin, t.code, event)["accepted"] is True


def test_unknown_event_and_cleanup(client: TestClient, org: Org, database: Database) -> None:
    r = client.get(f"/api/v1/admin/events/{uuid.uuid4()}/offline-pack", headers=org.admin)
    assert r.status_code == 404
    with database.write() as s:
        s.execute(delete(TicketScan))
