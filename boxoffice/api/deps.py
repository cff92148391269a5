"""Dependencies shared by the routes: the database, the clock and the caller.

They are ``async`` although none awaits anything: FastAPI runs a plain ``def``
dependency in its thread pool, and these do no I/O, so the hop would only cost time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from boxoffice.db.session import Database
from boxoffice.domain.errors import Unauthorized
from boxoffice.services import auth
from boxoffice.services.ports import PaymentGateway
from boxoffice.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/v1/auth/token")


async def get_database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_secret_key(request: Request) -> str:
    """The instance secret that signs access tokens."""
    secret: str = request.app.state.secret_key
    return secret


async def get_gateway(request: Request) -> PaymentGateway:
    """The payment gateway chosen at start-up."""
    gateway: PaymentGateway = request.app.state.adapters.payments
    return gateway


async def get_now() -> datetime:
    """The request's clock; tests may override it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """The authenticated user, from a verified bearer token (no database read yet).

    Routes confirm the account is still active inside their own transaction.
    """

    user_id: uuid.UUID
    org_slug: str | None


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_org: Annotated[
        str | None, Header(description="Organisation slug, for admins of several")
    ] = None,
) -> Caller:
    if credentials is None:
        raise Unauthorized("Sign in first: send 'Authorization: Bearer <token>'.")
    user_id = auth.decode_token(credentials.credentials, secret=request.app.state.secret_key)
    return Caller(user_id=user_id, org_slug=x_org)


Db = Annotated[Database, Depends(get_database)]
Now = Annotated[datetime, Depends(get_now)]
CurrentCaller = Annotated[Caller, Depends(get_caller)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
SecretKey = Annotated[str, Depends(get_secret_key)]
Gateway = Annotated[PaymentGateway, Depends(get_gateway)]
