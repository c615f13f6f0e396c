"""Job secrets encrypted at rest with Fernet; the key never sits in the database."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nbplane.errors import ConfigError
from nbplane.settings import Settings


class SecretBox:
    """Encrypts a job's secrets as one JSON document."""

    def __init__(self, settings: Settings) -> None:
        from cryptography.fernet import Fernet

        key = settings.secret_key.encode() if settings.secret_key else _key_file(settings.home)
        self.key = key
        """The Fernet key, handed to a deployed job's execution wherever it runs."""
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise ConfigError(
                f"NBPLANE_SECRET_KEY is not a Fernet key: {exc}", field="NBPLANE_SECRET_KEY"
            ) from exc

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


def _key_file(home: Path) -> bytes:
    from cryptography.fernet import Fernet

    path = home / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key
