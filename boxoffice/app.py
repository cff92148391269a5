"""The ASGI application: the API routers and the one error handler."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from boxoffice.api import errors
from boxoffice.api.docs import mount_docs
from boxoffice.api.routes import admin, auth, bookings, health
from boxoffice.db.session import Database
from boxoffice.settings import Settings, get_settings


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app; the database must already be migrated (`boxoffice migrate`)."""
    settings = settings or get_settings()
    db = database or Database.from_url(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes hold a thread and a pooled connection for their whole run: cap the
        # threads at the pool size, so extra requests wait in the event loop instead of
        # contending for the GIL and opening overflow connections.
        to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
        # Everything built at start-up lives as long as the process: keep it out of the
        # cyclic collector, whose full passes over it otherwise stall requests for ~50 ms.
        gc.collect()
        gc.freeze()
        yield
        if database is None:
            db.dispose()

    app = FastAPI(
        title="Box Office",
        version="0.1.0",
        description="Booking engine: rooms and timeslots, bookings, admin.",
        lifespan=lifespan,
        docs_url=None,  # mounted below with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.secret_key = settings.resolved_secret_key()
    errors.register(app)
    mount_docs(app)
    for module in (health, auth, bookings, admin):
        app.include_router(module.router)
    return app
