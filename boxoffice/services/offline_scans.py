"""Offline scanning: what a scanner downloads before the doors open (the event's keys,
its revocation list, the offline pack) and the batches of scans it uploads afterwards.

A batch is resolved against everything the server knows about the same tickets: each
ticket's timeline of admitted scans is replayed in (scanned_at, device, nonce) order
(``boxoffice.domain.checkin.resolve_offline_scans``), so the outcome depends only on the
set of scans, never on the order devices upload them. A later upload of an earlier scan
can turn a stored acceptance into a conflict: such stored rows are rewritten and
reported as ``revised``.

How a scan is stored: accepted; refused with the refusal (``refused_by_device`` when
only the scanner refused it); or refused with ``conflict:<refusal>`` when the scanner let
the person through but the server would not have: those admitted at the door
(``conflict:already_checked_in``, ``conflict:not_checked_in``) still take part in the
replay as admitted scans.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from boxoffice.db.locking import for_update
from boxoffice.db.models import Event, EventKey, Ticket, TicketRevocation, TicketScan, TicketType
from boxoffice.db.session import Db
from boxoffice.domain.checkin import OfflineScan, Resolution, ScanType, resolve_offline_scans
from boxoffice.domain.errors import InvalidInput, NotFound
from boxoffice.domain.tickets import (
    InvalidTicketCode,
    Refusal,
    TicketClaims,
    TicketStatus,
    check_ticket,
    claims_fingerprint,
    code_fingerprint,
    spoken_time,
)
from boxoffice.services import event_keys
from boxoffice.services.scans import (
    ACCEPTED,
    CONFLICT_PREFIX,
    REFUSED,
    is_admitted,
    org_event,
    scan_history,
    verify_code,
)

REFUSED_BY_DEVICE = "refused_by_device"
MAX_BATCH = 1000
_MESSAGES = {
    ScanType.CHECK_IN: "Checked in.",
    ScanType.CHECK_OUT: "Checked out.",
    ScanType.ACCESS: "Valid ticket.",
}


# --- what scanners download ---------------------------------------------------------------


def _event(db: Db, event_id: uuid.UUID) -> Event:
    event = db.get(Event, event_id)
    if event is None:
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    return event


def ticket_keys(db: Db, event_id: uuid.UUID) -> list[EventKey]:
    """The event's published keys (active and retired: both verify), newest first."""
    _event(db, event_id)
    return event_keys.published_keys(db, event_id)


def revocations(db: Db, event_id: uuid.UUID) -> list[TicketRevocation]:
    """The event's revocation list, oldest first."""
    _event(db, event_id)
    return list(
        db.execute(
            select(TicketRevocation)
            .where(TicketRevocation.event_id == event_id)
            .order_by(TicketRevocation.revoked_at, TicketRevocation.fingerprint)
        ).scalars()
    )


@dataclass(frozen=True)
class PackTicket:
    id: uuid.UUID
    type_number: int
    type_kind: str
    status: str
    is_paid: bool
    holder_name: str | None
    revision: int
    fingerprint: str | None  # of its current code; None before it has one
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class OfflinePack:
    event: Event
    tickets: list[PackTicket]
    keys: list[EventKey]
    revocations: list[TicketRevocation]
    generated_at: datetime


def offline_pack(db: Db, *, org_id: uuid.UUID, event_id: uuid.UUID, now: datetime) -> OfflinePack:
    """Everything a scanner needs to decide alone: the tickets, the keys, the revocations."""
    event = org_event(db, org_id, event_id)
    rows = db.execute(
        select(Ticket, TicketType.number, TicketType.kind)
        .join(TicketType, TicketType.id == Ticket.ticket_type_id)
        .where(Ticket.event_id == event_id)
        .order_by(Ticket.id)
    ).all()
    tickets = [
        PackTicket(
            t.id,
            number,
            kind,
            t.status,
            t.is_paid,
            t.holder_name,
            t.revision,
            code_fingerprint(t.code) if t.code else None,
            t.valid_from,
            t.valid_until,
        )
        for t, number, kind in rows
    ]
    return OfflinePack(
        event, tickets, event_keys.published_keys(db, event_id), revocations(db, event_id), now
    )


# --- uploads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedScan:
    """One scan as a scanner uploads it: a code, or a ticket id (looked up by name at the
    door); ``device_result`` what the scanner did (None: it let them through)."""

    nonce: str
    scan_type: ScanType
    scanned_at: datetime
    location: str = ""
    ticket_code: str | None = None
    ticket_id: uuid.UUID | None = None
    device_result: str | None = None

    @property
    def is_admitted(self) -> bool:
        return self.device_result in (None, ACCEPTED)


@dataclass(frozen=True)
class BatchItem:
    nonce: str
    outcome: str  # accepted | conflict | refused | duplicate
    reason: str | None = None
    winner: str | None = None
    ticket_id: uuid.UUID | None = None


@dataclass(frozen=True)
class BatchReport:
    results: list[BatchItem]
    revised: list[BatchItem]  # stored scans whose outcome this batch changed


def _status_then(ticket: Ticket, at: datetime) -> TicketStatus:
    """The ticket's status as it stood at ``at``, as far as the scan check cares: a used
    ticket is judged by its timeline, a later cancellation did not apply yet."""
    status = TicketStatus(ticket.status)
    if status == TicketStatus.USED:
        return TicketStatus.ACTIVE
    if status in (TicketStatus.CANCELLED, TicketStatus.REFUNDED) and (
        ticket.cancelled_at is not None and ticket.cancelled_at > at
    ):
        return TicketStatus.ACTIVE
    return status


def upload_batch(
    db: Db,
    *,
    org_id: uuid.UUID,
    event_id: uuid.UUID,
    device_id: str,
    scans: Sequence[UploadedScan],
    scanner_id: uuid.UUID,
    now: datetime,
) -> BatchReport:
    """Record each scan once and resolve it against what the server knows."""
    if len(scans) > MAX_BATCH:
        raise InvalidInput(f"A batch holds at most {MAX_BATCH} scans.", {"scans": len(scans)})
    event = org_event(db, org_id, event_id)
    tz = ZoneInfo(event.timezone)
    claims_of: dict[str, TicketClaims | InvalidTicketCode | None] = {}
    wanted: set[uuid.UUID] = set()
    for scan in scans:
        if scan.ticket_code is not None:
            verified = verify_code(db, scan.ticket_code, event_id)
            claims_of[scan.nonce] = verified
            if not isinstance(verified, InvalidTicketCode):
                wanted.add(verified.ticket_id)
        elif scan.ticket_id is not None:
            claims_of[scan.nonce] = None
            wanted.add(scan.ticket_id)
        else:
            raise InvalidInput("Each scan needs a ticketCode or a ticketId.", {"nonce": scan.nonce})
    # Lock in one order, so two batches touching the same tickets cannot deadlock.
    tickets = {
        t.id: t
        for t in db.execute(
            for_update(db, select(Ticket).where(Ticket.id.in_(wanted)).order_by(Ticket.id))
        ).scalars()
    }
    numbers = dict(
        db.execute(
            select(TicketType.id, TicketType.number).where(TicketType.event_id == event_id)
        ).all()
    )
    revoked_at = {
        fp: at
        for fp, at in db.execute(
            select(TicketRevocation.fingerprint, TicketRevocation.revoked_at).where(
                TicketRevocation.event_id == event_id, TicketRevocation.ticket_id.in_(wanted)
            )
        ).all()
    }
    known_nonces = set(
        db.execute(
            select(TicketScan.nonce).where(
                TicketScan.event_id == event_id,
                TicketScan.nonce.in_([s.nonce for s in scans]),
            )
        ).scalars()
    )
    results: dict[str, BatchItem] = {}
    order: list[str] = []
    rows: dict[str, TicketScan] = {}
    fresh: dict[uuid.UUID, list[OfflineScan]] = {}
    for scan in scans:
        order.append(scan.nonce)
        if scan.nonce in known_nonces or scan.nonce in rows or scan.nonce in results:
            results.setdefault(scan.nonce, BatchItem(scan.nonce, "duplicate"))
            continue
        claims = claims_of[scan.nonce]
        ticket_id = scan.ticket_id if claims is None else getattr(claims, "ticket_id", None)
        ticket = tickets.get(ticket_id) if ticket_id is not None else None
        if ticket is not None and ticket.event_id != event_id:
            reason: Refusal | None = Refusal.WRONG_EVENT
            ticket = None
        elif isinstance(claims, InvalidTicketCode):
            reason = Refusal.INVALID
        elif ticket is None:
            reason = Refusal.NOT_FOUND
        else:
            if claims is None:
                claims = TicketClaims.issue(
                    ticket_id=ticket.id,
                    event_id=event_id,
                    ticket_type=numbers[ticket.ticket_type_id],
                    valid_from=ticket.valid_from,
                    valid_until=ticket.valid_until,
                    revision=ticket.revision,
                )
            fp = claims_fingerprint(claims)
            is_revoked = revoked_at[fp] <= scan.scanned_at if fp in revoked_at else False
            check = check_ticket(
                claims,
                status=_status_then(ticket, scan.scanned_at),
                is_revoked=is_revoked or claims.revision < ticket.revision,
                is_paid=ticket.is_paid,
                event_id=event_id,
                now=scan.scanned_at,
                tz=tz,
            )
            reason = check.reason
        row = TicketScan(
            id=uuid.uuid4(),
            org_id=event.org_id,
            event_id=event_id,
            ticket_id=ticket.id if ticket is not None else None,
            scan_type=scan.scan_type.value,
            location=scan.location,
            scanner_id=scanner_id,
            device_id=device_id,
            nonce=scan.nonce,
            result=REFUSED,
            is_offline=True,
            scanned_at=scan.scanned_at,
            received_at=now,
        )
        rows[scan.nonce] = row
        if reason is not None:
            outcome = "conflict" if scan.is_admitted else "refused"
            row.reason = (CONFLICT_PREFIX if scan.is_admitted else "") + reason.value
            row.message = f"Server: {reason.value.replace('_', ' ')}."
            results[scan.nonce] = BatchItem(scan.nonce, outcome, reason.value, None, row.ticket_id)
            continue
        assert ticket is not None
        fresh.setdefault(ticket.id, []).append(
            OfflineScan(
                scan.nonce,
                ticket.id,
                scan.scan_type,
                scan.scanned_at,
                device_id,
                scan.location,
                scan.is_admitted,
            )
        )
    revised = _replay(db, event, fresh, rows, results, tickets, tz, now)
    for row in rows.values():
        db.add(row)
    db.flush()
    return BatchReport([results[n] for n in dict.fromkeys(order)], revised)


def _replay(
    db: Db,
    event: Event,
    fresh: dict[uuid.UUID, list[OfflineScan]],
    rows: dict[str, TicketScan],
    results: dict[str, BatchItem],
    tickets: dict[uuid.UUID, Ticket],
    tz: ZoneInfo,
    now: datetime,
) -> list[BatchItem]:
    """Resolve each touched ticket's timeline; fill ``rows`` and ``results`` for the
    uploaded scans, rewrite the stored ones whose outcome changed and return those."""
    revised: list[BatchItem] = []
    for ticket_id, uploaded in sorted(fresh.items()):
        stored = {r.nonce: r for r in scan_history(db, ticket_id)}
        known = [
            OfflineScan(
                r.nonce,
                ticket_id,
                ScanType(r.scan_type),
                r.scanned_at,
                r.device_id or str(r.scanner_id or ""),
                r.location,
                is_admitted(r),
            )
            for r in stored.values()
        ]
        everything = {s.nonce: s for s in (*known, *uploaded)}
        outcome = resolve_offline_scans(uploaded, known, is_single_entry=event.single_entry)
        for nonce, resolved in outcome.resolved.items():
            scan = everything[nonce]
            if resolved.resolution is Resolution.ACCEPTED:
                result, reason, message = ACCEPTED, None, _MESSAGES[scan.scan_type]
            elif resolved.resolution is Resolution.CONFLICT:
                assert resolved.reason is not None
                result, reason = REFUSED, CONFLICT_PREFIX + resolved.reason.value
                message = "Conflict: not checked in."
                winner = everything.get(resolved.winner or "")
                if winner is not None:
                    when = spoken_time(winner.scanned_at, scan.scanned_at, tz)
                    message = f"Conflict: already checked in {when} at {winner.location}."
            else:
                result, reason, message = REFUSED, "refused_by_device", "Refused at the door."
            item = BatchItem(
                nonce,
                resolved.resolution.value,
                resolved.reason.value if resolved.reason else None,
                resolved.winner,
                ticket_id,
            )
            row = rows.get(nonce)
            if row is not None:
                row.result, row.reason, row.message = result, reason, message
                results[nonce] = item
                continue
            old = stored[nonce]
            if not is_admitted(old) or (old.result, old.reason) == (result, reason):
                continue  # refused at the door: its stored answer stands
            old.result, old.reason, old.message = result, reason, message
            revised.append(item)
        ticket = tickets[ticket_id]
        checked_in = any(
            r.resolution is Resolution.ACCEPTED and everything[n].scan_type == ScanType.CHECK_IN
            for n, r in outcome.resolved.items()
        )
        if event.single_entry and checked_in and ticket.status == TicketStatus.ACTIVE:
            ticket.status = TicketStatus.USED
            ticket.updated_at = now
    return revised
