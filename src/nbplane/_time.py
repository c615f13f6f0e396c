"""The one clock of nbplane's records (timezone-aware UTC, as the store keeps them), and the
one way a background loop sleeps until its next turn."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


async def sleep_or_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``wake`` is set. ``asyncio.timeout`` rather than
    ``asyncio.wait_for``: on Python 3.11 ``wait_for`` swallows a cancellation that arrives in the
    turn the event is set, and the loop being stopped would go on forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
