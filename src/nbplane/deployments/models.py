"""What the deployments API says about jobs, versions, deployments and job executions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nbplane.jobs.models import MAX_OFFSET, DescribeRunStep, RunStatus, UtcDatetime
from nbplane.platform.names import check_name


class JobExecutionStatus(StrEnum):
    """Where a job execution is. Its own word, apart from a notebook API execution's status.
    ``retrying``: an attempt failed and the deployment's retries allow another one at
    ``retry_at``; a status of its own rather than back to ``queued``, so a list shows which
    executions wait out a failure, and cancelling one says it never got its next attempt."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the execution ended: a final status changes no more."""
        return self not in TRANSITIONS

    def sources(self) -> frozenset[JobExecutionStatus]:
        """The statuses a job execution may move to this one from."""
        return frozenset(source for source, targets in TRANSITIONS.items() if self in targets)


TRANSITIONS: Mapping[JobExecutionStatus, frozenset[JobExecutionStatus]] = {
    JobExecutionStatus.QUEUED: frozenset(
        {JobExecutionStatus.RUNNING, JobExecutionStatus.FAILED, JobExecutionStatus.CANCELLED}
    ),
    JobExecutionStatus.RUNNING: frozenset(
        {
            JobExecutionStatus.COMPLETED,
            JobExecutionStatus.FAILED,
            JobExecutionStatus.TIMED_OUT,
            JobExecutionStatus.CANCELLED,
            JobExecutionStatus.RETRYING,
        }
    ),
    JobExecutionStatus.RETRYING: frozenset(
        {JobExecutionStatus.RUNNING, JobExecutionStatus.FAILED, JobExecutionStatus.CANCELLED}
    ),
}
"""Each status's allowed next ones (written by deployments/lifecycle.py only)."""


class FailureKind(StrEnum):
    """Whose failure ended an attempt: ``user``, the job's own process reported it failed (a
    step raised); ``platform``, it could not start, its process or pod ended without recording
    a result (pod lost, node gone, OOMKilled, the replica starting it stopped), or it timed out."""

    USER = "user"
    PLATFORM = "platform"


class RetryOn(StrEnum):
    """Which failed attempts a deployment retries: ``any`` failure, or ``platform`` failures
    only (a job whose own code failed would fail again)."""

    ANY = "any"
    PLATFORM = "platform"

    def covers(self, failure: FailureKind) -> bool:
        return self == RetryOn.ANY or failure == FailureKind.PLATFORM


MAX_RETRIES = 10
MAX_RETRY_DELAY = 3600.0
"""Backoff cap: the wait after attempt n is ``retry_delay * 2**(n-1)`` seconds, at most 1 h."""


def retry_wait(retry_delay: float, failed_attempt: int) -> float:
    """Seconds between the end of attempt ``failed_attempt`` (1-based) and the next one."""
    return min(retry_delay * (1 << min(max(failed_attempt - 1, 0), 32)), MAX_RETRY_DELAY)


class CreateJob(BaseModel):
    """Body of ``POST /api/v1/teams/{team}/jobs``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The job's name, unique in its team.")
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "job name")


class DescribeVersion(BaseModel):
    """An uploaded archive of a job: its id is the SHA-256 of the archive's bytes."""

    id: str
    job: str
    team: str
    size: int
    steps: list[str]
    created_at: UtcDatetime
    created_by: str | None = None


class NotificationEvent(StrEnum):
    """What a notification target may ask to hear about."""

    FAILED = "failed"
    """The execution ended failed or timed out (a cancelled one is someone's own doing)."""
    COMPLETED = "completed"
    LATE = "late"
    """A scheduled execution not finished ``late_minutes`` after it was due."""


ADDRESS_PART = r'[^@\s,;<>"\x00-\x1f\x7f]+'
EMAIL_PATTERN = rf"^{ADDRESS_PART}@{ADDRESS_PART}\.{ADDRESS_PART}$"
"""One plain address: no display name, list separator or line break that could add a header."""


def redact_url(url: str) -> str:
    """A webhook URL as the API shows it: its path and query are often the credential (Slack,
    Teams), so only the scheme and host are kept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


class CreateNotification(BaseModel):
    """One target of a deployment's notifications: a webhook (``url``) or email addresses
    (``to``), and the events it wants."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        max_length=2048,
        description="A webhook (http or https) that gets a JSON POST with a Slack-compatible "
        "'text'; kept sealed, shown as scheme://host/… .",
    )
    to: list[str] | None = Field(
        default=None, min_length=1, max_length=20, description="Email addresses."
    )
    events: list[NotificationEvent] = Field(
        default_factory=lambda: [NotificationEvent.FAILED], min_length=1, max_length=3
    )
    late_minutes: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 60,
        description="With event 'late': minutes after a scheduled execution was due.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(character) < 0x21 or ord(character) == 0x7F for character in value):
            raise ValueError("may not contain spaces or control characters")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL with a host")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if not re.match(EMAIL_PATTERN, address):
                raise ValueError(f"{address!r} is not one plain email address (name@host)")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> CreateNotification:
        if (self.url is None) == (self.to is None):
            raise ValueError("give either 'url' (a webhook) or 'to' (email addresses)")
        if (NotificationEvent.LATE in self.events) != (self.late_minutes is not None):
            raise ValueError("event 'late' and 'late_minutes' go together")
        return self


class DescribeNotification(BaseModel):
    """A deployment's notification target as the API shows it: a webhook's URL redacted."""

    url: str | None = None
    to: list[str] | None = None
    events: list[NotificationEvent]
    late_minutes: float | None = None


class NotificationTarget(DescribeNotification):
    """A target as the server keeps it: the webhook's whole URL sealed with the server's key.
    Only the server reads it; no route answers with it."""

    sealed_url: str | None = None

    def wants(self, event: NotificationEvent) -> bool:
        return event in self.events


class DeployJob(BaseModel):
    """Body of ``PUT /api/v1/teams/{team}/jobs/{job}/deployment``: what runs, and when."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, description="Version id (or a unique prefix); default: the newest upload."
    )
    schedule: str | None = Field(
        default=None,
        max_length=255,
        description="Cron expression (5 fields, or 6 with seconds first, not every second).",
    )
    timezone: str = Field(default="UTC", description="IANA time zone the schedule is read in.")
    enabled: bool = Field(default=True, description="A disabled deployment's schedule is off.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="Arguments every execution gets, unless it names its own."
    )
    resources: dict[str, str] = Field(
        default_factory=dict,
        description="Resources of an execution, e.g. {'cpu': '500m', 'memory': '512Mi'} "
        "(requests and limits of the Kubernetes executor; the local executor ignores them).",
    )
    timeout: float = Field(
        default=3600.0, gt=0, description="Seconds before an execution's attempt ends."
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=MAX_RETRIES,
        description="Attempts after the first one when an attempt fails (0-10).",
    )
    retry_delay: float = Field(
        default=60.0,
        gt=0,
        le=MAX_RETRY_DELAY,
        description="Seconds before the first retry; each later wait doubles, at most 1 h.",
    )
    retry_on: RetryOn = Field(
        default=RetryOn.ANY,
        description="'any' failure, or 'platform' failures only (could not start, process or "
        "pod lost, timed out), not the job's own code failing.",
    )
    reason: str | None = Field(default=None, description="Why this deployment, for the record.")
    notifications: list[CreateNotification] = Field(
        default_factory=list,
        max_length=10,
        description="Who hears about its executions: webhooks and email addresses, each with "
        "the events it wants (default: failed).",
    )


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A PATCH model's JSON Schema: fields that may not be null are not nullable there either."""
    clearable: frozenset[str] = getattr(model, "CLEARABLE", frozenset())
    for name, prop in schema.get("properties", {}).items():
        choices = prop.get("anyOf")
        if name in clearable or not choices:
            continue
        kept = [choice for choice in choices if choice != {"type": "null"}]
        prop.pop("anyOf")
        prop.pop("default", None)
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


class UpdateDeployment(BaseModel):
    """Body of ``PATCH .../deployment``: change some fields, keep the rest. A field left out
    keeps its value; null clears ``schedule`` and ``reason`` and is refused (422) elsewhere."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_null)
    CLEARABLE: ClassVar[frozenset[str]] = frozenset({"schedule", "reason"})

    version: str | None = None
    schedule: str | None = Field(default=None, max_length=255)
    timezone: str | None = None
    enabled: bool | None = None
    arguments: dict[str, Any] | None = None
    resources: dict[str, str] | None = None
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    retry_delay: float | None = Field(default=None, gt=0, le=MAX_RETRY_DELAY)
    retry_on: RetryOn | None = None
    reason: str | None = None
    notifications: list[CreateNotification] | None = Field(default=None, max_length=10)

    @field_validator("*")
    @classmethod
    def _null_only_where_it_clears(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.CLEARABLE:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


class DescribeDeployment(BaseModel):
    version: str
    schedule: str | None
    timezone: str
    enabled: bool
    arguments: dict[str, Any]
    resources: dict[str, str]
    timeout: float
    retries: int = 0
    retry_delay: float = 60.0
    retry_on: RetryOn = RetryOn.ANY
    executor: str
    reason: str | None = None
    notifications: list[DescribeNotification] = Field(default_factory=list)
    next_run_at: UtcDatetime | None = Field(
        default=None, description="When the schedule runs it next (None: no schedule, disabled)."
    )
    deployed_at: UtcDatetime
    deployed_by: str | None = None


class NotificationStatus(StrEnum):
    PENDING = "pending"
    """Not sent yet: waiting for its first attempt, or for the next after a failed one."""
    SENT = "sent"
    FAILED = "failed"
    """Every attempt failed; ``last_error`` says why."""


class DescribeNotificationDelivery(BaseModel):
    """One notification of an execution: to which target, for which event, how it went."""

    target: int = Field(description="Position of the target in the deployment's notifications.")
    address: str = Field(description="The webhook's URL redacted, or the email addresses.")
    event: NotificationEvent
    status: NotificationStatus
    attempts: int
    last_error: str | None = None
    next_attempt_at: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None


class NotificationDelivery(DescribeNotificationDelivery):
    """A notification as the outbox keeps it, with where it goes; only the server reads it."""

    id: int
    execution_id: str
    sealed_url: str | None = None
    to: list[str] | None = None


class ExecuteJob(BaseModel):
    """Body of ``POST .../executions``: run the deployed version now."""

    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] | None = Field(
        default=None, description="Arguments for this execution (default: the deployment's)."
    )


class DescribeJobExecutionAttempt(BaseModel):
    """One try of an execution: a process (a Kubernetes Job) of its own, with its own
    credential; a failed one is followed by another while the deployment's retries allow."""

    number: int = Field(description="1 for the first attempt.")
    status: JobExecutionStatus
    failure: FailureKind | None = Field(
        default=None, description="Whose failure ended it: 'user' (its code) or 'platform'."
    )
    reason: str | None = None
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None


class DescribeJobExecution(BaseModel):
    """One execution of a deployed job: who started it, how it went, its attempts and steps
    (the steps of its latest attempt)."""

    id: str
    job: str
    team: str
    version: str
    status: JobExecutionStatus
    reason: str | None = None
    started_by: str = Field(description="'user:NAME' or 'schedule'.")
    scheduled_for: UtcDatetime | None = None
    arguments: dict[str, Any]
    executor: str
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    cancel_requested: bool = False
    retry_at: UtcDatetime | None = Field(
        default=None, description="When a retrying execution starts its next attempt."
    )
    attempts: list[DescribeJobExecutionAttempt] = Field(default_factory=list)
    steps: list[DescribeRunStep] = Field(default_factory=list)
    notifications: list[DescribeNotificationDelivery] = Field(default_factory=list)


class JobExecutionRecord(DescribeJobExecution):
    """A job execution as the server keeps it: what the API shows, and what the monitor and
    the executors need besides. Only the server reads it; no route answers with it."""

    job_id: int
    resources: dict[str, str]
    timeout: float
    retries: int
    retry_delay: float
    retry_on: RetryOn
    attempt: int = Field(description="The number of the latest attempt (0: none started yet).")
    attempt_started_at: UtcDatetime | None = None
    executor_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class DueDeployment:
    """A scheduled deployment whose next run is due, with the job it runs."""

    job_id: int
    team: str
    job: str
    deployment: DescribeDeployment


class DescribeJob(BaseModel):
    name: str
    team: str
    description: str | None = None
    created_at: UtcDatetime
    created_by: str | None = None
    deployment: DescribeDeployment | None = None
    last_executions: list[DescribeJobExecution] = Field(default_factory=list)


class JobExecutionPage(BaseModel):
    items: list[DescribeJobExecution]
    total: int
    limit: int
    offset: int


class ListJobExecutionsQuery(BaseModel):
    status: JobExecutionStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class SetValues(BaseModel):
    """Body of ``PATCH .../properties`` and ``.../secrets``: a null value removes the key."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any]


class DescribeSecrets(BaseModel):
    """Secrets are write-only: only their names come back."""

    names: list[str]


class DescribeExecutionContext(BaseModel):
    """``GET /api/v1/execution``: what a deployed job's execution runs, seen from inside it."""

    id: str
    team: str
    job: str
    version: str
    arguments: dict[str, Any]
    db_url: str | None = Field(
        default=None,
        description="The database for a job that names none and whose team has no default "
        "database connection (NBPLANE_DB_URL of the server, else the team's own SQLite file).",
    )


class FinishRun(BaseModel):
    """Body of ``POST /api/v1/execution/runs/{run_id}/finish``."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus
    error: dict[str, Any] | None = None
    notebooks: dict[str, str] = Field(default_factory=dict)


class AppendLog(BaseModel):
    """Body of ``POST /api/v1/execution/log``: output to add to the execution's log."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000)


class FinishJobExecution(BaseModel):
    """Body of ``POST /api/v1/execution/finish``: how the job's own process says it ended."""

    model_config = ConfigDict(extra="forbid")

    status: Literal[JobExecutionStatus.COMPLETED, JobExecutionStatus.FAILED]
    reason: str | None = Field(default=None, max_length=10_000)
