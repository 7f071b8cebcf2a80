"""Secrets at rest: job ``env_vars`` values are Fernet tokens in the database.

A ``SecretBox`` holds one or more Fernet keys (``ML_PLATFORM_SECRETS_KEY``: comma-separated,
newest first). It encrypts with the newest and decrypts with any (``MultiFernet``), so a key
is rotated by putting the new one in front, restarting, optionally re-encrypting the rows
(``rotate``), then dropping the old key. Names stay in clear (they are not secret and the
API may show them); each value is stored as ``fernet:<token>``, so a row written before
encryption existed (a plain value) still reads as written.

The box travels with the ``Database`` (``db.secrets``) into every session's ``info``, so a
repository encrypts on write and decrypts only when asked for the values, i.e. only when the
scheduler builds the launch for the executor. In production mode a missing key refuses to
start (``Settings``); in development a key is generated once into
``<data_dir>/secrets.key`` (mode 0600).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "fernet:"  # noqa: S105 (a marker, not a secret)
DEV_KEY_FILE = "secrets.key"


class SecretsKeyError(RuntimeError):
    """The configured keys cannot decrypt a stored secret, or none is configured."""


def split_keys(value: str) -> list[str]:
    """``"new,old"`` -> ``["new", "old"]`` (blank entries dropped)."""
    return [key.strip() for key in value.split(",") if key.strip()]


def check_keys(keys: Sequence[str]) -> None:
    """``ValueError`` (without the key's text) unless every key is a Fernet key."""
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(
                f"ML_PLATFORM_SECRETS_KEY entry {position} is not a Fernet key (32 url-safe "
                'base64-encoded bytes; make one with `python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"`)'
            ) from None


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        check_keys(keys)
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, value: str) -> str:
        return TOKEN_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(TOKEN_PREFIX):
            return stored  # written before values were encrypted
        try:
            return self._fernet.decrypt(stored[len(TOKEN_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsKeyError(
                "a stored secret was encrypted with a key that is not in "
                "ML_PLATFORM_SECRETS_KEY (keep the old key after the new one until rotated)"
            ) from None

    def rotate(self, stored: str) -> str:
        """The value re-encrypted with the newest key (plain legacy values get encrypted)."""
        if not stored.startswith(TOKEN_PREFIX):
            return self.encrypt(stored)
        token = self._fernet.rotate(stored[len(TOKEN_PREFIX) :].encode())
        return TOKEN_PREFIX + token.decode()

    def encrypt_values(self, values: Mapping[str, str]) -> dict[str, str]:
        return {name: self.encrypt(value) for name, value in values.items()}

    def decrypt_values(self, stored: Mapping[str, str]) -> dict[str, str]:
        return {name: self.decrypt(value) for name, value in stored.items()}


def load_secret_box(keys: Sequence[str], *, production: bool, data_dir: Path) -> SecretBox:
    """The configured keys; without any, production refuses and development uses (or makes)
    ``<data_dir>/secrets.key``, created exclusively with mode 0600."""
    if keys:
        return SecretBox(keys)
    if production:
        raise SecretsKeyError("ML_PLATFORM_SECRETS_KEY must be set in production mode")
    path = Path(data_dir) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # written whole under a private name, then linked into place: a concurrent first
        # start either wins or reads the winner's complete key
        tmp = path.with_name(f".{DEV_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(SecretBox.generate_key() + "\n")
        try:
            os.link(tmp, path)
            logger.warning(
                "generated a development secrets key at %s; set ML_PLATFORM_SECRETS_KEY in "
                "production (and the same key on every replica sharing a database)",
                path,
            )
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return SecretBox(split_keys(path.read_text()))


def session_box(session: Session) -> SecretBox:
    """The box the session's ``Database`` carries; refusing beats storing plain text."""
    box = session.info.get("secrets")
    if not isinstance(box, SecretBox):
        raise SecretsKeyError(
            "this Database has no secrets key (set db.secrets, as build_context does)"
        )
    return box
