"""Ticket validation, scanning at the door (online and offline), access checks and
subscriptions.

Validating a code is public: the code is the secret, and an invalid code says nothing
about any ticket. Scanning needs a role in the event's organisation (owner, admin,
staff or scanner); correcting a ticket's status needs owner, admin or staff; managing
subscriptions owner or admin.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from boxoffice.api.deps import CurrentCaller, Db, Now
from boxoffice.api.scan_schemas import (
    AccessOut,
    BatchIn,
    BatchItemOut,
    BatchOut,
    OfflinePackOut,
    RevocationListOut,
    RevocationOut,
    ScanIn,
    ScanListOut,
    ScanOut,
    ScanResultOut,
    SubscriptionIn,
    SubscriptionListOut,
    SubscriptionOut,
    TicketKeyOut,
    TicketStatusIn,
    TicketStatusOut,
    ValidationOut,
)
from boxoffice.api.schemas import error_responses
from boxoffice.domain.checkin import ScanType
from boxoffice.domain.tickets import TicketStatus
from boxoffice.services import access, auth, offline_scans, scans

router = APIRouter(tags=["tickets: scanning"], responses=error_responses(400, 401, 403, 404, 409))

SCAN_ROLES = auth.DESK_ROLES | {"scanner"}


@router.post("/api/v1/tickets/{ticket_code}/validate", response_model=ValidationOut)
def validate_ticket(ticket_code: str, db: Db, now: Now) -> ValidationOut:
    """Whether a code admits to its event now. Reasons: "Invalid ticket code" (forged,
    altered or malformed: never "not found"), "Ticket not found", "Ticket is <status>",
    "Ticket is not paid", "Ticket code is revoked", "Ticket not yet valid",
    "Ticket expired". Changes nothing."""
    with db.read() as s:
        return ValidationOut.of(scans.validate_code(s, ticket_code, now=now))


@router.post("/api/v1/admin/tickets/{ticket_code}/scan", response_model=ScanResultOut)
def scan_ticket(
    ticket_code: str, body: ScanIn, caller: CurrentCaller, db: Db, now: Now
) -> ScanResultOut:
    """Decide and record a scan at a gate of ``eventId``. Refusals (200, ``accepted``
    false): invalid, wrong_event, not_found, cancelled, revoked, unpaid, expired,
    not_yet_valid, already_checked_in (with the time and place of the check-in),
    not_checked_in (a check-out). The same nonce again returns the first answer."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=SCAN_ROLES)
        answer = scans.record_scan(
            s,
            org_id=org.org_id,
            event_id=body.event_id,
            code=ticket_code,
            scan_type=ScanType(body.scan_type),
            location=body.location,
            nonce=body.nonce,
            scanner_id=caller.user_id,
            now=now,
        )
        return ScanResultOut.of(answer)


@router.get("/api/v1/admin/tickets/{ticket_id}/scans", response_model=ScanListOut)
def list_scans(ticket_id: uuid.UUID, caller: CurrentCaller, db: Db) -> ScanListOut:
    """Every scan of the ticket and every correction of its status, oldest first."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=SCAN_ROLES)
        rows = scans.ticket_scans(s, org_id=org.org_id, ticket_id=ticket_id)
        return ScanListOut(ticket_id=ticket_id, scans=[ScanOut.of(r) for r in rows])


@router.put("/api/v1/admin/tickets/{ticket_id}/status", response_model=TicketStatusOut)
def correct_status(
    ticket_id: uuid.UUID, body: TicketStatusIn, caller: CurrentCaller, db: Db, now: Now
) -> TicketStatusOut:
    """An organiser's correction: used -> active (let the holder in once more: the
    check-in history starts again), active -> used, and pending, active or used ->
    cancelled (the code is revoked and the place freed; no refund). Anything else 409."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=auth.DESK_ROLES)
        ticket = scans.set_ticket_status(
            s,
            org_id=org.org_id,
            ticket_id=ticket_id,
            status=TicketStatus(body.status),
            reason=body.reason,
            actor_id=caller.user_id,
            now=now,
        )
        return TicketStatusOut(
            id=ticket.id,
            status=ticket.status,  # type: ignore[arg-type]
            revision=ticket.revision,
            cancelled_at=ticket.cancelled_at,
        )


# --- offline scanning -----------------------------------------------------------------------


@router.get("/api/v1/events/{event_id}/ticket-keys", response_model=list[TicketKeyOut])
def ticket_keys(event_id: uuid.UUID, db: Db) -> list[TicketKeyOut]:
    """The public keys that verify the event's ticket codes (active and retired)."""
    with db.read() as s:
        return [TicketKeyOut.of(k) for k in offline_scans.ticket_keys(s, event_id)]


@router.get("/api/v1/events/{event_id}/revocations", response_model=RevocationListOut)
def revocation_list(event_id: uuid.UUID, db: Db) -> RevocationListOut:
    """The fingerprints of the event's revoked codes (``code_fingerprint``)."""
    with db.read() as s:
        rows = offline_scans.revocations(s, event_id)
        return RevocationListOut(
            event_id=event_id,
            fingerprints=[r.fingerprint for r in rows],
            revocations=[RevocationOut.of(r) for r in rows],
        )


@router.get("/api/v1/admin/events/{event_id}/offline-pack", response_model=OfflinePackOut)
def offline_pack(event_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now) -> OfflinePackOut:
    """What a scanner needs to decide alone: tickets, keys, revocations."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=SCAN_ROLES)
        pack = offline_scans.offline_pack(s, org_id=org.org_id, event_id=event_id, now=now)
        return OfflinePackOut.of(pack)


@router.post("/api/v1/admin/events/{event_id}/scans/batch", response_model=BatchOut)
def upload_scans(
    event_id: uuid.UUID, body: BatchIn, caller: CurrentCaller, db: Db, now: Now
) -> BatchOut:
    """An offline scanner's scans: each recorded once (by nonce) and resolved against
    everything known, the same whatever the upload order. Per scan: accepted, conflict
    (let through, but the ticket was already in, or invalid then), refused, duplicate."""
    uploaded = [
        offline_scans.UploadedScan(
            nonce=x.nonce,
            scan_type=ScanType(x.scan_type),
            scanned_at=x.scanned_at,
            location=x.location,
            ticket_code=x.ticket_code,
            ticket_id=x.ticket_id,
            device_result=x.device_result,
        )
        for x in body.scans
    ]
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug, roles=SCAN_ROLES)
        report = offline_scans.upload_batch(
            s,
            org_id=org.org_id,
            event_id=event_id,
            device_id=body.device_id,
            scans=uploaded,
            scanner_id=caller.user_id,
            now=now,
        )
        return BatchOut(
            results=[BatchItemOut.of(i) for i in report.results],
            revised=[BatchItemOut.of(i) for i in report.revised],
        )


# --- access and subscriptions ---------------------------------------------------------------


@router.get("/api/v1/access/check", response_model=AccessOut)
def check_access(
    caller: CurrentCaller,
    db: Db,
    now: Now,
    resource_type: Annotated[access.ResourceType, Query(alias="resourceType")],
    resource_id: Annotated[uuid.UUID, Query(alias="resourceId")],
) -> AccessOut:
    """Whether the caller may enter the room, session or event now, and by which right."""
    with db.read() as s:
        auth.require_active(s, caller.user_id)
        decision = access.check_user_access(s, caller.user_id, resource_type, resource_id, now)
        return AccessOut.of(decision)


@router.post("/api/v1/admin/subscriptions", response_model=SubscriptionOut, status_code=201)
def create_subscription(
    body: SubscriptionIn, caller: CurrentCaller, db: Db, now: Now
) -> SubscriptionOut:
    """Subscribe a user (by id or e-mail) to a plan of the organisation."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        row, email = access.create_subscription(
            s,
            org_id=org.org_id,
            user_id=body.user_id,
            user_email=body.user_email,
            plan=body.plan,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            now=now,
        )
        return SubscriptionOut.of(row, email, now)


@router.get("/api/v1/admin/subscriptions", response_model=SubscriptionListOut)
def list_subscriptions(caller: CurrentCaller, db: Db, now: Now) -> SubscriptionListOut:
    """The organisation's subscriptions, newest first."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        rows = access.list_subscriptions(s, org_id=org.org_id)
        return SubscriptionListOut(
            subscriptions=[SubscriptionOut.of(sub, email, now) for sub, email in rows]
        )


@router.put("/api/v1/admin/subscriptions/{subscription_id}/cancel", response_model=SubscriptionOut)
def cancel_subscription(
    subscription_id: uuid.UUID, caller: CurrentCaller, db: Db, now: Now
) -> SubscriptionOut:
    """End an active subscription; a second cancel is 409."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        sub, email = access.cancel_subscription(
            s, org_id=org.org_id, subscription_id=subscription_id
        )
        return SubscriptionOut.of(sub, email, now)
