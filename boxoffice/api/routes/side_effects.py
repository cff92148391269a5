"""What bookings set in motion: outbox deliveries, webhook subscriptions, calendars."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status

from boxoffice.api.deps import AppSettings, CurrentCaller, Db, Now, SecretKey
from boxoffice.api.routes.bookings import Limit, Page
from boxoffice.api.schemas import (
    CalendarConnectionIn,
    CalendarConnectionOut,
    DeliveryOut,
    DeliveryPageOut,
    DeliveryStateName,
    FeedOut,
    TopicName,
    WebhookCreatedOut,
    WebhookIn,
    WebhookOut,
    error_responses,
)
from boxoffice.integrations.calendar import ics
from boxoffice.services import auth, calendars, outbox, webhooks
from boxoffice.services.outbox import DeliveryState, Topic

FeedKind = Literal["rooms", "providers"]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=error_responses(401, 403, 404, 409)
)
feeds = APIRouter(prefix="/api/v1/calendar", tags=["calendar"], responses=error_responses(401))


@router.get("/deliveries", response_model=DeliveryPageOut)
def list_deliveries(
    caller: CurrentCaller,
    db: Db,
    state: DeliveryStateName | None = None,
    topic: TopicName | None = None,
    page: Page = 1,
    limit: Limit = 20,
) -> DeliveryPageOut:
    """The organisation's outbox: emails, calendar writes and webhooks, newest first."""
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        result = outbox.list_deliveries(
            s,
            org_id=org.org_id,
            state=DeliveryState(state) if state else None,
            topic=Topic(topic) if topic else None,
            page=page,
            limit=limit,
        )
        return DeliveryPageOut(
            items=[DeliveryOut.of(r) for r in result.items],
            total=result.total,
            page=result.page,
            limit=result.limit,
        )


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(delivery_id: DeliveryId, caller: CurrentCaller, db: Db, now: Now) -> DeliveryOut:
    """Give a dead delivery a fresh set of attempts, starting now."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        return DeliveryOut.of(outbox.retry(s, delivery_id, org_id=org.org_id, now=now))


@router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(caller: CurrentCaller, db: Db) -> list[WebhookOut]:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        return [WebhookOut.of(w) for w in webhooks.list_subscriptions(s, org_id=org.org_id)]


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreatedOut)
def create_webhook(
    body: WebhookIn, caller: CurrentCaller, db: Db, secret_key: SecretKey
) -> WebhookCreatedOut:
    """Register an endpoint for booking events; the answer carries its signing secret once."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        sub, secret = webhooks.create_subscription(
            s,
            org_id=org.org_id,
            url=body.url,
            event_types=list(body.event_types),
            description=body.description,
            secret_key=secret_key,
        )
        return WebhookCreatedOut(**WebhookOut.of(sub).model_dump(), secret=secret)


@router.delete("/webhooks/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(subscription_id: uuid.UUID, caller: CurrentCaller, db: Db) -> Response:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        webhooks.delete_subscription(s, subscription_id, org_id=org.org_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/calendar-connections", response_model=list[CalendarConnectionOut])
def list_calendar_connections(caller: CurrentCaller, db: Db) -> list[CalendarConnectionOut]:
    with db.read() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        return [
            CalendarConnectionOut.of(c) for c in calendars.list_connections(s, org_id=org.org_id)
        ]


@router.post(
    "/calendar-connections",
    status_code=status.HTTP_201_CREATED,
    response_model=CalendarConnectionOut,
)
def create_calendar_connection(
    body: CalendarConnectionIn, caller: CurrentCaller, db: Db, secret_key: SecretKey
) -> CalendarConnectionOut:
    """Connect a room's (or provider's) CalDAV calendar: bookings are written into it and
    its busy times are read back. The password is stored encrypted."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        connection = calendars.create_connection(
            s,
            org_id=org.org_id,
            room_id=body.room_id,
            provider_id=body.provider_id,
            url=body.url,
            username=body.username,
            password=body.password,
            secret_key=secret_key,
        )
        return CalendarConnectionOut.of(connection)


@router.delete("/calendar-connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_calendar_connection(connection_id: uuid.UUID, caller: CurrentCaller, db: Db) -> Response:
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        calendars.delete_connection(s, connection_id, org_id=org.org_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{kind}/{owner_id}/calendar-feed", response_model=FeedOut)
def calendar_feed(
    kind: FeedKind,
    owner_id: uuid.UUID,
    caller: CurrentCaller,
    db: Db,
    settings: AppSettings,
    rotate: Annotated[
        bool, Query(description="Make a new link; the old one stops working")
    ] = False,
) -> FeedOut:
    """The secret ICS subscription link of a room's or a provider's bookings."""
    with db.write() as s:
        org = auth.admin_org(s, caller.user_id, org_slug=caller.org_slug)
        token = calendars.feed_token(s, kind, owner_id, org_id=org.org_id, rotate=rotate)
    base = settings.public_url.rstrip("/")
    return FeedOut(url=f"{base}/api/v1/calendar/{kind}/{owner_id}.ics?token={token}")


@feeds.get(
    "/{kind}/{owner_id}.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def calendar_feed_ics(
    kind: FeedKind,
    owner_id: uuid.UUID,
    db: Db,
    now: Now,
    token: Annotated[str, Query(min_length=1, max_length=200)],
) -> Response:
    """Confirmed bookings as an iCalendar feed (no sign-in: the token is the key)."""
    with db.read() as s:
        feed = calendars.feed(s, kind, owner_id, token, now=now)
    body = ics.feed(feed.name, feed.events, stamp=now)
    return Response(body, media_type="text/calendar; charset=utf-8")
