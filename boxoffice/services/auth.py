"""Accounts, passwords, bearer tokens and roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from boxoffice.db.models import Membership, User
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from boxoffice.services.organizations import get_organization_by_slug

ROLES = ("owner", "admin", "staff", "scanner")
ADMIN_ROLES = frozenset({"owner", "admin"})
# Staff run the front desk: they see bookings and move them through their lifecycle.
DESK_ROLES = ADMIN_ROLES | {"staff"}
MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a real password")
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class OrgRole:
    org_id: uuid.UUID
    org_slug: str
    role: str


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 320 or " " in email:
        raise InvalidInput("That is not a valid e-mail address.", {"email": email})
    return email


def register_user(db: Db, *, email: str, password: str, name: str) -> User:
    """Create a customer account; the e-mail must be new."""
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters.",
            {"minLength": MIN_PASSWORD_LENGTH},
        )
    if not name.strip():
        raise InvalidInput("The name cannot be empty.")
    if db.execute(select(User.id).where(User.email == email)).first():
        raise Conflict("An account with this e-mail exists.", {"email": email})
    user = User(email=email, name=name.strip(), password_hash=_hasher.hash(password))
    db.add(user)
    db.flush()
    return user


def authenticate(db: Db, *, email: str, password: str) -> User:
    """The active user with these credentials, else Unauthorized (same for both cases)."""
    user = db.execute(select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None or not user.is_active:
        raise Unauthorized("Wrong e-mail or password.")
    return user


def issue_token(user: User, *, secret: str, now: datetime, ttl_s: int) -> str:
    """A signed bearer token naming the user, valid for ``ttl_s`` seconds."""
    claims = {"sub": str(user.id), "iat": now, "exp": now + timedelta(seconds=ttl_s)}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def decode_token(token: str, *, secret: str) -> uuid.UUID:
    """The user id a valid, unexpired token names, else Unauthorized."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], options={"require": ["exp"]})
        return uuid.UUID(claims["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise Unauthorized("The access token is invalid or has expired.") from exc


def require_active(db: Db, user_id: uuid.UUID) -> None:
    """Refuse a token whose account was deleted or deactivated (reads one column)."""
    is_active = db.execute(select(User.is_active).where(User.id == user_id)).scalar()
    if not is_active:
        raise Unauthorized("The access token is invalid or has expired.")


def active_user(db: Db, user_id: uuid.UUID) -> User:
    """The user a token names, if the account still exists and is active."""
    user = db.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The access token is invalid or has expired.")
    return user


def org_roles(db: Db, user_id: uuid.UUID) -> list[OrgRole]:
    rows = db.execute(select(Membership).where(Membership.user_id == user_id)).scalars()
    return [OrgRole(m.org_id, m.organization.slug, m.role) for m in rows]


def admin_org(
    db: Db, user_id: uuid.UUID, *, org_slug: str | None, roles: frozenset[str] = ADMIN_ROLES
) -> OrgRole:
    """The organisation where the user has one of ``roles`` (by default owner or admin).

    A user with such a role in several organisations names one with ``org_slug``.
    """
    active_user(db, user_id)
    matching = [r for r in org_roles(db, user_id) if r.role in roles]
    if org_slug is not None:
        matching = [r for r in matching if r.org_slug == org_slug]
    if not matching:
        raise Forbidden("Your role in this organisation does not allow this.")
    if len(matching) > 1:
        raise InvalidInput(
            "You belong to several organisations; name one with the X-Org header.",
            {"organizations": [r.org_slug for r in matching]},
        )
    return matching[0]


def grant_role(db: Db, *, user: User, org_slug: str, role: str) -> Membership:
    """Give ``user`` a role in an organisation (replacing any role they had there)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}.", {"role": role})
    org = get_organization_by_slug(db, org_slug)
    membership = db.execute(
        select(Membership).where(Membership.org_id == org.id, Membership.user_id == user.id)
    ).scalar_one_or_none()
    if membership is None:
        membership = Membership(org_id=org.id, user_id=user.id, role=role)
        db.add(membership)
    membership.role = role
    db.flush()
    return membership


def create_admin(db: Db, *, email: str, password: str, name: str, org_slug: str) -> User:
    """Create (or promote) an account as owner of an organisation."""
    existing = db.execute(
        select(User).where(User.email == normalise_email(email))
    ).scalar_one_or_none()
    user = existing or register_user(db, email=email, password=password, name=name)
    if existing is not None:
        existing.password_hash = _hasher.hash(password)
    grant_role(db, user=user, org_slug=org_slug, role="owner")
    return user
