"""A mailer that writes each message as an .eml file: the embedded default, and handy in dev."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path

from boxoffice.integrations.mail.mime import build_message
from boxoffice.services.ports import DeliveryError, Email

log = logging.getLogger("boxoffice.mail")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileMailer:
    """Writes ``<folder>/<message id>.eml``; sending the same message again rewrites that file."""

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def path_for(self, message_id: str) -> Path:
        """The file a message with this id is written to."""
        return self.folder / eml_name(message_id)

    def send(self, email: Email) -> None:
        message = build_message(email, self.sender)
        path = self.path_for(email.message_id)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as file:
                file.write(message.as_bytes())
                file.flush()
                os.fsync(file.fileno())
            # Atomic: a reader sees the old file or the whole new one, never half of one.
            os.replace(temporary, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise DeliveryError(f"Cannot write {path}: {exc.strerror or exc}") from exc
        log.info("mail to %s: %s (%s)", email.to, message["Subject"], path.name)


def eml_name(message_id: str) -> str:
    """A safe, stable file name for ``message_id``.

    The readable part is sanitised; the hash keeps two ids that sanitise alike apart.
    """
    bare = message_id.strip().strip("<>")
    readable = _UNSAFE.sub("_", bare).strip("._")[:80] or "message"
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:12]
    return f"{readable}-{digest}.eml"
