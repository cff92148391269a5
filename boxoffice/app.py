"""The ASGI application: the API routers and the one error handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from boxoffice.api import errors
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
        yield
        if database is None:
            db.dispose()

    app = FastAPI(
        title="Box Office",
        version="0.1.0",
        description="Booking engine: rooms and timeslots, bookings, admin.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.secret_key = settings.resolved_secret_key()
    errors.register(app)
    for module in (health, auth, bookings, admin):
        app.include_router(module.router)
    return app
