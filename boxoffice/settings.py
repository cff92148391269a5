"""Settings from the environment; every setting has a working default.

With no settings at all Box Office runs embedded: SQLite in the data directory,
a secret key generated there on first run.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOXOFFICE_", extra="ignore")

    data_dir: Path = Path(".boxoffice")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "BOXOFFICE_DATABASE_URL")
    )
    secret_key: str | None = None
    token_ttl_s: int = 24 * 3600
    db_pool_size: int = 16  # also the number of request threads per process
    sqlite_busy_timeout_ms: int = 5000

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
