"""Choose the adapters from the settings, once, at start-up."""

from __future__ import annotations

from boxoffice.db.session import Database
from boxoffice.integrations.calendar.caldav import CalDavCalendar
from boxoffice.integrations.mail.files import FileMailer
from boxoffice.integrations.mail.smtp import SmtpMailer
from boxoffice.integrations.payments.offline import OfflineGateway
from boxoffice.integrations.payments.stripe import StripeGateway
from boxoffice.integrations.webhooks import HttpWebhookSender
from boxoffice.services.ports import Adapters, Mailer, PaymentGateway
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


def build_payment_gateway(settings: Settings, database: Database) -> PaymentGateway:
    """Stripe when a secret key is set (or asked for), else the offline gateway."""
    if settings.resolved_payment_gateway == "stripe":
        if not settings.stripe_secret_key:
            raise ValueError("The stripe gateway needs BOXOFFICE_STRIPE_SECRET_KEY.")
        return StripeGateway(
            settings.stripe_secret_key,
            api_base=settings.stripe_api_base,
            timeout_s=settings.http_timeout_s,
        )
    return OfflineGateway(database, settings.public_url)


def build_adapters(settings: Settings, database: Database) -> Adapters:
    return Adapters(
        mailer=build_mailer(settings),
        calendar=CalDavCalendar(timeout_s=settings.http_timeout_s),
        webhooks=HttpWebhookSender(timeout_s=settings.http_timeout_s),
        payments=build_payment_gateway(settings, database),
    )
