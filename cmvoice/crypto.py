"""FieldCipher: personal data and OTP codes encrypted before Redis stores them (Fernet).

Redis keeps what it is given on disk (the append-only file holds every write until a rewrite),
so what must not be kept must not be written in plain text. With ``CMVOICE_ENCRYPTION_KEY``
set, the ledger writes the OTP code, the payload (numbers, prompts) and campaign templates as
Fernet tokens. Several comma-separated keys rotate as ``MultiFernet`` does: the first encrypts,
every one decrypts, so old records stay readable while new ones use the new key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cmvoice.errors import ConfigurationError

#: Marks a stored value as a Fernet token (plain JSON starts with ``{``, a code with a digit).
ENCRYPTED_PREFIX = "fernet:"


class FieldCipher:
    """Encrypts and decrypts single field values; ``None`` keys mean plain text (no key set)."""

    def __init__(self, keys: list[str] | None) -> None:
        self._fernet: MultiFernet | None = None
        if keys:
            try:
                self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
            except ValueError:
                raise ConfigurationError(
                    "CMVOICE_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes, "
                    "as `cmvoice keygen` or Fernet.generate_key() makes (value hidden)"
                ) from None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str) -> str:
        """The value as stored: a Fernet token when a key is set, else unchanged."""
        if self._fernet is None:
            return value
        return ENCRYPTED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: str) -> str:
        """The value back; plain values pass through (written before a key was set)."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        if self._fernet is None:
            raise ConfigurationError(
                "the ledger holds encrypted fields but CMVOICE_ENCRYPTION_KEY is not set"
            )
        try:
            return self._fernet.decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "CMVOICE_ENCRYPTION_KEY: no configured key decrypts a stored field (was the key "
                "that wrote it removed from the list?)"
            ) from None


def generate_key() -> str:
    """A new random key for ``CMVOICE_ENCRYPTION_KEY``."""
    return Fernet.generate_key().decode()


def kept_key(path: Path) -> str:
    """The key kept in ``path`` (readable by its owner only), made on first use: what
    ``cmvoice dev`` encrypts with, so the data of its embedded Redis stays readable across
    restarts."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    # Created with owner-only permissions from the start, never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key
