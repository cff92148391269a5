"""Small helpers for statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as Db


def for_update(db: Db, stmt: Select[Any], *, of: Any = None) -> Select[Any]:
    """Lock the selected rows (only those of ``of``, if given) until the transaction ends.

    PostgreSQL takes row locks; on SQLite the write transaction (BEGIN IMMEDIATE)
    already holds the database's single write lock, so nothing is added.
    """
    if db.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(of=of)
    return stmt


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
