"""The outbox: side effects written with the change that caused them, delivered later.

A row is *pending* until a worker delivers it (``delivered_at``) or gives up on it
(``dead_at``). Claiming a row pushes its ``next_attempt_at`` one lease ahead and
counts the attempt, so a row whose worker died mid-delivery is due again once the
lease runs out, and a row that keeps killing its worker dies after N attempts.
Rows of one ``stream`` are handed out one at a time, in ``id`` order.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, select, update
from sqlalchemy.orm import aliased

from boxoffice.db.locking import insert_if_absent
from boxoffice.db.models import OutboxMessage
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound

OUTBOX = cast(Table, OutboxMessage.__table__)
MAX_ERROR = 2000
MAX_PAGE_SIZE = 100


class Topic(StrEnum):
    EVENT = "event"  # a booking change; the worker fans it out into the rows below
    EMAIL = "email"
    CALENDAR = "calendar"
    WEBHOOK = "webhook"
    REFUND = "refund"  # money owed to a customer: retried until the gateway takes it


# Topics whose rows never die: giving up would keep a customer's money.
UNDYING = frozenset({Topic.REFUND})


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class Claimed:
    """A claimed row, detached from the database: ids and plain values only."""

    id: int
    org_id: uuid.UUID
    topic: Topic
    dedupe_key: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Backoff:
    base_s: float
    max_s: float
    max_attempts: int

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential in the attempts made, with +-50 % jitter, capped."""
        exponential = min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))
        jitter = (rng or random).uniform(0.5, 1.5)
        return timedelta(seconds=min(self.max_s, exponential * jitter))


NEW_ROW_COLUMNS = (
    "org_id",
    "topic",
    "stream",
    "dedupe_key",
    "payload",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def row_values(
    *,
    org_id: uuid.UUID,
    topic: Topic,
    stream: str,
    dedupe_key: str,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The column values of a new row, due now."""
    return {
        "org_id": org_id,
        "topic": topic.value,
        "stream": stream,
        "dedupe_key": dedupe_key,
        "payload": payload,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def insert_unless_exists(db: Db, values: dict[str, Any]) -> bool:
    """Write a row in the caller's transaction; False if its ``dedupe_key`` exists."""
    return insert_if_absent(db, OUTBOX, values, ("dedupe_key",))


def enqueue(
    db: Db,
    *,
    org_id: uuid.UUID,
    topic: Topic,
    stream: str,
    dedupe_key: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Write a row in the caller's transaction; False if ``dedupe_key`` exists already."""
    values = row_values(
        org_id=org_id, topic=topic, stream=stream, dedupe_key=dedupe_key, payload=payload, now=now
    )
    return insert_unless_exists(db, values)


def _pending() -> Any:
    return and_(OutboxMessage.delivered_at.is_(None), OutboxMessage.dead_at.is_(None))


def claim_due(db: Db, *, now: datetime, limit: int, lease_s: int) -> list[Claimed]:
    """Claim up to ``limit`` due rows, each the oldest pending row of its stream.

    On PostgreSQL the rows are locked with SKIP LOCKED, so workers running at once
    claim disjoint rows; on SQLite the write transaction serialises them.
    """
    earlier = aliased(OutboxMessage)
    blocked = exists().where(
        earlier.stream == OutboxMessage.stream,
        earlier.id < OutboxMessage.id,
        earlier.delivered_at.is_(None),
        earlier.dead_at.is_(None),
    )
    stmt = (
        select(OutboxMessage.id)
        .where(_pending(), OutboxMessage.next_attempt_at <= now, ~blocked)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(db.execute(stmt).scalars())
    if not ids:
        return []
    rows = db.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(ids))
        .values(
            attempts=OUTBOX.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_s),
        )
        .returning(
            OUTBOX.c.id,
            OUTBOX.c.org_id,
            OUTBOX.c.topic,
            OUTBOX.c.dedupe_key,
            OUTBOX.c.payload,
            OUTBOX.c.attempts,
        )
    ).all()
    claimed = [
        Claimed(
            id=r.id,
            org_id=r.org_id,
            topic=Topic(r.topic),
            dedupe_key=r.dedupe_key,
            payload=r.payload,
            attempts=r.attempts,
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda c: c.id)


_MARK_DELIVERED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("now"), last_error=None)
)


def mark_delivered(db: Db, ids: list[int], *, now: datetime) -> None:
    if ids:
        db.connection().execute(_MARK_DELIVERED, [{"row_id": i, "now": now} for i in ids])


def release(db: Db, ids: list[int], *, now: datetime) -> None:
    """Hand claimed rows back untried: due now, the attempt not counted."""
    if ids:
        db.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(ids), OUTBOX.c.delivered_at.is_(None))
            .values(next_attempt_at=now, attempts=OUTBOX.c.attempts - 1)
        )


def claim_for_fan_out(db: Db, row_id: int, *, now: datetime) -> bool:
    """Mark one row delivered in the caller's transaction; False if another got it first.

    Used when delivering a row *is* a write in this database (an event fanned out
    into more rows), so delivery and its record commit together, exactly once.
    """
    result = db.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == row_id, OUTBOX.c.delivered_at.is_(None))
        .values(delivered_at=now, last_error=None)
        .returning(OUTBOX.c.id)
    )
    return result.first() is not None


def mark_failed(
    db: Db, row: Claimed, error: str, *, now: datetime, backoff: Backoff
) -> DeliveryState:
    """Record a failed attempt: due again after a backoff, or dead after the last one."""
    dead = row.attempts >= backoff.max_attempts and row.topic not in UNDYING
    db.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == row.id, OUTBOX.c.delivered_at.is_(None))
        .values(
            last_error=error[:MAX_ERROR],
            next_attempt_at=now + backoff.delay(row.attempts),
            dead_at=now if dead else None,
        )
    )
    return DeliveryState.DEAD if dead else DeliveryState.PENDING


@dataclass(frozen=True)
class DeliveryPage:
    items: list[OutboxMessage]
    total: int
    page: int
    limit: int


def list_deliveries(
    db: Db,
    *,
    org_id: uuid.UUID | None,
    state: DeliveryState | None,
    topic: Topic | None,
    page: int = 1,
    limit: int = 20,
) -> DeliveryPage:
    """Outbox rows, newest first; ``org_id`` None means every organisation's (CLI)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", {"limit": limit})
    if page < 1:
        raise InvalidInput("page starts at 1.", {"page": page})
    stmt = select(OutboxMessage)
    if org_id is not None:
        stmt = stmt.where(OutboxMessage.org_id == org_id)
    if topic is not None:
        stmt = stmt.where(OutboxMessage.topic == topic.value)
    if state is DeliveryState.PENDING:
        stmt = stmt.where(_pending())
    elif state is DeliveryState.DELIVERED:
        stmt = stmt.where(OutboxMessage.delivered_at.is_not(None))
    elif state is DeliveryState.DEAD:
        stmt = stmt.where(OutboxMessage.dead_at.is_not(None))
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = list(
        db.execute(
            stmt.order_by(OutboxMessage.id.desc()).offset((page - 1) * limit).limit(limit)
        ).scalars()
    )
    return DeliveryPage(items=items, total=total, page=page, limit=limit)


def state_of(row: OutboxMessage) -> DeliveryState:
    if row.delivered_at is not None:
        return DeliveryState.DELIVERED
    if row.dead_at is not None:
        return DeliveryState.DEAD
    return DeliveryState.PENDING


def retry(db: Db, row_id: int, *, org_id: uuid.UUID | None, now: datetime) -> OutboxMessage:
    """Give a dead row a fresh set of attempts, due now."""
    stmt = select(OutboxMessage).where(OutboxMessage.id == row_id)
    if org_id is not None:
        stmt = stmt.where(OutboxMessage.org_id == org_id)
    row = db.execute(stmt.with_for_update()).scalar_one_or_none()
    if row is None:
        raise NotFound("Delivery not found.", {"deliveryId": row_id})
    if row.dead_at is None:
        raise Conflict(
            f"Only a dead delivery can be retried; this one is {state_of(row)}.",
            {"state": state_of(row).value},
        )
    row.dead_at = None
    row.attempts = 0
    row.next_attempt_at = now
    db.flush()
    return row


@dataclass(frozen=True)
class Backlog:
    pending: int
    due: int
    dead: int
    oldest_pending_at: datetime | None


def backlog(db: Db, *, now: datetime) -> Backlog:
    """How much is waiting: the figures behind the metrics and `boxoffice outbox`."""
    pending, due, oldest = db.execute(
        select(
            func.count(),
            func.count().filter(OutboxMessage.next_attempt_at <= now),
            func.min(OutboxMessage.created_at),
        ).where(_pending())
    ).one()
    dead = db.execute(select(func.count()).where(OutboxMessage.dead_at.is_not(None))).scalar_one()
    return Backlog(pending=pending, due=due, dead=dead, oldest_pending_at=oldest)
