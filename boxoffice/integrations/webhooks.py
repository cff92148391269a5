"""Outgoing webhooks: POST a body signed per Standard Webhooks (https://www.standardwebhooks.com)."""

from __future__ import annotations

import math
from datetime import UTC

import httpx
from standardwebhooks import Webhook

from boxoffice.services.ports import DeliveryError, WebhookMessage

USER_AGENT = "BoxOffice-Webhooks/1"
_SNIPPET_CHARS = 200
_SNIPPET_BYTES = 1024  # read no more of a failing answer than this


class HttpWebhookSender:
    """Implements ``WebhookSender`` over httpx; redirects are never followed."""

    def __init__(self, timeout_s: float = 10.0, client: httpx.Client | None = None) -> None:
        """``timeout_s`` bounds each phase (connect, each read, each write), not the total."""
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self._timeout)

    def close(self) -> None:
        """Close the HTTP client if this sender created it."""
        if self._owns_client:
            self._client.close()

    def send(self, message: WebhookMessage) -> None:
        """POST the signed body; a non-2xx answer or a network error is DeliveryError."""
        if message.timestamp.tzinfo is None:
            raise ValueError("WebhookMessage.timestamp must be timezone-aware")
        # standardwebhooks' sign() *replaces* tzinfo with UTC rather than converting,
        # so hand it UTC already or a non-UTC offset would be signed as the wrong instant.
        timestamp = message.timestamp.astimezone(UTC)
        # sign() takes str and re-encodes it as UTF-8, which is also how verify() decodes.
        signature = Webhook(message.secret).sign(
            message.msg_id, timestamp, message.body.decode("utf-8")
        )

        headers = httpx.Headers({"content-type": "application/json", "user-agent": USER_AGENT})
        for name, value in message.headers.items():
            headers[name] = value  # case-insensitive replace, so no duplicate headers
        headers["webhook-id"] = message.msg_id
        headers["webhook-timestamp"] = str(math.floor(timestamp.timestamp()))
        headers["webhook-signature"] = signature

        target = _describe(message.url)
        try:
            with self._client.stream(
                "POST",
                message.url,
                content=message.body,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                if response.is_success:
                    return
                status = response.status_code
                snippet = _snippet(response)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            detail = _clip(str(exc)) or "no detail"
            raise DeliveryError(
                f"webhook to {target} failed: {type(exc).__name__}: {detail}"
            ) from exc
        raise DeliveryError(
            f"webhook to {target} answered {status}" + (f": {snippet}" if snippet else "")
        )


def _describe(url: str) -> str:
    """Scheme and host only: the path or query may carry the receiver's own token."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "an invalid URL"
    if not parsed.scheme or not parsed.host:
        return "an invalid URL"
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}"


def _snippet(response: httpx.Response) -> str:
    """The start of a failing answer's body, on one line; what could be read, if reading fails."""
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= _SNIPPET_BYTES:
                break
    except httpx.HTTPError:
        pass
    return _clip(data[:_SNIPPET_BYTES].decode("utf-8", "replace"))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _SNIPPET_CHARS:
        return text[: _SNIPPET_CHARS - 1] + "…"
    return text
