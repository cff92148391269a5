"""Accounts and bearer tokens."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, status

from boxoffice.api.deps import AppSettings, CurrentCaller, Db, SecretKey
from boxoffice.api.schemas import (
    MembershipOut,
    RegisterIn,
    TokenIn,
    TokenOut,
    UserOut,
    error_responses,
)
from boxoffice.services import auth

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=error_responses(401, 409))


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def register(body: RegisterIn, db: Db) -> UserOut:
    """Create a customer account."""
    with db.write() as s:
        user = auth.register_user(s, email=body.email, password=body.password, name=body.name)
        return UserOut(id=user.id, email=user.email, name=user.name, created_at=user.created_at)


@router.post("/token", response_model=TokenOut)
def token(body: TokenIn, db: Db, settings: AppSettings, secret: SecretKey) -> TokenOut:
    """Exchange e-mail and password for a bearer token."""
    with db.read() as s:
        user = auth.authenticate(s, email=body.email, password=body.password)
    # Token lifetimes run on the wall clock, which is also what verification uses.
    issued_at = datetime.now(UTC)
    access = auth.issue_token(user, secret=secret, now=issued_at, ttl_s=settings.token_ttl_s)
    return TokenOut(access_token=access, expires_in=settings.token_ttl_s)


@router.get("/me", response_model=UserOut)
def me(caller: CurrentCaller, db: Db) -> UserOut:
    """The signed-in account and its roles."""
    with db.read() as s:
        user = auth.active_user(s, caller.user_id)
        roles = auth.org_roles(s, user.id)
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        created_at=user.created_at,
        memberships=[MembershipOut(organization=r.org_slug, role=r.role) for r in roles],
    )
