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


EXPECTED = (
    "expected 5 fields (minute hour day month weekday) or 6 with seconds first, e.g. '*/15 * * * *'"
)


def next_fire(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that the schedule fires, in UTC.

    Five fields are minute hour day month weekday; six put seconds first. croniter also reads
    a seventh (year) field, and six or seven fields with every second: both are refused, so a
    schedule never starts a job every second."""
    from croniter import croniter
    from croniter.croniter import CroniterError

    fields = schedule.split()
    if not (len(fields) in (5, 6) or (len(fields) == 1 and fields[0].startswith("@"))):
        raise InvalidInput(
            f"bad cron expression {schedule!r}: {len(fields)} fields; {EXPECTED}",
            field="schedule",
        )
    local = after.astimezone(zone(timezone))
    try:
        fires = croniter(schedule, local, second_at_beginning=True)
        following: datetime = fires.get_next(datetime)
    except (CroniterError, ValueError) as exc:
        raise InvalidInput(
            f"bad cron expression {schedule!r}: {exc}; {EXPECTED}", field="schedule"
        ) from None
    if len(fields) == 6 and fires.expanded[5] == ["*"]:
        raise InvalidInput(
            f"cron expression {schedule!r} runs every second; give its first (seconds) field "
            "the seconds to run at, e.g. '0 */5 * * * *'",
            field="schedule",
        )
    return following.astimezone(UTC)
