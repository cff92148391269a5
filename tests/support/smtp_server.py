"""A real SMTP server for tests: aiosmtpd on loopback, in a thread.

    with SmtpServer(starttls=True, auth=("user", "secret")) as server:
        mailer = SmtpMailer(server.host, server.port, "starttls", "user", "secret", 5,
                            "Box Office <b@example.org>", ssl_context=server.client_ssl_context())
        ...
        server.messages  # parsed EmailMessage objects, in arrival order

``stop()`` and ``start()`` again keep the port, so fault tests can take the relay away
and bring it back. ``reply`` makes DATA answer with that line instead of 250.
``delay_s`` makes DATA wait that long before it keeps the message and answers 250
(a slow relay); a client that disconnects meanwhile leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    is_tls: bool
    login: str | None  # the AUTH user, None when the client did not authenticate


def free_port(host: str = HOST) -> int:
    """A port free right now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def self_signed_certificate(host: str = HOST) -> tuple[bytes, bytes]:
    """A fresh (certificate PEM, private key PEM) for ``host`` (IP SAN) and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Box Office test SMTP")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._server.delay_s > 0:
            # aiosmtpd cancels this coroutine when the client goes away.
            await asyncio.sleep(self._server.delay_s)
        reply = self._server.reply
        if reply is not None:
            return reply
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self._server._record(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                # session.ssl is only set after STARTTLS, not for implicit TLS.
                is_tls=server.transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1: plain, STARTTLS (``starttls``) or implicit TLS (``implicit_tls``).

    With ``auth=(user, password)`` it offers AUTH PLAIN/LOGIN, which aiosmtpd only
    allows after STARTTLS (``auth_require_tls``); AUTH is then required to send.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        reply: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("Choose STARTTLS or implicit TLS, not both.")
        self.host = HOST
        self.port = port or free_port()
        self.auth = auth
        self.reply = reply
        self.delay_s = delay_s
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.cert_pem: bytes | None = None
        self._server_tls: ssl.SSLContext | None = None
        if starttls or implicit_tls:
            self.cert_pem, key_pem = self_signed_certificate(self.host)
            self._server_tls = _server_context(self.cert_pem, key_pem)
        self._starttls = starttls

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> SmtpServer:
        if self._controller is not None:
            raise RuntimeError("SMTP server already running")
        kwargs: dict[str, Any] = {}
        if self._starttls:
            kwargs["tls_context"] = self._server_tls
        elif self._server_tls is not None:
            kwargs["ssl_context"] = self._server_tls
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            # Without it aiosmtpd calls socket.getfqdn(), a DNS lookup per start.
            server_hostname="localhost",
            ready_timeout=10,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what arrived -----------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate (only)."""
        if self.cert_pem is None:
            raise RuntimeError("This server has no TLS.")
        return ssl.create_default_context(cadata=self.cert_pem.decode())

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self.auth
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files; they are not needed once loaded.
    with tempfile.TemporaryDirectory(prefix="boxoffice-smtp-") as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context
