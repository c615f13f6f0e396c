"""Cron schedules: parsed once, read in the deployment's time zone, stored as UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbplane.errors import InvalidInput


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Sofia' or 'UTC'",
            field="timezone",
        ) from None


def next_fire(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that the schedule fires, in UTC.

    Five fields are minute hour day month weekday; six put seconds first."""
    from croniter import croniter
    from croniter.croniter import CroniterError

    local = after.astimezone(zone(timezone))
    try:
        fires = croniter(schedule, local, second_at_beginning=True)
        following: datetime = fires.get_next(datetime)
    except (CroniterError, ValueError) as exc:
        raise InvalidInput(
            f"bad cron expression {schedule!r}: {exc}; expected 5 fields (minute hour day "
            "month weekday) or 6 with seconds first, e.g. '*/15 * * * *'",
            field="schedule",
        ) from None
    return following.astimezone(UTC)
