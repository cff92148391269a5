"""Alembic environment: runs on the connection handed over by boxoffice.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from boxoffice.db import models  # noqa: F401  (registers the tables)
from boxoffice.db.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # plain `alembic` command line, e.g. for autogenerate
        from boxoffice.settings import get_settings

        engine = create_engine(get_settings().sqlalchemy_url)
        with engine.begin() as conn:
            _configure_and_run(conn)
        return
    _configure_and_run(connection)


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    context.run_migrations()


run_migrations_online()
