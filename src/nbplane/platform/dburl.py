"""Database URLs as people may see them: never with their password."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "key")
"""Query parameters whose values are hidden too (``?password=...`` is valid in many drivers)."""


def redact_url(url: str, *, hide_path: bool = False) -> str:
    """The URL without its password or secret query values; with ``hide_path``, a file
    database shows only its file name (a deployed job's log must not tell the server's paths)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a database URL)"
    if (
        hide_path
        and parsed.get_backend_name() == "sqlite"
        and parsed.database not in (None, ":memory:")
    ):
        return f"{parsed.drivername}:///…/{Path(str(parsed.database)).name}"
    hidden = {
        name: "***"
        for name in parsed.query
        if any(word in name.lower() for word in SECRET_QUERY_KEYS)
    }
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


def ensure_sqlite_parent(url: str) -> None:
    """SQLite creates the file but not its directory; create the directory."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
