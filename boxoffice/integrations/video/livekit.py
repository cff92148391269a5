"""LiveKit video rooms: signed webhooks become joins and leaves of a session.

Naming, which whoever creates the rooms and the join tokens must follow:

- a session's room is named ``session-<session uuid>`` (see :func:`room_name`);
  rooms named otherwise are not ours and their events are ignored;
- a participant's identity is the id of their booking (a bare uuid); other
  identities (the host, an agent, a recorder) are ignored.

LiveKit signs each webhook with a JWT in the ``Authorization`` header, issued by
the API key, signed with its secret, valid for a few minutes, and carrying the
SHA-256 of the body; ``WebhookReceiver`` checks all of that.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import jwt
from google.protobuf.json_format import ParseError
from livekit import api

from boxoffice.domain.errors import InvalidInput, InvalidSignature
from boxoffice.services.attendance import PresenceEvent, Source

ROOM_PREFIX = "session-"
_KINDS: dict[str, Literal["join", "leave"]] = {
    "participant_joined": "join",
    "participant_left": "leave",
}


def room_name(session_id: uuid.UUID) -> str:
    """The LiveKit room of a session."""
    return f"{ROOM_PREFIX}{session_id}"


def parse_webhook(
    body: bytes, authorization: str | None, *, api_key: str, api_secret: str, now: datetime
) -> PresenceEvent | None:
    """Verify a LiveKit webhook and read the join or leave in it.

    Raises InvalidSignature when the token is missing, signed with another key or
    secret, expired, or does not carry this body's hash; InvalidInput when a body
    that verifies is not a webhook event. Returns None for events that are not
    ours: other event types, other rooms, participants that are not bookings.
    The event's ``created_at`` (seconds) is the time of the join or leave.
    """
    if not authorization:
        raise InvalidSignature("The Authorization header is missing.")
    token = authorization.removeprefix("Bearer ").strip()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignature("The webhook body is not UTF-8, so it cannot be verified.") from exc
    receiver = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
    try:
        event = receiver.receive(text, token)
    except ParseError as exc:  # raised only once the body has verified
        raise InvalidInput("The webhook body is not a LiveKit event.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidSignature(f"The LiveKit token does not verify: {_sentence(exc)}") from exc
    except Exception as exc:
        # The SDK raises a bare Exception when the token has no hash or another body's.
        raise InvalidSignature(f"The LiveKit webhook does not verify: {_sentence(exc)}") from exc

    kind = _KINDS.get(event.event)
    if kind is None:
        return None
    session_id = _uuid(event.room.name.removeprefix(ROOM_PREFIX))
    if not event.room.name.startswith(ROOM_PREFIX) or session_id is None:
        return None
    booking_id = _uuid(event.participant.identity)
    if booking_id is None:
        return None
    at = datetime.fromtimestamp(event.created_at, UTC) if event.created_at > 0 else now
    return PresenceEvent(
        kind=kind,
        session_id=session_id,
        booking_id=booking_id,
        at=at,
        source=Source.LIVEKIT,
        external_id=f"livekit:{event.id}" if event.id else None,
    )


def _sentence(exc: Exception) -> str:
    return str(exc).rstrip(".") + "."


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
