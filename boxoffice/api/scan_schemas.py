"""Bodies of ticket validation, scanning, offline scanning, access checks and
subscriptions. Instants are ISO 8601 in UTC; public keys base64url without padding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from boxoffice.api.schemas import In, Instant, Out
from boxoffice.db.models import EventKey, Subscription, TicketRevocation, TicketScan
from boxoffice.domain.checkin import Scan
from boxoffice.services.access import AccessDecision
from boxoffice.services.offline_scans import BatchItem, OfflinePack, PackTicket
from boxoffice.services.scans import CORRECTED, ScanAnswer, TicketView, Validation

ScanTypeName = Literal["check_in", "check_out", "access"]
TicketStatusName = Literal["pending", "active", "used", "expired", "cancelled", "refunded"]
Nonce = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Code = Annotated[str, StringConstraints(max_length=300)]


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


# --- validation and scans -----------------------------------------------------------------


class TicketSummaryOut(Out):
    id: uuid.UUID
    event_id: uuid.UUID
    ticket_type_id: uuid.UUID
    ticket_type: int = Field(description="The type's number within the event")
    kind: str
    status: TicketStatusName
    holder_name: str | None
    revision: int
    valid_from: datetime
    valid_until: datetime

    @classmethod
    def of(cls, t: TicketView) -> TicketSummaryOut:
        return cls(
            id=t.id,
            event_id=t.event_id,
            ticket_type_id=t.ticket_type_id,
            ticket_type=t.type_number,
            kind=t.type_kind,
            status=t.status,  # type: ignore[arg-type]
            holder_name=t.holder_name,
            revision=t.revision,
            valid_from=_utc(t.valid_from),
            valid_until=_utc(t.valid_until),
        )


class ValidationOut(Out):
    valid: bool
    reason: str = Field(description='"Ticket is valid", "Ticket not found", "Ticket is used"...')
    reason_code: str | None = Field(description="invalid, not_found, cancelled, revoked, ...")
    message: str = Field(description="A sentence door staff can read aloud")
    ticket: TicketSummaryOut | None = Field(description="Only for a code that verified")

    @classmethod
    def of(cls, v: Validation) -> ValidationOut:
        c = v.check
        return cls(
            valid=c.is_valid,
            reason=c.message,
            reason_code=c.reason.value if c.reason else None,
            message=c.spoken,
            ticket=TicketSummaryOut.of(v.ticket) if v.ticket else None,
        )


class ScanIn(In):
    scan_type: ScanTypeName
    event_id: uuid.UUID = Field(description="The scanner's event")
    nonce: Nonce = Field(description="The scanner's id for this scan; a retry resends it")
    location: Location = ""


class PreviousScanOut(Out):
    scanned_at: datetime
    location: str

    @classmethod
    def of(cls, s: Scan) -> PreviousScanOut:
        return cls(scanned_at=_utc(s.scanned_at), location=s.location)


class ScanOut(Out):
    id: uuid.UUID
    kind: Literal["scan", "correction"]
    ticket_id: uuid.UUID | None
    event_id: uuid.UUID
    scan_type: ScanTypeName
    result: Literal["accepted", "refused"]
    reason: str | None
    message: str
    location: str
    scanner_id: uuid.UUID | None
    device_id: str | None
    nonce: str
    is_offline: bool
    scanned_at: datetime
    received_at: datetime

    @classmethod
    def of(cls, s: TicketScan) -> ScanOut:
        return cls(
            id=s.id,
            kind="correction" if s.reason == CORRECTED else "scan",
            ticket_id=s.ticket_id,
            event_id=s.event_id,
            scan_type=s.scan_type,  # type: ignore[arg-type]
            result=s.result,  # type: ignore[arg-type]
            reason=s.reason,
            message=s.message,
            location=s.location,
            scanner_id=s.scanner_id,
            device_id=s.device_id,
            nonce=s.nonce,
            is_offline=s.is_offline,
            scanned_at=_utc(s.scanned_at),
            received_at=_utc(s.received_at),
        )


class ScanResultOut(Out):
    accepted: bool
    reason: str | None = Field(description="The refusal: invalid, revoked, already_checked_in...")
    message: str = Field(description="A sentence door staff can read aloud")
    previous: PreviousScanOut | None = Field(description="The check-in that refused this one")
    repeated: bool = Field(description="The nonce was known: this is the first answer again")
    scan: ScanOut

    @classmethod
    def of(cls, a: ScanAnswer) -> ScanResultOut:
        return cls(
            accepted=a.scan.result == "accepted",
            reason=a.scan.reason,
            message=a.scan.message,
            previous=PreviousScanOut.of(a.previous) if a.previous else None,
            repeated=a.is_repeat,
            scan=ScanOut.of(a.scan),
        )


class ScanListOut(Out):
    ticket_id: uuid.UUID
    scans: list[ScanOut]


class TicketStatusIn(In):
    status: TicketStatusName
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=250)] = ""


class TicketStatusOut(Out):
    id: uuid.UUID
    status: TicketStatusName
    revision: int
    cancelled_at: datetime | None


# --- offline scanning ---------------------------------------------------------------------


class TicketKeyOut(Out):
    key_id: int
    public_key: str = Field(description="Raw 32-byte Ed25519 key, base64url without padding")
    status: Literal["active", "retired"]

    @classmethod
    def of(cls, k: EventKey) -> TicketKeyOut:
        return cls(key_id=k.key_id, public_key=k.public_key, status=k.status)  # type: ignore[arg-type]


class RevocationOut(Out):
    fingerprint: str
    revoked_at: datetime

    @classmethod
    def of(cls, r: TicketRevocation) -> RevocationOut:
        return cls(fingerprint=r.fingerprint, revoked_at=_utc(r.revoked_at))


class RevocationListOut(Out):
    event_id: uuid.UUID
    fingerprints: list[str]
    revocations: list[RevocationOut]


class PackTicketOut(Out):
    id: uuid.UUID
    ticket_type: int
    kind: str
    status: TicketStatusName
    is_paid: bool
    holder_name: str | None
    revision: int
    fingerprint: str | None
    valid_from: datetime
    valid_until: datetime

    @classmethod
    def of(cls, t: PackTicket) -> PackTicketOut:
        return cls(
            id=t.id,
            ticket_type=t.type_number,
            kind=t.type_kind,
            status=t.status,  # type: ignore[arg-type]
            is_paid=t.is_paid,
            holder_name=t.holder_name,
            revision=t.revision,
            fingerprint=t.fingerprint,
            valid_from=_utc(t.valid_from),
            valid_until=_utc(t.valid_until),
        )


class OfflinePackOut(Out):
    event_id: uuid.UUID
    timezone: str
    single_entry: bool
    generated_at: datetime
    keys: list[TicketKeyOut]
    revocations: list[str]
    tickets: list[PackTicketOut]

    @classmethod
    def of(cls, p: OfflinePack) -> OfflinePackOut:
        return cls(
            event_id=p.event.id,
            timezone=p.event.timezone,
            single_entry=p.event.single_entry,
            generated_at=_utc(p.generated_at),
            keys=[TicketKeyOut.of(k) for k in p.keys],
            revocations=[r.fingerprint for r in p.revocations],
            tickets=[PackTicketOut.of(t) for t in p.tickets],
        )


class BatchScanIn(In):
    ticket_code: Code | None = None
    ticket_id: uuid.UUID | None = None
    scan_type: ScanTypeName
    scanned_at: Instant
    location: Location = ""
    nonce: Nonce
    device_result: Literal["accepted", "refused"] | None = Field(
        default=None, description="What the scanner did; absent means it let them through"
    )

    @model_validator(mode="after")
    def _one_ticket(self) -> BatchScanIn:
        if (self.ticket_code is None) == (self.ticket_id is None):
            raise ValueError("give ticketCode or ticketId, one of them")
        return self


class BatchIn(In):
    device_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
    ]
    scans: Annotated[list[BatchScanIn], Field(max_length=1000)]


class BatchItemOut(Out):
    nonce: str
    outcome: Literal["accepted", "conflict", "refused", "duplicate"]
    reason: str | None
    winner: str | None = Field(description="A conflict's: the nonce of the check-in that won")
    ticket_id: uuid.UUID | None

    @classmethod
    def of(cls, i: BatchItem) -> BatchItemOut:
        return cls(
            nonce=i.nonce,
            outcome=i.outcome,  # type: ignore[arg-type]
            reason=i.reason,
            winner=i.winner,
            ticket_id=i.ticket_id,
        )


class BatchOut(Out):
    results: list[BatchItemOut]
    revised: list[BatchItemOut] = Field(description="Stored scans whose outcome changed")


# --- access and subscriptions -------------------------------------------------------------


class AccessOut(Out):
    allowed: bool
    via: Literal["subscription", "booking", "ticket"] | None
    reason: str

    @classmethod
    def of(cls, d: AccessDecision) -> AccessOut:
        return cls(
            allowed=d.allowed,
            via=d.via.value if d.via else None,
            reason=d.reason,
        )


class SubscriptionIn(In):
    user_id: uuid.UUID | None = None
    user_email: Annotated[str, StringConstraints(max_length=320)] | None = None
    plan: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    starts_at: Instant
    ends_at: Instant | None = None


class SubscriptionOut(Out):
    id: uuid.UUID
    user_id: uuid.UUID
    user_email: str
    plan: str
    status: Literal["active", "cancelled", "expired"]
    starts_at: datetime
    ends_at: datetime | None
    is_current: bool = Field(description="Active, started and not ended at the time of asking")

    @classmethod
    def of(cls, s: Subscription, email: str, now: datetime) -> SubscriptionOut:
        current = (
            s.status == "active" and s.starts_at <= now and (s.ends_at is None or s.ends_at > now)
        )
        return cls(
            id=s.id,
            user_id=s.user_id,
            user_email=email,
            plan=s.plan,
            status=s.status,  # type: ignore[arg-type]
            starts_at=_utc(s.starts_at),
            ends_at=_utc(s.ends_at) if s.ends_at else None,
            is_current=current,
        )


class SubscriptionListOut(Out):
    subscriptions: list[SubscriptionOut]
