"""One RFC 5322 message from an :class:`~boxoffice.services.ports.Email`, for every mailer."""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, datetime
from email.headerregistry import ContentTypeHeader
from email.message import EmailMessage
from email.utils import format_datetime

from boxoffice.services.ports import Email

_WHITESPACE = re.compile(r"\s+")


def build_message(email_: Email, sender: str, *, date: datetime | None = None) -> EmailMessage:
    """multipart/alternative (text, HTML), inside multipart/mixed when there are attachments.

    ``sender`` is used unless the email names its own; ``date`` defaults to now.
    """
    message = EmailMessage(policy=email.policy.default)
    message["From"] = email_.sender or sender
    message["To"] = email_.to
    # A header may not contain line breaks; a title typed with one must not break the mail.
    message["Subject"] = _WHITESPACE.sub(" ", email_.subject).strip()
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id_header(email_.message_id)
    message.set_content(email_.text)
    message.add_alternative(email_.html, subtype="html")
    for attachment in email_.attachments:
        content_type = _content_type(attachment.content_type)
        params = {k: v for k, v in content_type.params.items() if k != "name"}
        message.add_attachment(
            attachment.data,
            maintype=content_type.maintype,
            subtype=content_type.subtype,
            filename=attachment.filename,
            params=params,
        )
    # Parts made by add_alternative/add_attachment carry their own MIME-Version; only
    # the top level should.
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]
    return message


def message_id_header(message_id: str) -> str:
    """``message_id`` as a Message-ID header value, ``<local@domain>``."""
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    if not bare or _WHITESPACE.search(bare) or "<" in bare or ">" in bare:
        raise ValueError(f"Unusable message id {message_id!r}.")
    if "@" not in bare:
        bare = f"{bare}@boxoffice"
    return f"<{bare}>"


def _content_type(value: str) -> ContentTypeHeader:
    header = email.policy.default.header_factory("Content-Type", value)
    # A value that does not parse falls back to text/plain rather than failing.
    declared = value.split(";", 1)[0].strip().lower()
    if not isinstance(header, ContentTypeHeader) or header.content_type != declared:
        raise ValueError(f"Bad attachment content type {value!r}.")
    return header
