"""Where ``nbplane login`` keeps which server the remote commands talk to, and as whom."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from nbplane import errors
from nbplane.settings import get_settings

CREDENTIALS_FILE = "credentials.json"


class SaveLogin(BaseModel):
    """What ``nbplane login`` keeps in ``NBPLANE_HOME/credentials.json``."""

    url: str
    token: str


def normalize_url(url: str) -> str:
    """One spelling per server, so a saved token is only ever sent to the server it is for."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.ConfigError(
            f"server URL {url!r} must look like http://HOST:PORT or https://HOST", field="url"
        )
    return url


def credentials_path() -> Path:
    return get_settings().home / CREDENTIALS_FILE


def load_login() -> SaveLogin | None:
    path = credentials_path()
    try:
        return SaveLogin.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise errors.ConfigError(
            f"cannot read {path} ({type(exc).__name__}); run `nbplane login` again",
            file=str(path),
        ) from None


def save_login(login: SaveLogin) -> Path:
    """Write the credentials readable by their owner only, replacing any earlier login at once."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{CREDENTIALS_FILE}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(login.model_dump_json(indent=2))
        os.chmod(partial, 0o600)  # the file may have existed with a laxer mode
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def forget_login() -> bool:
    path = credentials_path()
    if not path.exists():
        return False
    path.unlink()
    return True
