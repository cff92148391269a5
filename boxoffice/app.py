"""The ASGI application: the API routers and the one error handler."""

from __future__ import annotations

import gc
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boxoffice.api import errors
from boxoffice.api.docs import mount_docs
from boxoffice.api.routes import (
    admin,
    attendance,
    auth,
    bookings,
    calendar_view,
    catalogue,
    events,
    health,
    metrics,
    packages,
    payments,
    public,
    scanning,
    sessions,
    side_effects,
    tickets,
)
from boxoffice.db.session import Database
from boxoffice.integrations.factory import build_adapters
from boxoffice.observability import bind_request_id, unbind_request_id
from boxoffice.settings import Settings, get_settings
from boxoffice.worker.dispatcher import Worker

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class RequestIdMiddleware:
    """Tag each request's logs with its X-Request-Id (the client's, or a new one) and
    echo it in the response. Plain ASGI: no per-request task or body buffering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-Id", rid)
            await send(message)

        tokens = bind_request_id(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind_request_id(tokens)


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
        worker = None
        if settings.run_worker:
            worker = Worker(db, settings, app.state.adapters)
            worker.start()
        yield
        if worker is not None:
            worker.stop()
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
    app.state.adapters = build_adapters(settings, db)
    errors.register(app)
    mount_docs(app)
    for router in (
        health.router,
        metrics.router,
        auth.router,
        bookings.router,
        admin.router,
        catalogue.router,
        side_effects.router,
        public.router,
        side_effects.feeds,
        payments.router,
        payments.checkout,
        sessions.router,
        packages.router,
        attendance.router,
        calendar_view.router,
        events.router,
        tickets.router,
        scanning.router,
    ):
        app.include_router(router)

    app.add_middleware(RequestIdMiddleware)
    return app
