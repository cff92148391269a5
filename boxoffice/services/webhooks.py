"""Webhook subscriptions: where an organisation wants its booking events POSTed."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select

from boxoffice.db.models import WebhookSubscription
from boxoffice.db.session import Db
from boxoffice.domain.errors import InvalidInput, NotFound
from boxoffice.services import crypto
from boxoffice.services.booking_events import WEBHOOK_EVENTS
from boxoffice.services.calendars import check_http_url
from boxoffice.services.ports import WebhookMessage

MAX_SUBSCRIPTIONS = 50


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_subscription(
    db: Db,
    *,
    org_id: uuid.UUID,
    url: str,
    event_types: list[str],
    description: str,
    secret_key: str,
) -> tuple[WebhookSubscription, str]:
    """Register an endpoint; returns it and its signing secret, shown this once."""
    unknown = sorted(set(event_types) - set(WEBHOOK_EVENTS))
    if not event_types or unknown:
        raise InvalidInput(
            f"eventTypes must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}.",
            {"unknown": unknown},
        )
    count = len(list_subscriptions(db, org_id=org_id))
    if count >= MAX_SUBSCRIPTIONS:
        raise InvalidInput(f"At most {MAX_SUBSCRIPTIONS} webhook subscriptions per organisation.")
    secret = new_secret()
    subscription = WebhookSubscription(
        org_id=org_id,
        url=check_http_url(url),
        description=description,
        event_types=sorted(set(event_types)),
        secret_encrypted=crypto.encrypt(secret_key, secret),
    )
    db.add(subscription)
    db.flush()
    return subscription, secret


def list_subscriptions(db: Db, *, org_id: uuid.UUID) -> list[WebhookSubscription]:
    stmt = (
        select(WebhookSubscription)
        .where(WebhookSubscription.org_id == org_id)
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return list(db.execute(stmt).scalars())


def delete_subscription(db: Db, subscription_id: uuid.UUID, *, org_id: uuid.UUID) -> None:
    """Remove an endpoint; deliveries still queued for it are dropped when their turn comes."""
    subscription = db.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.org_id != org_id:
        raise NotFound("Webhook subscription not found.", {"subscriptionId": str(subscription_id)})
    db.delete(subscription)
    db.flush()


def webhook_message(
    db: Db, payload: dict[str, Any], *, secret_key: str, now: datetime
) -> WebhookMessage | None:
    """The signed-to-be message for a queued webhook row; None if its endpoint is gone."""
    subscription = db.get(WebhookSubscription, uuid.UUID(payload["subscriptionId"]))
    if subscription is None or not subscription.is_active:
        return None
    return WebhookMessage(
        url=subscription.url,
        secret=crypto.decrypt(secret_key, subscription.secret_encrypted),
        msg_id=payload["msgId"],
        timestamp=now,  # a retry is signed afresh: receivers refuse stale timestamps
        body=json.dumps(payload["body"], separators=(",", ":")).encode(),
    )
