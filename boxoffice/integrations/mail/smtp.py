"""A mailer that relays through an SMTP server (STARTTLS, implicit TLS or plain)."""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal

from boxoffice.integrations.mail.mime import build_message
from boxoffice.services.ports import DeliveryError, Email

Security = Literal["starttls", "ssl", "none"]


class SmtpMailer:
    """One connection per message; every failure the relay or network can cause is
    a :class:`DeliveryError`, so the outbox retries it.

    ``ssl_context`` defaults to the system's trust store; tests pass one that trusts
    their self-signed certificate.
    """

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        user: str | None,
        password: str | None,
        timeout_s: float,
        sender: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"Unknown SMTP security {security!r}.")
        self.host = host
        self.port = port
        self.security = security
        self.user = user
        self.password = password
        self.timeout_s = timeout_s
        self.sender = sender
        self.ssl_context = ssl_context

    def send(self, email: Email) -> None:
        message = build_message(email, self.sender)
        envelope_from = parseaddr(email.sender or self.sender)[1]
        where = f"{self.host}:{self.port}"
        try:
            self._deliver(message, envelope_from, email.to)
        except smtplib.SMTPRecipientsRefused as exc:
            answers = "; ".join(_answer(code, text) for code, text in exc.recipients.values())
            raise DeliveryError(f"SMTP {where} refused the recipient: {answers}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP {where}: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {where} answered {_answer(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPException as exc:  # disconnected, sender refused, ...
            raise DeliveryError(f"SMTP {where}: {exc}") from exc
        except ssl.SSLError as exc:  # before OSError: it is one
            detail = getattr(exc, "verify_message", None) or exc.reason or exc
            raise DeliveryError(f"TLS with {where} failed: {detail}") from exc
        except TimeoutError as exc:
            raise DeliveryError(f"SMTP {where} timed out after {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise DeliveryError(f"Cannot reach SMTP {where}: {exc.strerror or exc}") from exc

    def _deliver(self, message: EmailMessage, envelope_from: str, to: str) -> None:
        smtp = self._connect()
        try:
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.user:
                _login(smtp, self.user, self.password or "")
            smtp.send_message(message, from_addr=envelope_from, to_addrs=[to])
        finally:
            # Not `with smtp:`: a failed QUIT after an accepted message must not report
            # a failure (the retry would send it twice), nor hide the original error.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=self._context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    if user.isascii() and password.isascii():
        smtp.login(user, password)
        return
    # smtplib encodes credentials as ASCII (UnicodeEncodeError otherwise); AUTH PLAIN
    # carries UTF-8 (RFC 4616), so send that one by hand.
    smtp.ehlo_or_helo_if_needed()
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPNotSupportedError(
            "SMTP server offers no AUTH PLAIN for UTF-8 credentials."
        )
    blob = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, answer = smtp.docmd("AUTH", f"PLAIN {blob}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()
