"""Each event's Ed25519 keys: the active one signs its ticket codes, every one still
listed verifies them (scanners download the public halves).

A private key is stored encrypted with a key derived from the instance secret; it
leaves this module only as the signing key object.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select, update

from boxoffice.db.models import Event, EventKey
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict
from boxoffice.domain.tickets import (
    generate_signing_key,
    load_private_key,
    load_public_key,
    private_key_bytes,
    public_key_text,
)
from boxoffice.services import crypto

ACTIVE = "active"
RETIRED = "retired"
MAX_KEY_ID = 255


def create_key(db: Db, event: Event, *, secret_key: str, now: datetime) -> EventKey:
    """A new signing key for the event, the next key id; the former active key is
    retired (it still verifies the codes it signed)."""
    used = db.execute(
        select(func.max(EventKey.key_id)).where(EventKey.event_id == event.id)
    ).scalar_one()
    key_id = 0 if used is None else used + 1
    if key_id > MAX_KEY_ID:
        raise Conflict("This event has used all its key ids.", {"eventId": str(event.id)})
    db.execute(
        update(EventKey)
        .where(EventKey.event_id == event.id, EventKey.status == ACTIVE)
        .values(status=RETIRED, retired_at=now)
    )
    private = generate_signing_key()
    raw = base64.b64encode(private_key_bytes(private)).decode()
    key = EventKey(
        id=uuid.uuid4(),
        org_id=event.org_id,
        event_id=event.id,
        key_id=key_id,
        public_key=public_key_text(private.public_key()),
        private_key_encrypted=crypto.encrypt(secret_key, raw),
        status=ACTIVE,
        created_at=now,
    )
    db.add(key)
    db.flush()
    return key


def signing_key(
    db: Db, event_id: uuid.UUID, *, secret_key: str
) -> tuple[int, Ed25519PrivateKey] | None:
    """The event's active key id and private key; None before the event has one."""
    key = db.execute(
        select(EventKey).where(EventKey.event_id == event_id, EventKey.status == ACTIVE)
    ).scalar_one_or_none()
    if key is None:
        return None
    raw = base64.b64decode(crypto.decrypt(secret_key, key.private_key_encrypted))
    return key.key_id, load_private_key(raw)


def published_keys(db: Db, event_id: uuid.UUID) -> list[EventKey]:
    """The keys scanners should hold for the event, newest first."""
    return list(
        db.execute(
            select(EventKey).where(EventKey.event_id == event_id).order_by(EventKey.key_id.desc())
        ).scalars()
    )


def public_keys(db: Db, event_id: uuid.UUID) -> dict[int, Ed25519PublicKey]:
    """Key id -> public key, for verifying the event's codes."""
    return {k.key_id: load_public_key(k.public_key) for k in published_keys(db, event_id)}
