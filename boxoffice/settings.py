"""Settings from the environment; every setting has a working default.

With no settings at all Box Office runs embedded: SQLite in the data directory,
a secret key generated there on first run.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BOXOFFICE_", extra="ignore", validate_by_name=True
    )

    data_dir: Path = Path(".boxoffice")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "BOXOFFICE_DATABASE_URL")
    )
    secret_key: str | None = None
    token_ttl_s: int = 24 * 3600
    db_pool_size: int = 16  # also the number of request threads per process
    sqlite_busy_timeout_ms: int = 5000
    public_url: str = "http://127.0.0.1:8000"  # links in emails and calendar events

    # Mail: "file" writes .eml files into mail_dir (default <data_dir>/mail); "smtp" relays.
    mail_backend: Literal["file", "smtp"] = "file"
    mail_dir: Path | None = None
    mail_from: str = "Box Office <bookings@boxoffice.invalid>"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = 10.0

    # Outbox worker; `serve` and `demo` run one in-process unless --no-worker
    run_worker: bool = False
    worker_batch: int = 50
    worker_max_attempts: int = 10  # then the delivery is dead (visible, retryable)
    worker_lease_s: int = 120  # a claimed row not finished by then is due again
    worker_poll_s: float = 1.0
    worker_backoff_base_s: float = 10.0
    worker_backoff_max_s: float = 3600.0
    reminder_lead_h: int = 24
    calendar_sync_days: int = 30
    calendar_sync_interval_s: int = 300
    http_timeout_s: float = 10.0  # outgoing webhooks and CalDAV

    # Payments: Stripe when a secret key is set, else the offline gateway (a local
    # checkout page and `boxoffice payments succeed|fail ORDER`).
    payment_gateway: Literal["auto", "stripe", "offline"] = "auto"
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None  # e.g. a local stub server in tests
    # Ask the gateway about payments pending longer than this (a lost webhook).
    payment_reconcile_after_min: int = 10
    payment_reconcile_interval_s: int = 60

    # LiveKit video rooms: the API key and secret that sign its webhooks (attendance).
    # Unset: the attendance webhook answers 404.
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = None

    @property
    def resolved_payment_gateway(self) -> Literal["stripe", "offline"]:
        if self.payment_gateway == "auto":
            return "stripe" if self.stripe_secret_key else "offline"
        return self.payment_gateway

    @property
    def resolved_mail_dir(self) -> Path:
        return self.mail_dir if self.mail_dir is not None else self.data_dir / "mail"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL; SQLite in the data directory unless one is given."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'boxoffice.db').resolve()}"

    def resolved_secret_key(self) -> str:
        """The instance secret: from the environment, else kept in the data directory.

        Generated on first run with 256 bits of randomness, written with mode 0600.
        """
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            candidate = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            candidate.write_text(secrets.token_urlsafe(32))
            candidate.chmod(0o600)
            try:
                # link() fails if another process won the race, so all share one key.
                path.hardlink_to(candidate)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
