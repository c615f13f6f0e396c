"""Job secrets encrypted at rest with Fernet; the key never sits in the database.

cryptography (about 7 MB) is imported on the first seal or open, not when a box is made: every
server makes boxes at start and most never use them while idle. The key is checked at once,
by the rule Fernet applies (32 bytes in URL-safe base64), so a bad key still stops a start.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbplane.errors import ConfigError
from nbplane.settings import Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

FERNET_KEY_BYTES = 32


class SecretBox:
    """Encrypts a job's secrets as one JSON document."""

    def __init__(self, settings: Settings) -> None:
        key = settings.secret_key.encode() if settings.secret_key else _key_file(settings.home)
        problem = _fernet_key_problem(key)
        if problem:
            raise ConfigError(
                f"NBPLANE_SECRET_KEY is not a Fernet key: {problem}", field="NBPLANE_SECRET_KEY"
            )
        self.key = key
        """The Fernet key, handed to a deployed job's execution wherever it runs."""

    @cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet

        return Fernet(self.key)

    def seal(self, secrets: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(secrets).encode())

    def open(self, blob: bytes) -> dict[str, Any]:
        from cryptography.fernet import InvalidToken

        try:
            return dict(json.loads(self._fernet.decrypt(blob)))
        except InvalidToken as exc:
            raise ConfigError(
                "job secrets were encrypted with another key than this one "
                "(NBPLANE_SECRET_KEY or NBPLANE_HOME/secret.key)",
                field="NBPLANE_SECRET_KEY",
            ) from exc


def _fernet_key_problem(key: bytes) -> str | None:
    """Why Fernet would refuse ``key``, in its words, or None."""
    try:
        decoded = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != FERNET_KEY_BYTES:
        return f"Fernet key must be {FERNET_KEY_BYTES} url-safe base64-encoded bytes."
    return None


def _key_file(home: Path) -> bytes:
    path = home / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(FERNET_KEY_BYTES))  # as Fernet.generate_key()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key
