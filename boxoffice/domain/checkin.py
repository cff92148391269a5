"""Check-in at the door: the state machine of a ticket's scans, and offline batches.

A ticket's accepted scans, in time order, say whether its holder is inside: a check-in
opens a stay, a check-out closes it, an access scan (an inner door) changes nothing.
``apply_scan`` judges one new scan against that history, ``decide_scan`` first checks the
ticket itself (``boxoffice.domain.tickets.check_ticket``), and ``resolve_offline_scans``
replays the scans offline scanners upload, so the outcome depends on the set of scans,
never on the order they reach the server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from uuid import UUID

from boxoffice.domain.tickets import (
    InvalidTicketCode,
    Refusal,
    Scan,
    ScanType,
    TicketCheck,
    TicketClaims,
    TicketStatus,
    check_ticket,
    spoken_time,
)

__all__ = [
    "Attendance",
    "BatchOutcome",
    "OfflineScan",
    "Resolution",
    "ResolvedScan",
    "Scan",
    "ScanType",
    "apply_scan",
    "attendance",
    "decide_scan",
    "resolve_offline_scans",
]


@dataclass(frozen=True, slots=True)
class Attendance:
    """Where a ticket stands: its open check-in, and its latest check-in, open or not."""

    inside: Scan | None = None
    last_check_in: Scan | None = None


def _refusal(state: Attendance, scan_type: ScanType, is_single_entry: bool) -> Refusal | None:
    if scan_type == ScanType.CHECK_IN:
        if state.inside is not None or (is_single_entry and state.last_check_in is not None):
            return Refusal.ALREADY_CHECKED_IN
    elif scan_type == ScanType.CHECK_OUT and state.inside is None:
        return Refusal.NOT_CHECKED_IN
    return None


def _advance(state: Attendance, scan: Scan) -> Attendance:
    if scan.scan_type == ScanType.CHECK_IN:
        return Attendance(scan, scan)
    if scan.scan_type == ScanType.CHECK_OUT:
        return Attendance(None, state.last_check_in)
    return state


def attendance(history: Iterable[Scan]) -> Attendance:
    """The state after the accepted scans of ``history``, taken in time order."""
    state = Attendance()
    for scan in sorted((s for s in history if s.is_accepted), key=lambda s: s.scanned_at):
        state = _advance(state, scan)
    return state


def apply_scan(
    history: Iterable[Scan],
    scan_type: ScanType,
    *,
    now: datetime,
    is_single_entry: bool,
    tz: tzinfo = UTC,
) -> TicketCheck:
    """The check-in machine alone (the ticket itself already checked): a check-in while
    one is open, or any second check-in at a single-entry event, is refused with the time
    and place of that check-in; a check-out needs an open check-in (so occupancy never
    goes negative; nobody is kept in, the refusal only records it); access changes nothing.
    An accepted check-in at a single-entry event marks the ticket used."""
    state = attendance(history)
    reason = _refusal(state, scan_type, is_single_entry)
    if reason is Refusal.NOT_CHECKED_IN:
        return TicketCheck(False, reason, "Ticket is not checked in", "Not checked in.")
    if reason is Refusal.ALREADY_CHECKED_IN:
        previous = state.inside or state.last_check_in
        assert previous is not None
        spoken = f"Already checked in {spoken_time(previous.scanned_at, now, tz)}"
        spoken += f" at {previous.location}." if previous.location else "."
        if state.inside is None:
            spoken += " No re-entry."
        return TicketCheck(False, reason, "Ticket already checked in", spoken, previous=previous)
    if scan_type == ScanType.CHECK_IN:
        return TicketCheck(True, None, "Checked in", "Checked in.", marks_used=is_single_entry)
    if scan_type == ScanType.CHECK_OUT:
        return TicketCheck(True, None, "Checked out", "Checked out.")
    return TicketCheck(True, None, "Ticket is valid", "Valid ticket.")


# Only these stop an exit: money and time never keep anyone inside.
_EXIT_REFUSALS = frozenset({Refusal.INVALID, Refusal.WRONG_EVENT, Refusal.NOT_FOUND})


def decide_scan(
    claims: TicketClaims | InvalidTicketCode,
    *,
    status: TicketStatus | None,
    is_revoked: bool,
    is_paid: bool,
    event_id: UUID,
    history: Sequence[Scan],
    scan_type: ScanType,
    now: datetime,
    is_single_entry: bool,
    tz: tzinfo = UTC,
) -> TicketCheck:
    """A scan at the door: ``check_ticket`` then ``apply_scan``. A used ticket is refused
    with the time and place of its check-in when ``history`` has it."""
    check = check_ticket(
        claims,
        status=status,
        is_revoked=is_revoked,
        is_paid=is_paid,
        event_id=event_id,
        now=now,
        tz=tz,
    )
    reason = check.reason
    if reason is Refusal.ALREADY_CHECKED_IN and scan_type != ScanType.CHECK_IN:
        reason = None  # a used ticket still leaves and opens inner doors
    if scan_type == ScanType.CHECK_OUT and reason not in _EXIT_REFUSALS:
        reason = None
    if reason is not None and reason is not Refusal.ALREADY_CHECKED_IN:
        return check
    decision = apply_scan(history, scan_type, now=now, is_single_entry=is_single_entry, tz=tz)
    if reason is not None and decision.is_valid:
        return check  # used, though no check-in is on record
    return decision


# --- offline batches ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfflineScan:
    """A scan as a scanner uploads it; ``nonce`` identifies it (a retry resends it) and
    ``is_admitted`` says what the scanner did at the door."""

    nonce: str
    ticket_id: UUID
    scan_type: ScanType
    scanned_at: datetime
    scanner_id: str
    location: str
    is_admitted: bool = True

    def order_key(self) -> tuple[datetime, str, str]:
        return (self.scanned_at, self.scanner_id, self.nonce)

    def as_scan(self) -> Scan:
        return Scan(self.scan_type, self.scanned_at, self.location, self.is_admitted)


class Resolution(StrEnum):
    ACCEPTED = "accepted"
    CONFLICT = "conflict"  # admitted at the door, but the ticket was already in (or not)
    REFUSED = "refused"  # refused at the door: recorded, changes nothing


@dataclass(frozen=True, slots=True)
class ResolvedScan:
    nonce: str
    resolution: Resolution
    reason: Refusal | None = None
    winner: str | None = None  # a conflict's: the nonce of the check-in that holds the ticket


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Every scan of the tickets touched, known and uploaded, by nonce; the uploaded nonces
    already known or repeated (``duplicates``), and those sent with two contents."""

    resolved: dict[str, ResolvedScan]
    duplicates: frozenset[str]
    mismatched: frozenset[str]

    def conflicts(self) -> list[ResolvedScan]:
        return [r for r in self.resolved.values() if r.resolution is Resolution.CONFLICT]


def _canonical(scan: OfflineScan) -> tuple[object, ...]:
    return (
        *scan.order_key(),
        scan.ticket_id.bytes,
        scan.scan_type,
        scan.location,
        scan.is_admitted,
    )


def resolve_offline_scans(
    uploaded: Iterable[OfflineScan],
    known: Iterable[OfflineScan] = (),
    *,
    is_single_entry: bool,
) -> BatchOutcome:
    """The outcome of every scan, the same whatever the upload order or batching.

    ``known`` is what the server holds for the same tickets (earlier uploads, online
    scans). Each ticket's timeline is replayed in (scanned_at, scanner_id, nonce) order
    through the check-in machine, so a late upload of an earlier scan can turn a scan
    accepted before into a conflict: the result depends on the set of scans only. A
    nonce counts once; sent again with other content, its canonical least version stands.
    """
    by_nonce: dict[str, OfflineScan] = {}
    seen: set[str] = set()
    duplicates: set[str] = set()
    mismatched: set[str] = set()
    for is_upload, scans in ((False, known), (True, uploaded)):
        for scan in scans:
            other = by_nonce.get(scan.nonce)
            if is_upload and scan.nonce in seen:
                duplicates.add(scan.nonce)
            seen.add(scan.nonce)
            if other is not None and other != scan:
                mismatched.add(scan.nonce)
            if other is None or _canonical(scan) < _canonical(other):
                by_nonce[scan.nonce] = scan
    timelines: dict[UUID, list[OfflineScan]] = defaultdict(list)
    for scan in by_nonce.values():
        timelines[scan.ticket_id].append(scan)
    resolved: dict[str, ResolvedScan] = {}
    for timeline in timelines.values():
        state, holder = Attendance(), ""
        for scan in sorted(timeline, key=OfflineScan.order_key):
            if not scan.is_admitted:
                resolved[scan.nonce] = ResolvedScan(scan.nonce, Resolution.REFUSED)
                continue
            reason = _refusal(state, scan.scan_type, is_single_entry)
            if reason is not None:
                winner = holder if reason is Refusal.ALREADY_CHECKED_IN else None
                resolved[scan.nonce] = ResolvedScan(scan.nonce, Resolution.CONFLICT, reason, winner)
                continue
            resolved[scan.nonce] = ResolvedScan(scan.nonce, Resolution.ACCEPTED)
            state = _advance(state, scan.as_scan())
            if scan.scan_type == ScanType.CHECK_IN:
                holder = scan.nonce
    return BatchOutcome(
        dict(sorted(resolved.items())), frozenset(duplicates), frozenset(mismatched)
    )
