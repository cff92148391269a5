"""Idempotency keys: a retried request returns what the first one created."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from boxoffice.db.locking import insert_if_absent
from boxoffice.db.models import IdempotencyKey
from boxoffice.db.session import Db
from boxoffice.domain.errors import IdempotencyMismatch, InvalidInput

MAX_KEY_LENGTH = 255


def fingerprint(request: dict[str, Any]) -> str:
    """A stable hash of a request's meaningful values."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def claim(
    db: Db,
    *,
    scope: str,
    key: str,
    request_hash: str,
    now: datetime,
    resource: tuple[str, uuid.UUID] | None = None,
) -> uuid.UUID | None:
    """Claim ``key`` for this request, or return the resource its first use created.

    Returns None when this request is the first with the key; the caller then
    creates the resource and, unless it named it up front (``resource``: its type and
    id), calls :func:`complete` in the same transaction. If that transaction fails,
    the claim is rolled back with it and a retry starts afresh.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.", {"length": len(key)}
        )
    values = {
        "id": uuid.uuid4(),
        "scope": scope,
        "key": key,
        "request_hash": request_hash,
        "resource_type": resource[0] if resource else "",
        "resource_id": resource[1] if resource else None,
        "created_at": now,
    }
    if insert_if_absent(db, IdempotencyKey.__table__, values, ("scope", "key")):  # type: ignore[arg-type]
        return None
    row = db.execute(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    ).scalar_one()
    if row.request_hash != request_hash or row.resource_id is None:
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used for a different request.", {"key": key}
        )
    return row.resource_id


def complete(db: Db, *, scope: str, key: str, resource_type: str, resource_id: uuid.UUID) -> None:
    """Record the resource created under a claimed key."""
    db.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(resource_type=resource_type, resource_id=resource_id)
    )
