"""Ticket codes: signed, compact, checked offline; what a scan at the door decides.

A code (version 1) is 102 bytes, a 38-byte payload and its Ed25519 signature, in RFC 4648
base32 without padding: 164 characters of ``A-Z2-7``, which QR codes store in their
alphanumeric mode (version 7 at error correction M). The payload, big-endian:

====== ===== =====================================================================
offset bytes field
====== ===== =====================================================================
0      1     format version (1)
1      1     key id: which of the event's keys signed it (0-255, for rotation)
2      16    ticket id (UUID)
18     8     event tag: the first 8 bytes of SHA-256(``b"boxoffice event tag\\0"`` +
             the event id's 16 bytes), see ``event_tag``
26     2     ticket type: its number within the event (0-65535)
28     2     revision: bumped at every reissue, so a new code never equals a revoked one
30     4     valid from, epoch seconds (inclusive)
34     4     valid until, epoch seconds (exclusive)
38     64    Ed25519 signature of ``b"boxoffice ticket code\\0"`` + payload
             (``SIGNING_CONTEXT``)
====== ===== =====================================================================

A code says nothing trustworthy until it verifies: every failure (malformed, truncated,
unknown key, bad signature) is the one ``InvalidTicketCode``, and a forged code is never
"not found" nor "for another event". Scanners may send lower-case and trailing
whitespace (a keyboard-wedge scanner's Enter): both are normalised, and the padding bits
must be zero, so one ticket has exactly one code up to case.

Checking a code online: ``peek_ticket`` gives the ticket id (untrusted) to find the
ticket and so its event's keys (the scanner's event's keys when no ticket has that id);
``read_ticket`` verifies; ``check_ticket`` (or ``decide_scan`` for a scan) decides, with
the scanner's event. An offline scanner holds only its event's keys, so another event's
code is invalid there; "wrong event" needs the server, or a scanner holding both keys.
Revocation lists carry fingerprints, not codes: the first 16 bytes, in hex, of
SHA-256(``b"boxoffice ticket fingerprint\\0"`` + the payload without its key id byte), so
the claims are revoked whichever key signed them, and a reissued ticket (new revision)
gets a new one.

Keys are generated and codes signed with ``cryptography``; codes are verified with
libsodium (PyNaCl) when it is installed, else with ``cryptography``: the same Ed25519.
What a scan at the door does with a valid ticket (check-in, check-out, offline batches)
is ``boxoffice.domain.checkin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from uuid import UUID

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from boxoffice.domain.errors import InvalidInput, InvalidSignature

try:  # libsodium verifies Ed25519 about twice as fast as OpenSSL does on our CPUs
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBadSignature

    HAS_SODIUM = True
except ImportError:  # pragma: no cover - PyNaCl is a dependency; cryptography still works
    HAS_SODIUM = False

VERSION = 1
PAYLOAD_LAYOUT = struct.Struct(">BB16s8sHHII")
PAYLOAD_BYTES = PAYLOAD_LAYOUT.size  # 38
SIGNATURE_BYTES = 64
CODE_BYTES = PAYLOAD_BYTES + SIGNATURE_BYTES  # 102
CODE_CHARS = -(-CODE_BYTES * 8 // 5)  # 164
_PAD_BITS = CODE_CHARS * 5 - CODE_BYTES * 8  # 4 zero bits after the last byte
# Signed, never sent: nothing else an event key might sign can pass for a ticket.
SIGNING_CONTEXT = b"boxoffice ticket code\x00"
_CODE_RE = re.compile(f"[A-Z2-7]{{{CODE_CHARS}}}")
# RFC 4648's alphabet onto int()'s base-32 digits: the whole code decodes in C.
_TO_DIGITS = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv")
_MAX_U32 = 2**32 - 1
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class InvalidTicketCode(InvalidSignature):
    """A code that does not verify. Always the same message; ``why`` is for logs only."""

    code = "invalid_ticket_code"

    def __init__(self, why: str = "") -> None:
        super().__init__("Invalid ticket code")
        self.why = why


# --- keys ---------------------------------------------------------------------------------


def generate_signing_key() -> Ed25519PrivateKey:
    """A new event key."""
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte private key, for the caller to store encrypted."""
    return key.private_bytes_raw()


def load_private_key(raw: bytes) -> Ed25519PrivateKey:
    """The private key from its raw 32 bytes."""
    if len(raw) != 32:
        raise InvalidInput("An Ed25519 private key is 32 bytes.", {"length": len(raw)})
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as published by ``ticket-keys``: raw 32 bytes, base64url unpadded."""
    return base64.urlsafe_b64encode(key.public_bytes_raw()).rstrip(b"=").decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """The public key from ``public_key_text``; anything but its canonical form is refused."""
    try:
        key = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(text + "=", altchars=b"-_", validate=True)
        )
    except (binascii.Error, ValueError):
        key = None
    if key is None or public_key_text(key) != text:
        raise InvalidInput("Not an Ed25519 public key in base64url.", {"key": text[:64]})
    return key


def load_public_keys(published: Mapping[int, str]) -> dict[int, Ed25519PublicKey]:
    """The verifying keys by key id, from ``{key_id: public_key_text}``."""
    return {key_id: load_public_key(text) for key_id, text in published.items()}


# --- claims and codes ---------------------------------------------------------------------


def event_tag(event_id: UUID) -> bytes:
    """The 8 bytes that bind a code to its event (the scanner compares, never reverses)."""
    return hashlib.sha256(b"boxoffice event tag\x00" + event_id.bytes).digest()[:8]


def _epoch(at: datetime, name: str) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware.", {name: at.isoformat()})
    if at.microsecond:
        raise InvalidInput(f"{name} must be whole seconds.", {name: at.isoformat()})
    seconds = int(at.timestamp())
    if not 0 <= seconds <= _MAX_U32:
        raise InvalidInput(f"{name} is out of range for a ticket code.", {name: at.isoformat()})
    return seconds


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a code says. Times are whole seconds; ``valid_until`` is exclusive."""

    ticket_id: UUID
    event_tag: bytes
    ticket_type: int
    valid_from: datetime
    valid_until: datetime
    revision: int = 0

    def __post_init__(self) -> None:
        if len(self.event_tag) != 8:
            raise InvalidInput("An event tag is 8 bytes.", {"length": len(self.event_tag)})
        for name, value in (("ticket_type", self.ticket_type), ("revision", self.revision)):
            if not 0 <= value <= 0xFFFF:
                raise InvalidInput(f"{name} must be within 0-65535.", {name: value})
        if _epoch(self.valid_until, "valid_until") <= _epoch(self.valid_from, "valid_from"):
            raise InvalidInput("A ticket's validity must end after it starts.")

    @classmethod
    def issue(
        cls,
        *,
        ticket_id: UUID,
        event_id: UUID,
        ticket_type: int,
        valid_from: datetime,
        valid_until: datetime,
        revision: int = 0,
    ) -> TicketClaims:
        """The claims of a ticket of ``event_id``."""
        return cls(ticket_id, event_tag(event_id), ticket_type, valid_from, valid_until, revision)

    def is_for_event(self, event_id: UUID) -> bool:
        return self.event_tag == event_tag(event_id)


def _pack(claims: TicketClaims, key_id: int) -> bytes:
    return PAYLOAD_LAYOUT.pack(
        VERSION,
        key_id,
        claims.ticket_id.bytes,
        claims.event_tag,
        claims.ticket_type,
        claims.revision,
        int(claims.valid_from.timestamp()),
        int(claims.valid_until.timestamp()),
    )


def sign_ticket(claims: TicketClaims, private_key: Ed25519PrivateKey, key_id: int) -> str:
    """The code of ``claims``, signed with the event's key number ``key_id`` (0-255)."""
    if not 0 <= key_id <= 0xFF:
        raise InvalidInput("A key id must be within 0-255.", {"key_id": key_id})
    payload = _pack(claims, key_id)
    code = base64.b32encode(payload + private_key.sign(SIGNING_CONTEXT + payload))
    return code.rstrip(b"=").decode("ascii")


def _decode(code: str) -> bytes:
    """The code's bytes; only the canonical text (up to case and outer whitespace) passes."""
    if not isinstance(code, str) or not code.isascii():
        raise InvalidTicketCode("not ascii text")
    text = code.strip().upper()
    if _CODE_RE.fullmatch(text) is None:
        raise InvalidTicketCode("not a version 1 code")
    number = int(text.translate(_TO_DIGITS), 32)
    if number & ((1 << _PAD_BITS) - 1):
        raise InvalidTicketCode("padding bits set")
    return (number >> _PAD_BITS).to_bytes(CODE_BYTES, "big")


def _unpack(payload: bytes) -> tuple[int, TicketClaims]:
    version, key_id, ticket, tag, ticket_type, revision, start, end = PAYLOAD_LAYOUT.unpack(payload)
    if version != VERSION:
        raise InvalidTicketCode("unknown version")
    try:
        claims = TicketClaims(
            UUID(bytes=ticket),
            tag,
            ticket_type,
            datetime.fromtimestamp(start, UTC),
            datetime.fromtimestamp(end, UTC),
            revision,
        )
    except InvalidInput as exc:
        raise InvalidTicketCode("impossible claims") from exc
    return key_id, claims


def read_ticket(code: str, public_keys: Mapping[int, Ed25519PublicKey]) -> TicketClaims:
    """The claims of a code that verifies with one of the event's keys; else
    ``InvalidTicketCode``, whatever went wrong."""
    raw = _decode(code)
    payload = raw[:PAYLOAD_BYTES]
    key_id, claims = _unpack(payload)
    key = public_keys.get(key_id)
    if key is None:
        raise InvalidTicketCode("unknown key id")
    if not _verify(key, raw[PAYLOAD_BYTES:], SIGNING_CONTEXT + payload):
        raise InvalidTicketCode("bad signature")
    return claims


def _verify_with_sodium(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        _sodium_open(signature + message, key.public_bytes_raw())
    except _SodiumBadSignature:
        return False
    return True


def _verify_with_openssl(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except _BadSignature:
        return False
    return True


_verify: Callable[[Ed25519PublicKey, bytes, bytes], bool] = (
    _verify_with_sodium if HAS_SODIUM else _verify_with_openssl
)


def peek_ticket(code: str) -> TicketClaims:
    """The claims of a well-formed code, NOT verified: only to find which ticket and event
    keys to verify it with (then ``read_ticket``). Never decide anything on them."""
    return _unpack(_decode(code)[:PAYLOAD_BYTES])[1]


def peek_key_id(code: str) -> int:
    """The key id a well-formed code names, NOT verified: which key to verify it with."""
    return _decode(code)[1]


def _fingerprint(payload: bytes) -> str:
    # The claims without the key id: re-signing revoked claims with another key is revoked too.
    digest = hashlib.sha256(b"boxoffice ticket fingerprint\x00" + payload[:1] + payload[2:])
    return digest.hexdigest()[:32]


def code_fingerprint(code: str) -> str:
    """The revocation-list entry of a code (128 bits, hex), not the code itself."""
    return _fingerprint(_decode(code)[:PAYLOAD_BYTES])


def claims_fingerprint(claims: TicketClaims) -> str:
    """``code_fingerprint`` of any code of these claims: a changed ticket's old code can be
    revoked from its old claims, without keeping the code."""
    return _fingerprint(_pack(claims, 0))


# --- validation ---------------------------------------------------------------------------


class TicketStatus(StrEnum):
    PENDING = "pending"  # its order awaits payment: no admission yet
    ACTIVE = "active"
    USED = "used"  # checked in at a single-entry event
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Refusal(StrEnum):
    INVALID = "invalid"
    WRONG_EVENT = "wrong_event"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"  # also refunded
    REVOKED = "revoked"
    UNPAID = "unpaid"
    EXPIRED = "expired"
    ALREADY_CHECKED_IN = "already_checked_in"
    NOT_YET_VALID = "not_yet_valid"
    NOT_CHECKED_IN = "not_checked_in"  # a check-out with no open check-in


class ScanType(StrEnum):
    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"
    ACCESS = "access"  # an inner door: checks the ticket, changes nothing


@dataclass(frozen=True, slots=True)
class Scan:
    """One recorded scan of a ticket; ``location`` is the gate as staff call it."""

    scan_type: ScanType
    scanned_at: datetime
    location: str
    is_accepted: bool = True


@dataclass(frozen=True, slots=True)
class TicketCheck:
    """A ticket check or a scan decision. ``message`` is the validate API's, ``spoken`` a
    sentence door staff can read aloud; ``marks_used`` when the ticket becomes used;
    ``previous`` the check-in that refused a scan."""

    is_valid: bool
    reason: Refusal | None
    message: str
    spoken: str
    marks_used: bool = False
    previous: Scan | None = None


def spoken_time(at: datetime, now: datetime, tz: tzinfo, *, bare: bool = False) -> str:
    """ "at 19:42" (today, in ``tz``) or "on 12 Dec at 19:42"; ``bare`` without "at"/"on"."""
    local = at.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local:%H:%M}" if bare else f"at {local:%H:%M}"
    day = f"{local.day} {_MONTHS[local.month - 1]} at {local:%H:%M}"
    return day if bare else f"on {day}"


def _refused(reason: Refusal, message: str, spoken: str) -> TicketCheck:
    return TicketCheck(False, reason, message, spoken)


def check_ticket(
    claims: TicketClaims | InvalidTicketCode,
    *,
    status: TicketStatus | None,
    is_revoked: bool,
    is_paid: bool,
    event_id: UUID,
    now: datetime,
    tz: tzinfo = UTC,
) -> TicketCheck:
    """Whether a ticket may enter ``event_id`` now, and why not.

    ``claims`` is ``read_ticket``'s result or its error; ``status`` None when no ticket has
    the claims' id. The first failing check gives the reason, in this order:

    1. invalid: the code did not verify, so none of it can be trusted (not its ticket id,
       so never "not found"; not its event, so never "wrong event");
    2. wrong_event: before the ticket's state, which is another event's business;
    3. not_found: a genuine code whose ticket is gone;
    4. cancelled (or refunded): final, whichever code is shown;
    5. revoked: the ticket lives on but this code was replaced, so its type and window
       are stale and the later checks would judge the wrong claims;
    6. unpaid (also pending), 7. expired (stored status), 8. already_checked_in (status used): facts
       about the ticket that waiting does not change;
    9. not_yet_valid, then expired: the code's window, which time does change.
    """
    if isinstance(claims, InvalidTicketCode):
        return _refused(Refusal.INVALID, "Invalid ticket code", "Invalid ticket code.")
    if not claims.is_for_event(event_id):
        return _refused(
            Refusal.WRONG_EVENT, "Ticket is for another event", "This ticket is for another event."
        )
    if status is None:
        return _refused(Refusal.NOT_FOUND, "Ticket not found", "Ticket not found.")
    if status in (TicketStatus.CANCELLED, TicketStatus.REFUNDED):
        return _refused(Refusal.CANCELLED, f"Ticket is {status}", f"This ticket was {status}.")
    if is_revoked:
        return _refused(
            Refusal.REVOKED,
            "Ticket code is revoked",
            "This code was replaced. Ask for the current ticket.",
        )
    if status == TicketStatus.PENDING:
        return _refused(Refusal.UNPAID, "Ticket is pending", "This ticket is not paid.")
    if not is_paid:
        return _refused(Refusal.UNPAID, "Ticket is not paid", "This ticket is not paid.")
    if status == TicketStatus.EXPIRED:
        return _refused(Refusal.EXPIRED, "Ticket is expired", "This ticket has expired.")
    if status == TicketStatus.USED:
        return _refused(Refusal.ALREADY_CHECKED_IN, "Ticket is used", "Already checked in.")
    if now < claims.valid_from:
        when = spoken_time(claims.valid_from, now, tz, bare=True)
        return _refused(
            Refusal.NOT_YET_VALID, "Ticket not yet valid", f"Not valid yet. Valid from {when}."
        )
    if now >= claims.valid_until:
        when = spoken_time(claims.valid_until, now, tz)
        return _refused(Refusal.EXPIRED, "Ticket expired", f"This ticket expired {when}.")
    return TicketCheck(True, None, "Ticket is valid", "Valid ticket.")
