"""Credentials at rest (calendar passwords, webhook secrets), encrypted with the instance secret."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from boxoffice.domain.errors import Conflict


@lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"boxoffice:credentials:v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret_key: str, plaintext: str) -> str:
    return _fernet(secret_key).encrypt(plaintext.encode()).decode()


def decrypt(secret_key: str, token: str) -> str:
    """The plaintext; a Conflict if the instance secret changed since it was stored."""
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise Conflict(
            "A stored credential cannot be read with this instance's secret key; enter it again."
        ) from None
