"""The mailers against the real thing: aiosmtpd on loopback, and a folder of .eml files."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest

from boxoffice.integrations.mail.files import FileMailer
from boxoffice.integrations.mail.messages import render
from boxoffice.integrations.mail.smtp import Security, SmtpMailer
from boxoffice.services.ports import Attachment, DeliveryError, Email
from tests.support.smtp_server import SmtpServer, free_port

SENDER = "Box Office <bookings@example.org>"
USER, PASSWORD = "relay-user", "s3cret pässword"


def booking_email(message_id: str = "outbox-1") -> Email:
    return render(
        {
            "kind": "booking_confirmed",
            "bookingId": "b-1",
            "to": "ann@example.org",
            "customerName": "Ann Lée",
            "orgName": "Acme Studio",
            "orgTimezone": "Europe/Madrid",
            "customerTimezone": None,
            "title": "Yoga <beginners>",
            "startAt": "2030-03-31T08:00:00Z",
            "endAt": "2030-03-31T09:00:00Z",
            "location": "Studio 1",
            "sequence": 0,
            "priceMinor": 2500,
            "currency": "EUR",
            "manageUrl": "/b/b-1",
        },
        message_id=message_id,
        public_url="https://book.example.org",
        organizer_email=SENDER,
        stamp=datetime(2030, 3, 1, tzinfo=UTC),
    )


def mailer_for(
    server: SmtpServer,
    security: Security = "none",
    *,
    user: str | None = None,
    password: str | None = None,
    timeout_s: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> SmtpMailer:
    if ssl_context is None and server.cert_pem is not None:
        ssl_context = server.client_ssl_context()
    return SmtpMailer(
        server.host,
        server.port,
        security,
        user,
        password,
        timeout_s,
        SENDER,
        ssl_context=ssl_context,
    )


def assert_is_the_booking_mail(message: EmailMessage) -> None:
    assert message["Subject"] == "Booking confirmed: Yoga <beginners>, Sun 31 Mar 10:00"
    assert message["To"] == "ann@example.org"
    assert message["From"] == SENDER
    assert message["Message-ID"] == "<outbox-1@boxoffice>"
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Hello Ann Lée," in text.get_content()
    assert "Yoga &lt;beginners&gt;" in html.get_content()
    [invite] = list(message.iter_attachments())
    assert invite.get_filename() == "invite.ics"
    assert invite.get_content_type() == "text/calendar"
    assert invite.get_param("method") == "REQUEST"
    calendar = icalendar.Calendar.from_ical(invite.get_content())
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar.walk("VEVENT")[0]["UID"]) == "booking-b-1@boxoffice"


# --- SMTP ---------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def starttls_server() -> Iterator[SmtpServer]:
    with SmtpServer(starttls=True, auth=(USER, PASSWORD)) as server:
        yield server


def test_smtp_plain_delivers(smtp_server: SmtpServer) -> None:
    mailer_for(smtp_server).send(booking_email())
    [received] = smtp_server.received
    assert received.mail_from == "bookings@example.org"
    assert received.rcpt_tos == ("ann@example.org",)
    assert not received.is_tls
    assert_is_the_booking_mail(received.message)


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("relay-user", "plain ascii"),
        # smtplib cannot send these itself (it encodes credentials as ASCII).
        ("rélay", "s3cret pässword"),
    ],
)
def test_smtp_starttls_with_auth_delivers(user: str, password: str) -> None:
    with SmtpServer(starttls=True, auth=(user, password)) as server:
        mailer_for(server, "starttls", user=user, password=password).send(booking_email())
        [received] = server.received
        assert received.is_tls
        assert received.login == user
        assert_is_the_booking_mail(received.message)


def test_smtp_implicit_tls_delivers() -> None:
    with SmtpServer(implicit_tls=True) as server:
        mailer_for(server, "ssl").send(booking_email())
        [received] = server.received
        assert received.is_tls
        assert_is_the_booking_mail(received.message)


def test_smtp_wrong_password_is_delivery_error(starttls_server: SmtpServer) -> None:
    mailer = mailer_for(starttls_server, "starttls", user=USER, password="wrong")
    with pytest.raises(DeliveryError, match="535"):
        mailer.send(booking_email())
    assert starttls_server.received == []


def test_smtp_without_auth_is_refused_by_a_relay_that_requires_it(
    starttls_server: SmtpServer,
) -> None:
    with pytest.raises(DeliveryError, match="530"):
        mailer_for(starttls_server, "starttls").send(booking_email())


def test_smtp_untrusted_certificate_is_delivery_error(starttls_server: SmtpServer) -> None:
    mailer = mailer_for(
        starttls_server, "starttls", user=USER, password=PASSWORD,
        ssl_context=ssl.create_default_context(),
    )  # fmt: skip
    with pytest.raises(DeliveryError, match="TLS"):
        mailer.send(booking_email())
    assert starttls_server.received == []


def test_smtp_starttls_not_offered_is_delivery_error(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="STARTTLS"):
        mailer_for(smtp_server, "starttls", ssl_context=ssl.create_default_context()).send(
            booking_email()
        )


def test_smtp_server_down_then_back(smtp_server: SmtpServer) -> None:
    mailer = mailer_for(smtp_server)
    smtp_server.stop()
    with pytest.raises(DeliveryError, match="Cannot reach"):
        mailer.send(booking_email())
    smtp_server.start()  # same port: the retry goes through
    mailer.send(booking_email())
    assert len(smtp_server.messages) == 1


def test_smtp_nothing_listening_is_delivery_error() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), "none", None, None, 2.0, SENDER)
    with pytest.raises(DeliveryError):
        mailer.send(booking_email())


def test_smtp_transient_refusal_is_delivery_error(smtp_server: SmtpServer) -> None:
    smtp_server.reply = "451 4.3.0 Try again later"
    with pytest.raises(DeliveryError, match=r"451 4\.3\.0 Try again later"):
        mailer_for(smtp_server).send(booking_email())
    smtp_server.reply = None
    mailer_for(smtp_server).send(booking_email())
    assert len(smtp_server.messages) == 1


def test_smtp_permanent_refusal_is_delivery_error(smtp_server: SmtpServer) -> None:
    smtp_server.reply = "554 5.7.1 Rejected"
    with pytest.raises(DeliveryError, match="554"):
        mailer_for(smtp_server).send(booking_email())


def test_smtp_silent_server_times_out() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        mailer = SmtpMailer("127.0.0.1", port, "none", None, None, 0.3, SENDER)
        with pytest.raises(DeliveryError, match="timed out"):
            mailer.send(booking_email())


def test_smtp_header_injection_in_subject_is_flattened(smtp_server: SmtpServer) -> None:
    email_ = Email(
        to="ann@example.org",
        subject="Hi\r\nBcc: eve@example.org",
        text="t",
        html="<p>t</p>",
        message_id="outbox-9",
    )
    mailer_for(smtp_server).send(email_)
    [received] = smtp_server.received
    assert received.rcpt_tos == ("ann@example.org",)
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "Hi Bcc: eve@example.org"


# --- files --------------------------------------------------------------------------------


def test_file_mailer_writes_a_parseable_eml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mail"  # created on first send
    mailer = FileMailer(folder, SENDER)
    with caplog.at_level(logging.INFO, logger="boxoffice.mail"):
        mailer.send(booking_email())
    [path] = folder.iterdir()
    assert path.suffix == ".eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert_is_the_booking_mail(message)
    [record] = [r for r in caplog.records if r.name == "boxoffice.mail"]
    assert "ann@example.org" in record.getMessage()
    assert "Booking confirmed: Yoga <beginners>" in record.getMessage()


def test_file_mailer_is_idempotent_per_message_id(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, SENDER)
    mailer.send(booking_email("outbox-1"))
    mailer.send(booking_email("outbox-1"))
    assert len(list(tmp_path.iterdir())) == 1  # and no temporary files left behind
    mailer.send(booking_email("outbox-2"))
    assert len(list(tmp_path.iterdir())) == 2


def test_file_mailer_names_are_safe(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, SENDER)
    for message_id in ("<../../etc/passwd@x>", "a/b@x", "a_b@x"):
        mailer.send(
            Email(to="a@example.org", subject="s", text="t", html="h", message_id=message_id)
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_file_mailer_unwritable_folder_is_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DeliveryError):
        FileMailer(blocker, SENDER).send(booking_email())


def test_attachment_content_type_is_kept(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path, SENDER)
    email_ = Email(
        to="a@example.org",
        subject="s",
        text="t",
        html="h",
        message_id="m-1",
        attachments=(
            Attachment("invite.ics", 'text/calendar; method=CANCEL; charset="utf-8"', b"X"),
            Attachment("ticket.pdf", "application/pdf", b"%PDF-1.4"),
        ),
    )
    mailer.send(email_)
    [path] = tmp_path.iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    ics, pdf = message.iter_attachments()
    assert ics.get_content_type() == "text/calendar"
    assert ics.get_param("method") == "CANCEL"
    assert ics.get_content_charset() == "utf-8"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_payload(decode=True) == b"%PDF-1.4"
