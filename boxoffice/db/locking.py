"""Small helpers for statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as Db


def for_update(db: Db, stmt: Select[Any], *, of: Any = None, keep_key: bool = False) -> Select[Any]:
    """Lock the selected rows (only those of ``of``, if given) until the transaction ends.

    ``keep_key``: for a change that keeps the rows and their keys (PostgreSQL's FOR NO
    KEY UPDATE), which does not wait for transactions that merely insert rows referring
    to them (their foreign-key checks hold a KEY SHARE lock until they commit).

    PostgreSQL takes row locks; on SQLite the write transaction (BEGIN IMMEDIATE)
    already holds the database's single write lock, so nothing is added.
    """
    if db.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(of=of, key_share=keep_key)
    return stmt


_QUEUE = text("SELECT pg_advisory_xact_lock(:key)")


def queue_for(db: Db, resource_id: uuid.UUID) -> None:
    """Wait in line for ``resource_id`` until this transaction ends.

    For a row that many transactions update at once (a popular event's counters). On
    PostgreSQL a transaction-scoped advisory lock keyed by the id: its waiters are
    woken one at a time, in order, where the waiters for a row lock all wake at each
    commit to fight over the new row version, which cost more database CPU than the
    sales themselves. It orders the writers; the conditional UPDATEs and CHECK
    constraints still guard the counts. On SQLite the write transaction (BEGIN
    IMMEDIATE) is already the only writer, so nothing is added.
    """
    if db.get_bind().dialect.name == "postgresql":
        # The id's first 64 bits, as the signed bigint the function takes.
        db.execute(_QUEUE, {"key": int.from_bytes(resource_id.bytes[:8], "big", signed=True)})


def insert_if_absent(
    db: Db, table: Table, values: dict[str, Any], conflict_columns: Sequence[str]
) -> bool:
    """Insert a row unless one with the same ``conflict_columns`` exists; True if inserted.

    On PostgreSQL a concurrent insert of the same key waits for the other
    transaction and then reports the conflict, so exactly one caller wins.
    """
    dialect = db.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(*table.primary_key.columns)
    )
    # rowcount is unreliable for INSERT on some drivers; a returned key is not.
    return db.execute(stmt).first() is not None
