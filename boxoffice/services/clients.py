"""Leads and clients: someone interested becomes a client when they book.

A client is one per (organisation, lower-case e-mail). Converting a lead keeps its
history: the client's profile records where the lead came from and which lead it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Select, Table, func, select

from boxoffice.db.locking import for_update, insert_if_absent
from boxoffice.db.models import Client, Lead
from boxoffice.db.session import Db
from boxoffice.domain.errors import Conflict, InvalidInput, NotFound
from boxoffice.services.auth import normalise_email

LEAD_STATUSES = ("new", "contacted", "converted")
MAX_PAGE_SIZE = 100
MAX_NOTES = 5000
_CLIENTS = cast(Table, Client.__table__)
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    limit: int


def _page(db: Db, stmt: Select[Any], page: int, limit: int) -> tuple[list[Any], int]:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}.", {"limit": limit})
    if page < 1:
        raise InvalidInput("page starts at 1.", {"page": page})
    total = db.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = list(db.execute(stmt.offset((page - 1) * limit).limit(limit)).scalars())
    return items, total


def _text(values: dict[str, Any], key: str, limit: int) -> None:
    if values.get(key) is not None:
        values[key] = str(values[key]).strip()
        if len(values[key]) > limit:
            raise InvalidInput(f"{key} has at most {limit} characters.")


def _check_status(status: str) -> str:
    if status not in LEAD_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(LEAD_STATUSES)}.", {"status": status})
    return status


# --- leads ----------------------------------------------------------------------------


def get_lead(db: Db, lead_id: uuid.UUID, *, org_id: uuid.UUID) -> Lead:
    """One of the organisation's leads; another organisation's is NotFound."""
    lead = db.get(Lead, lead_id)
    if lead is None or lead.org_id != org_id:
        raise NotFound("Lead not found.", {"leadId": str(lead_id)})
    return lead


def create_lead(
    db: Db,
    *,
    org_id: uuid.UUID,
    email: str,
    name: str = "",
    source: str = "",
    notes: str = "",
    status: str = "new",
) -> Lead:
    """Record someone interested; an open lead (not converted) per e-mail at most."""
    values: dict[str, Any] = {"name": name, "source": source, "notes": notes}
    _text(values, "name", 200)
    _text(values, "source", 100)
    _text(values, "notes", MAX_NOTES)
    if _check_status(status) == "converted":
        raise InvalidInput("A lead becomes converted when it books, not when it is created.")
    email = normalise_email(email)
    existing = db.execute(
        select(Lead.id).where(
            Lead.org_id == org_id, Lead.email == email, Lead.status != "converted"
        )
    ).scalar()
    if existing is not None:
        raise Conflict(
            "An open lead with this e-mail exists.", {"email": email, "leadId": str(existing)}
        )
    lead = Lead(org_id=org_id, email=email, status=status, **values)
    db.add(lead)
    db.flush()
    return lead


def list_leads(
    db: Db,
    *,
    org_id: uuid.UUID,
    status: str | None = None,
    email: str | None = None,
    page: int = 1,
    limit: int = 20,
) -> Page[Lead]:
    """A page of the organisation's leads, newest first; ``email`` matches a part of it."""
    stmt = select(Lead).where(Lead.org_id == org_id).order_by(Lead.created_at.desc(), Lead.id)
    if status is not None:
        stmt = stmt.where(Lead.status == _check_status(status))
    if email:
        stmt = stmt.where(Lead.email.contains(email.strip().lower(), autoescape=True))
    items, total = _page(db, stmt, page, limit)
    return Page(items, total, page, limit)


def update_lead(db: Db, lead_id: uuid.UUID, *, org_id: uuid.UUID, **changes: Any) -> Lead:
    """Change a lead's name, source, notes or status (new <-> contacted).

    A converted lead stays converted; a lead converts by booking.
    """
    lead = get_lead(db, lead_id, org_id=org_id)
    _text(changes, "name", 200)
    _text(changes, "source", 100)
    _text(changes, "notes", MAX_NOTES)
    status = changes.get("status")
    if status is not None and _check_status(status) != lead.status:
        if lead.status == "converted":
            raise Conflict("A converted lead stays converted.", {"leadId": str(lead.id)})
        if status == "converted":
            raise InvalidInput("A lead becomes converted when it books.")
    for name, value in changes.items():
        if value is not None:
            setattr(lead, name, value)
    db.flush()
    return lead


# --- clients --------------------------------------------------------------------------


def get_client(db: Db, client_id: uuid.UUID, *, org_id: uuid.UUID) -> Client:
    """One of the organisation's clients; another organisation's is NotFound."""
    client = db.get(Client, client_id)
    if client is None or client.org_id != org_id:
        raise NotFound("Client not found.", {"clientId": str(client_id)})
    return client


def list_clients(
    db: Db, *, org_id: uuid.UUID, email: str | None = None, page: int = 1, limit: int = 20
) -> Page[Client]:
    """A page of the organisation's clients by e-mail; ``email`` matches a part of it."""
    stmt = select(Client).where(Client.org_id == org_id).order_by(Client.email, Client.id)
    if email:
        stmt = stmt.where(Client.email.contains(email.strip().lower(), autoescape=True))
    items, total = _page(db, stmt, page, limit)
    return Page(items, total, page, limit)


def create_client(
    db: Db, *, org_id: uuid.UUID, email: str, name: str = "", phone: str | None = None
) -> Client:
    """Add a client by hand; the e-mail must be new to the organisation."""
    values: dict[str, Any] = {"name": name, "phone": phone}
    _text(values, "name", 200)
    _text(values, "phone", 40)
    values["phone"] = values["phone"] or None
    email = normalise_email(email)
    if not insert_if_absent(
        db,
        _CLIENTS,
        {"org_id": org_id, "email": email, "profile": {}, **values},
        ("org_id", "email"),
    ):
        raise Conflict("A client with this e-mail exists.", {"email": email})
    return _client_by_email(db, org_id, email)


def _client_by_email(db: Db, org_id: uuid.UUID, email: str) -> Client:
    stmt = select(Client).where(Client.org_id == org_id, Client.email == email)
    return db.execute(stmt.execution_options(populate_existing=True)).scalar_one()


def convert_lead_on_booking(
    db: Db, org_id: uuid.UUID, email: str, name: str, phone: str | None, now: datetime
) -> Client:
    """The client booking with ``email``, found or created; an open lead with that
    e-mail is converted into it.

    The client's profile gets the lead's source and notes, the lead's id and
    ``auto_converted_via: "public_booking"`` (keys it already has are kept); the lead
    becomes converted and points at the client. Calling it again changes nothing.
    Concurrent calls for one e-mail make one client: the insert yields to the
    unique (org, email) key and the open leads are locked.
    """
    email = normalise_email(email)
    values: dict[str, Any] = {"name": name, "phone": phone}
    _text(values, "name", 200)
    _text(values, "phone", 40)
    leads = list(
        db.execute(
            for_update(
                db,
                select(Lead)
                .where(Lead.org_id == org_id, Lead.email == email, Lead.status != "converted")
                .order_by(Lead.created_at, Lead.id),
            ).execution_options(populate_existing=True)
        ).scalars()
    )
    values["phone"] = values["phone"] or None
    profile: dict[str, Any] = {}
    if leads:
        values["name"] = values["name"] or leads[0].name
        profile = {
            "referral_source": leads[0].source,
            "initial_notes": leads[0].notes,
            "converted_from_lead": str(leads[0].id),
            "auto_converted_via": "public_booking",
        }
    row = {"org_id": org_id, "email": email, "profile": profile, "created_at": now, **values}
    created = insert_if_absent(db, _CLIENTS, row, ("org_id", "email"))
    client = _client_by_email(db, org_id, email)
    if not created:
        missing = {k: v for k, v in profile.items() if k not in client.profile}
        if missing:
            client.profile = {**client.profile, **missing}  # a new dict: JSON is not mutable
        if not client.name and values["name"]:
            client.name = values["name"]
        if client.phone is None and values["phone"]:
            client.phone = values["phone"]
    for lead in leads:
        lead.status = "converted"
        lead.client_id = client.id
        lead.updated_at = now
    db.flush()
    return client
