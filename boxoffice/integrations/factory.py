"""Choose the adapters from the settings, once, at start-up."""

from __future__ import annotations

from boxoffice.integrations.calendar.caldav import CalDavCalendar
from boxoffice.integrations.mail.files import FileMailer
from boxoffice.integrations.mail.smtp import SmtpMailer
from boxoffice.integrations.webhooks import HttpWebhookSender
from boxoffice.services.ports import Adapters, Mailer
from boxoffice.settings import Settings


def build_mailer(settings: Settings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_user,
            settings.smtp_password,
            settings.smtp_timeout_s,
            settings.mail_from,
        )
    return FileMailer(settings.resolved_mail_dir, settings.mail_from)


def build_adapters(settings: Settings) -> Adapters:
    return Adapters(
        mailer=build_mailer(settings),
        calendar=CalDavCalendar(timeout_s=settings.http_timeout_s),
        webhooks=HttpWebhookSender(timeout_s=settings.http_timeout_s),
    )
