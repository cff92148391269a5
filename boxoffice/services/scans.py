"""Ticket validation and scanning: the public validity check, scans at the door (online
and uploaded by offline scanners), the scan log and organisers' status corrections.

A scan is recorded once per (event, nonce): a retried request, or a re-uploaded batch,
gets the first answer back. A scan of a known ticket locks the ticket row while it
decides, so two gates scanning one ticket at once admit it once.

An organiser's status correction is written to the scan log too (reason
``status_corrected``): it is the audit trail, and the check-in history starts again after
it, so a used ticket set back to active may enter once more.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Lock
from typing import Any, cast
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Table, exists, func, select

from boxoffice.db.locking import for_update, insert_if_absent
from boxoffice.db.models import Event, Ticket, TicketRevocation, TicketScan, TicketType
from boxoffice.db.session import Db
from boxoffice.domain.checkin import Scan, ScanType, decide_scan
from boxoffice.domain.errors import IllegalTransition, NotFound
from boxoffice.domain.tickets import (
    InvalidTicketCode,
    Refusal,
    TicketCheck,
    TicketClaims,
    TicketStatus,
    check_ticket,
    claims_fingerprint,
    event_tag,
    peek_key_id,
    peek_ticket,
    read_ticket,
)
from boxoffice.services import event_keys, orders, tickets

ACCEPTED, REFUSED = "accepted", "refused"
CORRECTED = "status_corrected"  # the reason of a correction's row in the scan log
CONFLICT_PREFIX = "conflict:"
_HELD = frozenset({TicketStatus.PENDING, TicketStatus.ACTIVE, TicketStatus.USED})
# (from, to) an organiser may set; cancelling revokes the code and frees the place, and
# refunds are the tickets service's business.
CORRECTIONS = frozenset(
    {
        (TicketStatus.USED, TicketStatus.ACTIVE),
        (TicketStatus.ACTIVE, TicketStatus.USED),
        (TicketStatus.PENDING, TicketStatus.CANCELLED),
        (TicketStatus.ACTIVE, TicketStatus.CANCELLED),
        (TicketStatus.USED, TicketStatus.CANCELLED),
    }
)
KEYS_TTL_S = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCANS = cast(Table, TicketScan.__table__)
_REVOCATIONS = cast(Table, TicketRevocation.__table__)


# --- keys, cached per event -------------------------------------------------------------


@dataclass(frozen=True)
class _CachedKeys:
    keys: dict[int, Ed25519PublicKey]
    loaded_at: float


_keys: dict[uuid.UUID, _CachedKeys] = {}
_keys_lock = Lock()


def verifying_keys(
    db: Db, event_id: uuid.UUID, *, key_id: int | None = None
) -> dict[int, Ed25519PublicKey]:
    """The event's public keys, cached in this process for ``KEYS_TTL_S``; reloaded at
    once when ``key_id`` is not among them (a key made since, maybe by another process),
    so a rotation is never waited for."""
    cached = _keys.get(event_id)
    if (
        cached is None
        or time.monotonic() - cached.loaded_at > KEYS_TTL_S
        or (key_id is not None and key_id not in cached.keys)
    ):
        cached = _CachedKeys(event_keys.public_keys(db, event_id), time.monotonic())
        with _keys_lock:
            _keys[event_id] = cached
    return cached.keys


def forget_keys(event_id: uuid.UUID | None = None) -> None:
    """Drop the cached keys of an event (of every event with None), after a rotation."""
    with _keys_lock:
        if event_id is None:
            _keys.clear()
        else:
            _keys.pop(event_id, None)


def verify_code(db: Db, code: str, event_id: uuid.UUID) -> TicketClaims | InvalidTicketCode:
    """The claims of ``code`` if it verifies with the event's keys, else the error."""
    try:
        key_id = peek_key_id(code)
        return read_ticket(code, verifying_keys(db, event_id, key_id=key_id))
    except InvalidTicketCode as exc:
        return exc


_tags: dict[bytes, uuid.UUID] = {}


def _event_of_tag(db: Db, tag: bytes) -> uuid.UUID | None:
    """The event a code's tag names (events are learnt once per process; only codes of
    deleted tickets come this way)."""
    if tag not in _tags:
        for event_id in db.execute(select(Event.id)).scalars():
            _tags.setdefault(event_tag(event_id), event_id)
    return _tags.get(tag)


# --- validation -------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketView:
    id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    type_number: int
    type_kind: str
    status: str
    is_paid: bool
    revision: int
    holder_name: str | None
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class Validation:
    """The check, and the ticket when the code verified (never for an invalid code)."""

    check: TicketCheck
    ticket: TicketView | None


_INVALID = check_ticket(
    InvalidTicketCode(),
    status=None,
    is_revoked=False,
    is_paid=False,
    event_id=uuid.UUID(int=0),
    now=_EPOCH,
)


def validate_code(db: Db, code: str, *, now: datetime) -> Validation:
    """Whether ``code`` admits now to its own event: one query for the ticket, its
    event's time zone and whether the code is revoked; the keys come from the cache."""
    try:
        peeked = peek_ticket(code)
    except InvalidTicketCode:
        return Validation(_INVALID, None)
    revoked = exists().where(
        TicketRevocation.event_id == Ticket.event_id,
        TicketRevocation.fingerprint == claims_fingerprint(peeked),
    )
    row = db.execute(
        select(
            Ticket.id,
            Ticket.event_id,
            Ticket.ticket_type_id,
            TicketType.number,
            TicketType.kind,
            Ticket.status,
            Ticket.is_paid,
            Ticket.revision,
            Ticket.holder_name,
            Ticket.valid_from,
            Ticket.valid_until,
            Event.timezone,
            revoked.label("is_revoked"),
        )
        .join(Event, Event.id == Ticket.event_id)
        .join(TicketType, TicketType.id == Ticket.ticket_type_id)
        .where(Ticket.id == peeked.ticket_id)
    ).first()
    if row is None:
        event_id = _event_of_tag(db, peeked.event_tag)
        if event_id is None:
            return Validation(_INVALID, None)
        claims = verify_code(db, code, event_id)
        check = check_ticket(
            claims, status=None, is_revoked=False, is_paid=False, event_id=event_id, now=now
        )
        return Validation(check, None)
    fields: tuple[Any, ...] = tuple(row)
    ticket = TicketView(*fields[:11])
    claims = verify_code(db, code, ticket.event_id)
    if isinstance(claims, InvalidTicketCode):
        return Validation(_INVALID, None)
    check = check_ticket(
        claims,
        status=TicketStatus(ticket.status),
        is_revoked=bool(row.is_revoked) or claims.revision < ticket.revision,
        is_paid=ticket.is_paid,
        event_id=ticket.event_id,
        now=now,
        tz=ZoneInfo(row.timezone),
    )
    return Validation(check, ticket)


# --- scans at the door ------------------------------------------------------------------


@dataclass(frozen=True)
class ScanAnswer:
    """A recorded scan; ``previous`` the check-in that refused it; ``is_repeat`` when the
    nonce was known and this is the first answer again."""

    scan: TicketScan
    previous: Scan | None
    is_repeat: bool


def org_event(db: Db, org_id: uuid.UUID, event_id: uuid.UUID) -> Event:
    event = db.get(Event, event_id)
    if event is None or event.org_id != org_id:
        raise NotFound("Event not found.", {"eventId": str(event_id)})
    return event


def _stored(db: Db, event_id: uuid.UUID, nonce: str) -> TicketScan | None:
    return db.execute(
        select(TicketScan).where(TicketScan.event_id == event_id, TicketScan.nonce == nonce)
    ).scalar_one_or_none()


def scan_history(db: Db, ticket_id: uuid.UUID, *, admitted: bool = False) -> list[TicketScan]:
    """The ticket's scans since its last status correction, in time order; with
    ``admitted`` only those that let someone through (accepted, or conflicts admitted
    at the door by an offline scanner)."""
    last_reset = (
        select(TicketScan.scanned_at)
        .where(TicketScan.ticket_id == ticket_id, TicketScan.reason == CORRECTED)
        .order_by(TicketScan.scanned_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = select(TicketScan).where(
        TicketScan.ticket_id == ticket_id,
        TicketScan.reason.is_distinct_from(CORRECTED),
        TicketScan.scanned_at > func.coalesce(last_reset, _EPOCH),
    )
    rows = db.execute(stmt.order_by(TicketScan.scanned_at, TicketScan.nonce)).scalars()
    if admitted:
        return [r for r in rows if is_admitted(r)]
    return list(rows)


def is_admitted(row: TicketScan) -> bool:
    """Whether the scan let someone through: accepted, or a conflict an offline scanner
    admitted (``conflict:already_checked_in``, ``conflict:not_checked_in``)."""
    return row.result == ACCEPTED or (row.reason or "") in _ADMITTED_CONFLICTS


_ADMITTED_CONFLICTS = frozenset(
    CONFLICT_PREFIX + r for r in (Refusal.ALREADY_CHECKED_IN, Refusal.NOT_CHECKED_IN)
)


def _as_scan(row: TicketScan) -> Scan:
    return Scan(ScanType(row.scan_type), row.scanned_at, row.location, row.result == ACCEPTED)


def _previous(db: Db, row: TicketScan) -> Scan | None:
    """The check-in that refused a stored scan (to answer a repeated nonce alike)."""
    if row.reason != Refusal.ALREADY_CHECKED_IN or row.ticket_id is None:
        return None
    earlier = [
        r
        for r in scan_history(db, row.ticket_id)
        if r.result == ACCEPTED
        and r.scan_type == ScanType.CHECK_IN
        and r.scanned_at <= row.scanned_at
    ]
    return _as_scan(earlier[-1]) if earlier else None


def record_scan(
    db: Db,
    *,
    org_id: uuid.UUID,
    event_id: uuid.UUID,
    code: str,
    scan_type: ScanType,
    location: str,
    nonce: str,
    scanner_id: uuid.UUID,
    now: datetime,
) -> ScanAnswer:
    """Decide and record a scan at a gate of ``event_id`` (the scanner's event)."""
    event = org_event(db, org_id, event_id)
    stored = _stored(db, event_id, nonce)
    if stored is not None:
        return ScanAnswer(stored, _previous(db, stored), True)
    ticket: Ticket | None = None
    try:
        ticket_id = peek_ticket(code).ticket_id
    except InvalidTicketCode:
        ticket_id = None
    if ticket_id is not None:
        ticket = db.execute(
            for_update(db, select(Ticket).where(Ticket.id == ticket_id))
        ).scalar_one_or_none()
    claims = verify_code(db, code, ticket.event_id if ticket else event_id)
    is_ours = ticket is not None and ticket.event_id == event_id
    history: list[Scan] = []
    is_revoked = False
    if ticket is not None and is_ours and not isinstance(claims, InvalidTicketCode):
        history = [_as_scan(r) for r in scan_history(db, ticket.id) if r.result == ACCEPTED]
        is_revoked = claims.revision < ticket.revision or _is_revoked(db, event_id, claims)
    decision = decide_scan(
        claims,
        status=TicketStatus(ticket.status) if ticket is not None else None,
        is_revoked=is_revoked,
        is_paid=ticket.is_paid if ticket is not None else False,
        event_id=event_id,
        history=history,
        scan_type=scan_type,
        now=now,
        is_single_entry=event.single_entry,
        tz=ZoneInfo(event.timezone),
    )
    values = {
        "id": uuid.uuid4(),
        "org_id": event.org_id,
        "event_id": event_id,
        "ticket_id": ticket.id if ticket is not None and is_ours else None,
        "scan_type": scan_type.value,
        "location": location,
        "scanner_id": scanner_id,
        "nonce": nonce,
        "result": ACCEPTED if decision.is_valid else REFUSED,
        "reason": decision.reason.value if decision.reason else None,
        "message": decision.spoken[:300],
        "is_offline": False,
        "scanned_at": now,
        "received_at": now,
    }
    if not insert_if_absent(db, _SCANS, values, ("event_id", "nonce")):
        # The same nonce, sent again at the same moment: the first answer stands.
        stored = _stored(db, event_id, nonce)
        assert stored is not None
        return ScanAnswer(stored, _previous(db, stored), True)
    if decision.marks_used and ticket is not None and ticket.status == TicketStatus.ACTIVE:
        ticket.status = TicketStatus.USED
        ticket.updated_at = now
        db.flush()
    row = db.get(TicketScan, values["id"])
    assert row is not None
    return ScanAnswer(row, decision.previous, False)


def _is_revoked(db: Db, event_id: uuid.UUID, claims: TicketClaims) -> bool:
    return bool(
        db.execute(
            select(
                exists().where(
                    TicketRevocation.event_id == event_id,
                    TicketRevocation.fingerprint == claims_fingerprint(claims),
                )
            )
        ).scalar()
    )


# --- the log and corrections --------------------------------------------------------------


def org_ticket(db: Db, org_id: uuid.UUID, ticket_id: uuid.UUID, *, lock: bool = False) -> Ticket:
    stmt = select(Ticket).where(Ticket.id == ticket_id, Ticket.org_id == org_id)
    ticket: Ticket | None = db.execute(for_update(db, stmt) if lock else stmt).scalar_one_or_none()
    if ticket is None:
        raise NotFound("Ticket not found.", {"ticketId": str(ticket_id)})
    return ticket


def ticket_scans(db: Db, *, org_id: uuid.UUID, ticket_id: uuid.UUID) -> list[TicketScan]:
    """Every scan of the ticket and every correction of its status, oldest first."""
    org_ticket(db, org_id, ticket_id)
    return list(
        db.execute(
            select(TicketScan)
            .where(TicketScan.ticket_id == ticket_id)
            .order_by(TicketScan.scanned_at, TicketScan.nonce)
        ).scalars()
    )


def set_ticket_status(
    db: Db,
    *,
    org_id: uuid.UUID,
    ticket_id: uuid.UUID,
    status: TicketStatus,
    reason: str,
    actor_id: uuid.UUID,
    now: datetime,
) -> Ticket:
    """An organiser's correction (see ``CORRECTIONS``): used -> active lets the holder in
    once more, active -> used admits them without a scan, and cancelling revokes the code
    and frees the place (no refund here). Logged in the scan log as a correction."""
    ticket = org_ticket(db, org_id, ticket_id, lock=True)
    current = TicketStatus(ticket.status)
    if (current, status) not in CORRECTIONS:
        raise IllegalTransition(
            f"A ticket's status cannot be corrected from {current} to {status}.",
            {"from": current.value, "to": status.value},
        )
    if status == TicketStatus.CANCELLED:
        tickets.revoke(db, ticket, reason="cancelled", now=now)
        ticket.cancelled_at = now
        if current in _HELD:
            orders.return_places(db, [(ticket.ticket_type_id, ticket.event_id)])
    ticket.status = status
    ticket.updated_at = now
    note = f"Status set from {current} to {status} by the organiser"
    db.add(
        TicketScan(
            org_id=ticket.org_id,
            event_id=ticket.event_id,
            ticket_id=ticket.id,
            scan_type=ScanType.ACCESS.value,
            location="",
            scanner_id=actor_id,
            nonce=f"correction:{uuid.uuid4().hex}",
            result=REFUSED,
            reason=CORRECTED,
            message=(f"{note}: {reason}" if reason else f"{note}.")[:300],
            is_offline=False,
            scanned_at=now,
            received_at=now,
        )
    )
    db.flush()
    return ticket
