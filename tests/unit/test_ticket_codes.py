"""Ticket codes (signed, compact, checked offline), the ticket check with its order of
reasons, the check-in machine, offline batches, and the codes' QR symbols."""

from __future__ import annotations

import base64
import string
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from boxoffice.domain.checkin import (
    OfflineScan,
    Resolution,
    Scan,
    ScanType,
    apply_scan,
    decide_scan,
    resolve_offline_scans,
)
from boxoffice.domain.errors import DomainError, InvalidInput, InvalidSignature
from boxoffice.domain.tickets import (
    CODE_CHARS,
    PAYLOAD_BYTES,
    PAYLOAD_LAYOUT,
    SIGNING_CONTEXT,
    InvalidTicketCode,
    Refusal,
    TicketClaims,
    TicketStatus,
    check_ticket,
    claims_fingerprint,
    code_fingerprint,
    event_tag,
    generate_signing_key,
    load_private_key,
    load_public_key,
    load_public_keys,
    peek_ticket,
    private_key_bytes,
    public_key_text,
    read_ticket,
    sign_ticket,
)
from boxoffice.integrations.qr import qr_png, qr_size, qr_svg

EVENT = uuid.UUID("7d0f6a55-3c1e-4a8e-9d51-2f0a8b6c1e01")
OTHER_EVENT = uuid.UUID("0b5e2f4c-8a7d-4f3b-b1c2-9e8d7a6f5b04")
DOORS_OPEN = datetime(2026, 12, 12, 18, 0, tzinfo=UTC)
DOORS_CLOSE = datetime(2026, 12, 13, 2, 0, tzinfo=UTC)
DURING = datetime(2026, 12, 12, 19, 42, tzinfo=UTC)
# Fixed keys, so that the codes (and the characters the tests pick in them) are fixed.
KEY_1 = load_private_key(bytes(range(32)))
KEY_2 = load_private_key(bytes(range(32, 64)))
KEYS = {1: KEY_1.public_key(), 2: KEY_2.public_key()}
B32 = string.ascii_uppercase + "234567"


def claims(**changes: Any) -> TicketClaims:
    values: dict[str, Any] = {
        "ticket_id": uuid.UUID("5a1c9e3b-2d4f-4b6a-8c7e-1f0d2b3a4c5d"),
        "event_id": EVENT,
        "ticket_type": 3,
        "valid_from": DOORS_OPEN,
        "valid_until": DOORS_CLOSE,
        "revision": 0,
    } | changes
    return TicketClaims.issue(**values)


CODE = sign_ticket(claims(), KEY_1, 1)


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def raw_of(code: str) -> bytes:
    return base64.b32decode(code + "=" * (-len(code) % 8))


# --- codes -------------------------------------------------------------------------------


def test_the_fixed_code_has_the_letters_the_look_alike_cases_need() -> None:
    assert "I" in CODE and "S" in CODE


def test_round_trip_and_format() -> None:
    assert read_ticket(CODE, KEYS) == claims()
    assert len(CODE) == CODE_CHARS == 164
    assert set(CODE) <= set(B32)
    raw = raw_of(CODE)
    assert len(raw) == 102
    assert raw[0] == 1  # version
    assert raw[1] == 1  # key id
    assert raw[2:18] == claims().ticket_id.bytes
    assert raw[18:26] == event_tag(EVENT)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"ticket_type": 0, "revision": 0},
        {"ticket_type": 65535, "revision": 65535},
        {"valid_from": datetime(1970, 1, 1, tzinfo=UTC)},
        {"valid_until": datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)},  # 2**32 - 1
        {"valid_from": DOORS_OPEN.astimezone(ZoneInfo("Europe/Madrid"))},
        {"ticket_id": uuid.UUID(int=0), "event_id": uuid.UUID(int=2**128 - 1)},
    ],
)
def test_round_trip_of_edge_claims(changes: dict[str, Any]) -> None:
    for key_id, key in ((0, KEY_1), (255, KEY_2)):
        code = sign_ticket(claims(**changes), key, key_id)
        assert len(code) == CODE_CHARS
        assert read_ticket(code, {key_id: key.public_key()}) == claims(**changes)


def test_codes_are_deterministic_so_a_reissue_bumps_the_revision() -> None:
    # Ed25519 signs deterministically: the same claims give the same code, which is why
    # a reissued ticket needs a new revision to differ from the code that was revoked.
    assert sign_ticket(claims(), KEY_1, 1) == CODE
    assert sign_ticket(claims(revision=1), KEY_1, 1) != CODE
    assert code_fingerprint(sign_ticket(claims(revision=1), KEY_1, 1)) != code_fingerprint(CODE)


def test_scanner_input_is_normalised() -> None:
    for variant in (CODE.lower(), CODE.swapcase(), f" {CODE}\r\n", f"\t{CODE.lower()}\n"):
        assert read_ticket(variant, KEYS) == claims()
        assert code_fingerprint(variant) == code_fingerprint(CODE)


def test_every_single_character_substitution_is_invalid() -> None:
    for i, original in enumerate(CODE):
        for char in B32:
            if char == original:
                continue
            with pytest.raises(InvalidTicketCode):
                read_ticket(CODE[:i] + char + CODE[i + 1 :], KEYS)


def test_every_bit_flip_and_byte_overwrite_of_the_bytes_is_invalid() -> None:
    raw = raw_of(CODE)
    for i in range(len(raw)):
        for mask in (*(1 << bit for bit in range(8)), 0xFF):
            altered = raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1 :]
            with pytest.raises(InvalidTicketCode):
                read_ticket(b32(altered), KEYS)
        for value in (0x00, 0xFF):
            if raw[i] != value:
                with pytest.raises(InvalidTicketCode):
                    read_ticket(b32(raw[:i] + bytes([value]) + raw[i + 1 :]), KEYS)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "   ",
        "hello",
        CODE[:-1],
        CODE[:100],
        CODE[:PAYLOAD_BYTES],
        CODE + "A",
        CODE + "====",  # padded base32 is not the canonical form
        CODE[:80] + " " + CODE[80:],
        CODE[:80] + "\n" + CODE[80:],
        CODE[:10] + "0" + CODE[11:],  # 0, 1, 8, 9 are not base32
        CODE[:10] + "1" + CODE[11:],
        CODE[:10] + "8" + CODE[11:],
        CODE[:10] + "=" + CODE[11:],
        "A" * CODE_CHARS,  # decodes, version 0
        "0" * CODE_CHARS,
        "=" * CODE_CHARS,
        b32(bytes([1]) + bytes(101)),  # version 1, key 0, all zero
        b32(bytes([1, 1]) + bytes(100)),  # version 1, a known key, all zero
        CODE[:-1] + "B",  # only the padding bits differ
        # look-alikes that str.upper() would turn into the right letter
        CODE.replace("I", "\u0131"),  # dotless i
        CODE.replace("S", "\u017f"),  # long s
        "\uff21" + CODE[1:],  # fullwidth A
    ],
)
def test_malformed_codes_are_invalid(code: str) -> None:
    with pytest.raises(InvalidTicketCode) as caught:
        read_ticket(code, KEYS)
    assert caught.value.message == "Invalid ticket code"
    assert caught.value.code == "invalid_ticket_code"
    assert caught.value.details == {}


def test_all_lengths_but_the_one_are_invalid() -> None:
    for n in range(2 * CODE_CHARS):
        candidate = (CODE * 2)[:n]
        if n != CODE_CHARS:
            with pytest.raises(InvalidTicketCode):
                read_ticket(candidate, KEYS)


def test_invalid_code_is_a_signature_error_with_one_message() -> None:
    messages = set()
    for code, keys in (
        ("garbage", KEYS),
        (CODE, {2: KEY_2.public_key()}),  # unknown key id
        (CODE, {1: KEY_2.public_key()}),  # wrong key
        (sign_ticket(claims(), KEY_1, 2), KEYS),  # key id of another key
    ):
        with pytest.raises(InvalidTicketCode) as caught:
            read_ticket(code, keys)
        assert isinstance(caught.value, InvalidSignature)
        assert isinstance(caught.value, DomainError)
        messages.add(str(caught.value))
    assert messages == {"Invalid ticket code"}


def test_rotated_keys() -> None:
    by_1, by_2 = sign_ticket(claims(), KEY_1, 1), sign_ticket(claims(), KEY_2, 2)
    assert read_ticket(by_1, KEYS) == read_ticket(by_2, KEYS) == claims()
    assert read_ticket(by_2, {2: KEY_2.public_key()}) == claims()
    with pytest.raises(InvalidTicketCode):
        read_ticket(by_1, {2: KEY_2.public_key()})
    with pytest.raises(InvalidTicketCode):
        read_ticket(by_1, {})


def test_another_event_key_does_not_verify() -> None:
    other = generate_signing_key()
    forged = sign_ticket(claims(), other, 1)  # right claims, wrong event's key
    with pytest.raises(InvalidTicketCode):
        read_ticket(forged, KEYS)


def test_the_signature_covers_a_context_and_the_version() -> None:
    payload = raw_of(CODE)[:PAYLOAD_BYTES]
    bare = KEY_1.sign(payload)  # the same key signing the bare payload for something else
    with pytest.raises(InvalidTicketCode):
        read_ticket(b32(payload + bare), KEYS)
    fields = list(PAYLOAD_LAYOUT.unpack(payload))
    fields[0] = 2
    future = PAYLOAD_LAYOUT.pack(*fields)
    with pytest.raises(InvalidTicketCode, match="Invalid ticket code") as caught:
        read_ticket(b32(future + KEY_1.sign(SIGNING_CONTEXT + future)), KEYS)
    assert caught.value.why == "unknown version"


def test_a_signed_but_impossible_payload_is_invalid() -> None:
    fields = list(PAYLOAD_LAYOUT.unpack(raw_of(CODE)[:PAYLOAD_BYTES]))
    fields[7] = fields[6]  # valid_until == valid_from
    payload = PAYLOAD_LAYOUT.pack(*fields)
    with pytest.raises(InvalidTicketCode):
        read_ticket(b32(payload + KEY_1.sign(SIGNING_CONTEXT + payload)), KEYS)


def test_peek_reads_without_verifying() -> None:
    forged = sign_ticket(claims(), generate_signing_key(), 1)
    assert peek_ticket(forged) == claims()
    with pytest.raises(InvalidTicketCode):
        peek_ticket(CODE[:-2])


def test_fingerprints() -> None:
    fingerprint = code_fingerprint(CODE)
    assert len(fingerprint) == 32 and set(fingerprint) <= set("0123456789abcdef")
    assert fingerprint == claims_fingerprint(claims())
    # the claims are revoked, whichever key signed them
    assert code_fingerprint(sign_ticket(claims(), KEY_2, 2)) == fingerprint
    assert CODE not in fingerprint
    others = {
        claims_fingerprint(claims(**c))
        for c in (
            {"revision": 1},
            {"ticket_type": 4},
            {"valid_until": DOORS_CLOSE + timedelta(seconds=1)},
            {"event_id": OTHER_EVENT},
            {"ticket_id": uuid.uuid4()},
        )
    }
    assert len(others) == 5 and fingerprint not in others
    with pytest.raises(InvalidTicketCode):
        code_fingerprint("not a code")


def test_code_length_bound_holds_for_any_claims() -> None:
    for revision in range(0, 65536, 4099):
        code = sign_ticket(claims(revision=revision, ticket_id=uuid.uuid4()), KEY_1, 1)
        assert len(code) == CODE_CHARS < 170


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"valid_from": datetime(2026, 12, 12, 18, 0)}, "timezone-aware"),
        ({"valid_from": DOORS_OPEN + timedelta(microseconds=1)}, "whole seconds"),
        ({"valid_until": DOORS_OPEN}, "end after it starts"),
        ({"valid_until": DOORS_OPEN - timedelta(hours=1)}, "end after it starts"),
        ({"valid_from": datetime(1969, 12, 31, tzinfo=UTC)}, "out of range"),
        ({"valid_until": datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC)}, "out of range"),
        ({"ticket_type": -1}, "0-65535"),
        ({"ticket_type": 65536}, "0-65535"),
        ({"revision": 65536}, "0-65535"),
    ],
)
def test_claims_are_checked_when_issued(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        claims(**changes)


def test_key_ids_and_event_tags_are_checked() -> None:
    for key_id in (-1, 256):
        with pytest.raises(InvalidInput):
            sign_ticket(claims(), KEY_1, key_id)
    with pytest.raises(InvalidInput):
        TicketClaims(uuid.uuid4(), b"short", 1, DOORS_OPEN, DOORS_CLOSE)


# --- keys --------------------------------------------------------------------------------


def test_private_key_round_trip() -> None:
    raw = private_key_bytes(KEY_1)
    assert len(raw) == 32
    assert sign_ticket(claims(), load_private_key(raw), 1) == CODE
    for bad in (b"", raw[:31], raw + b"\0"):
        with pytest.raises(InvalidInput):
            load_private_key(bad)


def test_public_key_text_round_trip() -> None:
    text = public_key_text(KEY_1.public_key())
    assert len(text) == 43 and set(text) <= set(string.ascii_letters + string.digits + "-_")
    assert read_ticket(CODE, {1: load_public_key(text)}) == claims()
    published = {1: text, 2: public_key_text(KEY_2.public_key())}
    assert read_ticket(CODE, load_public_keys(published)) == claims()


def test_public_key_text_must_be_canonical() -> None:
    text = public_key_text(KEY_1.public_key())
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(text[-1])
    non_canonical = (
        text[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    )  # only the 2 unused trailing bits differ
    standard = base64.b64encode(KEY_1.public_key().public_bytes_raw()).decode().rstrip("=")
    for bad in ("", text + "=", text[:-1], text + "A", f" {text}", non_canonical, "!" * 43):
        with pytest.raises(InvalidInput):
            load_public_key(bad)
    if standard != text:  # "+" or "/" in place of "-" or "_"
        with pytest.raises(InvalidInput):
            load_public_key(standard)
    assert isinstance(load_public_key(text), Ed25519PublicKey)


# --- the ticket check ----------------------------------------------------------------------

FORGED = InvalidTicketCode("bad signature")


def check(verified: TicketClaims | InvalidTicketCode = FORGED, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "status": TicketStatus.ACTIVE,
        "is_revoked": False,
        "is_paid": True,
        "event_id": EVENT,
        "now": DURING,
    } | changes
    return check_ticket(verified, **values)


@pytest.mark.parametrize(
    ("verified", "changes", "reason", "message", "spoken"),
    [
        (claims(), {}, None, "Ticket is valid", "Valid ticket."),
        (FORGED, {}, "invalid", "Invalid ticket code", "Invalid ticket code."),
        # a forged code is invalid whatever the database says about its ticket id
        (FORGED, {"status": None}, "invalid", "Invalid ticket code", "Invalid ticket code."),
        (
            claims(),
            {"event_id": OTHER_EVENT},
            "wrong_event",
            "Ticket is for another event",
            "This ticket is for another event.",
        ),
        (claims(), {"status": None}, "not_found", "Ticket not found", "Ticket not found."),
        (
            claims(),
            {"status": TicketStatus.CANCELLED},
            "cancelled",
            "Ticket is cancelled",
            "This ticket was cancelled.",
        ),
        (
            claims(),
            {"status": TicketStatus.REFUNDED},
            "cancelled",
            "Ticket is refunded",
            "This ticket was refunded.",
        ),
        (
            claims(),
            {"is_revoked": True},
            "revoked",
            "Ticket code is revoked",
            "This code was replaced. Ask for the current ticket.",
        ),
        (claims(), {"is_paid": False}, "unpaid", "Ticket is not paid", "This ticket is not paid."),
        (
            claims(),
            {"status": TicketStatus.EXPIRED},
            "expired",
            "Ticket is expired",
            "This ticket has expired.",
        ),
        (
            claims(),
            {"status": TicketStatus.USED},
            "already_checked_in",
            "Ticket is used",
            "Already checked in.",
        ),
        (
            claims(),
            {"now": DOORS_OPEN - timedelta(seconds=1)},
            "not_yet_valid",
            "Ticket not yet valid",
            "Not valid yet. Valid from 18:00.",
        ),
        (
            claims(),
            {"now": DOORS_OPEN - timedelta(days=2)},
            "not_yet_valid",
            "Ticket not yet valid",
            "Not valid yet. Valid from 12 Dec at 18:00.",
        ),
        (
            claims(),
            {"now": DOORS_OPEN - timedelta(hours=1), "tz": ZoneInfo("Europe/Madrid")},
            "not_yet_valid",
            "Ticket not yet valid",
            "Not valid yet. Valid from 19:00.",
        ),
        (claims(), {"now": DOORS_OPEN}, None, "Ticket is valid", "Valid ticket."),
        (
            claims(),
            {"now": DOORS_CLOSE - timedelta(seconds=1)},
            None,
            "Ticket is valid",
            "Valid ticket.",
        ),
        (
            claims(),
            {"now": DOORS_CLOSE},
            "expired",
            "Ticket expired",
            "This ticket expired at 02:00.",
        ),
        (
            claims(),
            {"now": DOORS_CLOSE + timedelta(days=1)},
            "expired",
            "Ticket expired",
            "This ticket expired on 13 Dec at 02:00.",
        ),
    ],
)
def test_every_reason(
    verified: TicketClaims | InvalidTicketCode,
    changes: dict[str, Any],
    reason: str | None,
    message: str,
    spoken: str,
) -> None:
    result = check(verified, **changes)
    assert result.is_valid is (reason is None)
    assert result.reason == reason
    assert result.message == message
    assert result.spoken == spoken


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        # each pair: the earlier check wins over the later one
        ({"event_id": OTHER_EVENT, "status": TicketStatus.CANCELLED}, Refusal.WRONG_EVENT),
        ({"event_id": OTHER_EVENT, "status": None}, Refusal.WRONG_EVENT),
        ({"status": None, "is_revoked": True}, Refusal.NOT_FOUND),
        ({"status": TicketStatus.REFUNDED, "is_revoked": True}, Refusal.CANCELLED),
        ({"is_revoked": True, "is_paid": False}, Refusal.REVOKED),
        ({"is_revoked": True, "now": DOORS_CLOSE}, Refusal.REVOKED),
        ({"is_paid": False, "status": TicketStatus.USED}, Refusal.UNPAID),
        ({"status": TicketStatus.EXPIRED, "now": DOORS_OPEN - timedelta(1)}, Refusal.EXPIRED),
        ({"status": TicketStatus.USED, "now": DOORS_CLOSE}, Refusal.ALREADY_CHECKED_IN),
        ({"is_paid": False, "now": DOORS_OPEN - timedelta(1)}, Refusal.UNPAID),
    ],
)
def test_order_of_checks(changes: dict[str, Any], reason: Refusal) -> None:
    assert check(claims(), **changes).reason is reason


# --- check-in ------------------------------------------------------------------------------


def scan(kind: ScanType, at: str, location: str = "Gate A", *, ok: bool = True) -> Scan:
    return Scan(kind, datetime.fromisoformat(f"2026-12-12T{at}+00:00"), location, ok)


IN, OUT, ACCESS = ScanType.CHECK_IN, ScanType.CHECK_OUT, ScanType.ACCESS


@pytest.mark.parametrize("single", [False, True])
def test_first_check_in_is_accepted(single: bool) -> None:
    result = apply_scan([], IN, now=DURING, is_single_entry=single)
    assert result.is_valid and result.reason is None
    assert result.marks_used is single
    assert result.spoken == "Checked in."


def test_double_check_in_is_refused_with_time_and_place() -> None:
    history = [scan(IN, "19:42", "Gate A")]
    result = apply_scan(history, IN, now=DURING + timedelta(minutes=5), is_single_entry=False)
    assert not result.is_valid
    assert result.reason is Refusal.ALREADY_CHECKED_IN
    assert result.spoken == "Already checked in at 19:42 at Gate A."
    assert result.previous == history[0]
    assert not result.marks_used
    madrid = apply_scan(
        history, IN, now=DURING, is_single_entry=False, tz=ZoneInfo("Europe/Madrid")
    )
    assert madrid.spoken == "Already checked in at 20:42 at Gate A."
    next_day = apply_scan(history, IN, now=DURING + timedelta(days=1), is_single_entry=False)
    assert next_day.spoken == "Already checked in on 12 Dec at 19:42 at Gate A."


def test_check_out_then_check_in_is_accepted_when_re_entry_is_allowed() -> None:
    history = [scan(IN, "19:00"), scan(OUT, "20:00", "Gate B")]
    assert apply_scan(history, IN, now=DURING, is_single_entry=False).is_valid


def test_single_entry_refuses_re_entry() -> None:
    history = [scan(OUT, "20:00", "Gate B"), scan(IN, "19:00", "Gate A")]  # any order
    result = apply_scan(history, IN, now=DURING, is_single_entry=True)
    assert result.reason is Refusal.ALREADY_CHECKED_IN
    assert result.spoken == "Already checked in at 19:00 at Gate A. No re-entry."


def test_check_out_needs_an_open_check_in() -> None:
    result = apply_scan([], OUT, now=DURING, is_single_entry=False)
    assert result.reason is Refusal.NOT_CHECKED_IN and result.spoken == "Not checked in."
    closed = [scan(IN, "19:00"), scan(OUT, "19:30")]
    assert apply_scan(closed, OUT, now=DURING, is_single_entry=False).reason == "not_checked_in"
    assert apply_scan(closed[:1], OUT, now=DURING, is_single_entry=False).is_valid


def test_access_changes_nothing_and_refused_scans_do_not_count() -> None:
    assert apply_scan([], ACCESS, now=DURING, is_single_entry=True).is_valid
    history = [scan(IN, "19:00", ok=False), scan(ACCESS, "19:10")]
    assert apply_scan(history, IN, now=DURING, is_single_entry=True).is_valid
    assert apply_scan(
        [scan(IN, "19:00"), scan(ACCESS, "19:10")], OUT, now=DURING, is_single_entry=True
    ).is_valid


def scan_at_door(kind: ScanType, verified: Any = None, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "status": TicketStatus.ACTIVE,
        "is_revoked": False,
        "is_paid": True,
        "event_id": EVENT,
        "history": [],
        "now": DURING,
        "is_single_entry": True,
    } | changes
    return decide_scan(claims() if verified is None else verified, scan_type=kind, **values)


def test_decide_scan() -> None:
    inside = [scan(IN, "19:00", "North gate")]
    used = {"status": TicketStatus.USED, "history": inside}
    refused = scan_at_door(IN, **used)
    assert refused.reason is Refusal.ALREADY_CHECKED_IN
    assert refused.spoken == "Already checked in at 19:00 at North gate."
    # a used ticket with no check-in on record is still refused
    assert scan_at_door(IN, status=TicketStatus.USED).spoken == "Already checked in."
    # a used ticket leaves and opens inner doors
    assert scan_at_door(OUT, **used).is_valid
    assert scan_at_door(ACCESS, **used).is_valid
    # money and time never keep anyone inside; a bad code or another event's ticket does
    assert scan_at_door(OUT, is_paid=False, now=DOORS_CLOSE, history=inside).is_valid
    assert scan_at_door(OUT, FORGED, history=inside).reason is Refusal.INVALID
    assert scan_at_door(OUT, event_id=OTHER_EVENT, history=inside).reason == "wrong_event"
    # the ticket's checks come before the machine
    assert scan_at_door(IN, status=TicketStatus.CANCELLED).reason is Refusal.CANCELLED
    assert scan_at_door(ACCESS, is_revoked=True).reason is Refusal.REVOKED
    first = scan_at_door(IN)
    assert first.is_valid and first.marks_used
    assert not scan_at_door(IN, is_single_entry=False).marks_used


# --- offline batches ------------------------------------------------------------------------

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)


def offline(
    nonce: str, at: str, scanner: str = "s1", kind: ScanType = IN, **kw: Any
) -> OfflineScan:
    values: dict[str, Any] = {"ticket_id": T1, "location": f"Gate {scanner}"} | kw
    return OfflineScan(
        nonce=nonce,
        scan_type=kind,
        scanned_at=datetime.fromisoformat(f"2026-12-12T{at}+00:00"),
        scanner_id=scanner,
        **values,
    )


def test_same_ticket_at_two_gates_is_a_conflict_won_by_the_earlier() -> None:
    a, b = offline("n-a", "19:00:05", "gate-b"), offline("n-b", "19:00:01", "gate-a")
    outcome = resolve_offline_scans([a, b], is_single_entry=False)
    assert outcome.resolved["n-b"].resolution is Resolution.ACCEPTED
    assert outcome.resolved["n-a"].resolution is Resolution.CONFLICT
    assert outcome.resolved["n-a"].reason is Refusal.ALREADY_CHECKED_IN
    assert outcome.resolved["n-a"].winner == "n-b"
    assert [c.nonce for c in outcome.conflicts()] == ["n-a"]


def test_ties_go_to_the_scanner_id_then_the_nonce() -> None:
    x, y = offline("z", "19:00", "gate-1"), offline("a", "19:00", "gate-2")
    assert resolve_offline_scans([y, x], is_single_entry=False).resolved["a"].winner == "z"
    p, q = offline("n2", "19:00", "gate-1"), offline("n1", "19:00", "gate-1")
    assert resolve_offline_scans([p, q], is_single_entry=False).resolved["n2"].winner == "n1"


def test_duplicates_by_nonce_are_idempotent() -> None:
    scans = [offline("n1", "19:00"), offline("n2", "19:10", "s2"), offline("n3", "19:20", kind=OUT)]
    once = resolve_offline_scans(scans, is_single_entry=False)
    twice = resolve_offline_scans(scans + scans, is_single_entry=False)
    again = resolve_offline_scans(scans, scans, is_single_entry=False)
    assert once.resolved == twice.resolved == again.resolved
    assert once.duplicates == frozenset()
    assert twice.duplicates == again.duplicates == {"n1", "n2", "n3"}
    assert not twice.mismatched


def test_a_nonce_sent_with_two_contents_is_flagged_and_resolved_one_way() -> None:
    first, second = offline("n1", "19:00"), offline("n1", "19:05", "s2")
    between = offline("n2", "19:02", "s3")
    for order in ([first, second, between], [between, second, first], [second, between, first]):
        outcome = resolve_offline_scans(order, is_single_entry=False)
        assert outcome.mismatched == {"n1"}
        assert outcome.resolved["n1"].resolution is Resolution.ACCEPTED  # the 19:00 version
        assert outcome.resolved["n2"].winner == "n1"


def test_a_late_upload_of_an_earlier_scan_turns_an_accepted_one_into_a_conflict() -> None:
    online = offline("online", "19:30", "s2")
    assert (
        resolve_offline_scans([online], is_single_entry=True).resolved["online"].resolution
        == "accepted"
    )
    outcome = resolve_offline_scans(
        [offline("late", "19:00", "s1")], [online], is_single_entry=True
    )
    assert outcome.resolved["late"].resolution is Resolution.ACCEPTED
    assert outcome.resolved["online"].resolution is Resolution.CONFLICT
    assert outcome.resolved["online"].winner == "late"


def test_refused_at_the_door_stays_refused_and_changes_nothing() -> None:
    scans = [
        offline("r", "19:00", is_admitted=False),
        offline("ok", "19:01", "s2"),
        offline("out", "19:02", "s3", kind=OUT),
        offline("stray-out", "19:03", "s3", kind=OUT),
        offline("back", "19:04", "s1"),
        offline("other-ticket", "19:04", "s2", ticket_id=T2),
    ]
    multi = resolve_offline_scans(scans, is_single_entry=False).resolved
    assert {n: r.resolution.value for n, r in multi.items()} == {
        "back": "accepted",
        "ok": "accepted",
        "other-ticket": "accepted",
        "out": "accepted",
        "r": "refused",
        "stray-out": "conflict",
    }
    assert multi["stray-out"].reason is Refusal.NOT_CHECKED_IN and multi["stray-out"].winner is None
    single = resolve_offline_scans(scans, is_single_entry=True).resolved
    assert single["back"].resolution is Resolution.CONFLICT and single["back"].winner == "ok"


_scans = st.builds(
    OfflineScan,
    nonce=st.sampled_from([f"n{i}" for i in range(12)]),
    ticket_id=st.sampled_from([T1, T2]),
    scan_type=st.sampled_from(list(ScanType)),
    scanned_at=st.integers(0, 6).map(lambda m: DURING + timedelta(minutes=m)),
    scanner_id=st.sampled_from(["s1", "s2", "s3"]),
    location=st.just("Gate"),
    is_admitted=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    scans=st.lists(_scans, max_size=16, unique_by=lambda s: s.nonce),
    data=st.data(),
    single=st.booleans(),
)
def test_outcome_is_independent_of_upload_order_and_batching(
    scans: list[OfflineScan], data: st.DataObject, single: bool
) -> None:
    expected = resolve_offline_scans(scans, is_single_entry=single).resolved
    shuffled = data.draw(st.permutations(scans))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(scans)), max_size=3)))
    known: list[OfflineScan] = []
    for start, end in zip([0, *cuts], [*cuts, len(scans)], strict=True):
        batch = shuffled[start:end]
        # a scanner retrying part of its upload changes nothing
        batch += data.draw(st.lists(st.sampled_from(shuffled[:end]), max_size=2)) if end else []
        resolved = resolve_offline_scans(batch, known, is_single_entry=single).resolved
        known += [s for s in batch if s not in known]
    assert resolved == expected
    # the accepted check-ins of one ticket never overlap
    for ticket in (T1, T2):
        inside = 0
        for s in sorted((s for s in scans if s.ticket_id == ticket), key=OfflineScan.order_key):
            if expected[s.nonce].resolution is Resolution.ACCEPTED and s.scan_type != ACCESS:
                inside += 1 if s.scan_type is IN else -1
                assert inside in (0, 1)


@settings(max_examples=100, deadline=None)
@given(scans=st.lists(_scans, max_size=12), data=st.data(), single=st.booleans())
def test_colliding_nonces_resolve_the_same_in_any_order(
    scans: list[OfflineScan], data: st.DataObject, single: bool
) -> None:
    expected = resolve_offline_scans(scans, is_single_entry=single)
    shuffled = resolve_offline_scans(data.draw(st.permutations(scans)), is_single_entry=single)
    assert shuffled == expected


# --- QR --------------------------------------------------------------------------------------


def test_a_code_is_a_version_7_qr_at_error_correction_m() -> None:
    assert qr_size(CODE) == (7, 45)
    for _ in range(20):
        assert qr_size(sign_ticket(claims(ticket_id=uuid.uuid4()), KEY_2, 255)) == (7, 45)


def test_qr_png_and_svg() -> None:
    png = qr_png(CODE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png[16:20], "big") == (45 + 8) * 6  # IHDR width
    svg = ET.fromstring(qr_svg(CODE))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("viewBox") == "0 0 53 53"
    assert svg.findtext("{http://www.w3.org/2000/svg}title") == "Ticket"


def test_a_lower_case_code_gives_the_same_symbol() -> None:
    assert qr_svg(CODE.lower()) == qr_svg(CODE)


def test_plain_strings_from_storage_work_like_the_enums() -> None:
    assert check(claims(), status="refunded").message == "Ticket is refunded"
    assert check(claims(), status="used").reason is Refusal.ALREADY_CHECKED_IN
    stored: Any = "check_in"  # a column read as text
    history = [Scan(stored, DURING, "Gate A")]
    refused = apply_scan(history, stored, now=DURING, is_single_entry=False)
    assert refused.reason is Refusal.ALREADY_CHECKED_IN


def test_a_pending_ticket_is_unpaid_and_says_so() -> None:
    check = check_ticket(
        claims(),
        status=TicketStatus.PENDING,
        is_revoked=False,
        is_paid=False,
        event_id=EVENT,
        now=DURING,
    )
    assert (check.reason, check.message) == (Refusal.UNPAID, "Ticket is pending")


def test_libsodium_and_openssl_verify_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes are verified with libsodium when PyNaCl is there, else with OpenSSL."""
    from boxoffice.domain import tickets

    assert tickets.HAS_SODIUM
    raw = bytearray(base64.b32decode(CODE + "=" * (-len(CODE) % 8)))
    raw[PAYLOAD_BYTES + 5] ^= 1
    forged = b32(bytes(raw))
    for verify in (tickets._verify_with_sodium, tickets._verify_with_openssl):
        monkeypatch.setattr(tickets, "_verify", verify)
        assert read_ticket(CODE, KEYS) == claims()
        with pytest.raises(InvalidTicketCode):
            read_ticket(forged, KEYS)
        with pytest.raises(InvalidTicketCode):
            read_ticket(sign_ticket(claims(), KEY_2, 1), KEYS)
