"""The secret link that lets a customer without an account manage one booking."""

from __future__ import annotations

import uuid

import jwt

from boxoffice.domain.errors import Unauthorized

_AUDIENCE = "boxoffice:manage-booking"


def management_token(booking_id: uuid.UUID, *, secret: str) -> str:
    """A signed token naming one booking; whoever holds it may view, cancel or move it."""
    return jwt.encode({"sub": str(booking_id), "aud": _AUDIENCE}, secret, algorithm="HS256")


def check_management_token(token: str, booking_id: uuid.UUID, *, secret: str) -> None:
    """Unauthorized unless ``token`` was issued for ``booking_id`` with this secret."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=_AUDIENCE)
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("This booking link is not valid.") from exc
    if claims.get("sub") != str(booking_id):
        raise Unauthorized("This booking link is not valid.")


def management_url(public_url: str, booking_id: uuid.UUID, *, secret: str) -> str:
    token = management_token(booking_id, secret=secret)
    return f"{public_url.rstrip('/')}/api/v1/public/bookings/{booking_id}?token={token}"
