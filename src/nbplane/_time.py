"""The one clock of nbplane's records: timezone-aware UTC, as the store keeps them."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
