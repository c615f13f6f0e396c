"""What nbplane tells about job runs: pydantic models named by what they do."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

MAX_OFFSET = 2**53
"""The largest offset a listing or a log read takes: within every store's 64-bit integers
(a larger one is a 422, not an overflow in the database) and JavaScript's exact ones."""


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_RUN = "not run"


class DescribeRunStep(BaseModel):
    """One step of a run: where it lives, how it ended and why."""

    id: int | None = None
    run_id: int | None = None
    position: int
    name: str
    kind: str
    file: str
    cell_number: int | None = None
    cell_id: str | None = None
    status: StepStatus
    reason: str | None = None
    started_at: UtcDatetime | None = None
    duration: float | None = None
    code_hash: str
    chain_hash: str
    error: dict[str, Any] | None = None
    defined_names: list[str] = Field(default_factory=list)
    unpicklable: dict[str, str] = Field(default_factory=dict)
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    has_checkpoint: bool = False


class CreateRun(BaseModel):
    """A run record as it starts (and the body of ``POST /api/v1/execution/runs``)."""

    model_config = ConfigDict(extra="forbid")

    job_dir: str = Field(max_length=1024)
    job_name: str = Field(max_length=255)
    job_team: str | None = Field(default=None, max_length=255)
    arguments: dict[str, Any]
    db_url: str = Field(max_length=1024)
    resumed: bool
    plan: list[str]


class DescribeRun(BaseModel):
    """A run of a job: its arguments, status, timings and steps."""

    id: int
    """Unique among every job's runs: what links and the HTML page use."""
    number: int
    """The run's number among its job's runs (1, 2, ...): what people read and type."""
    job_name: str
    job_team: str | None
    job_dir: str
    status: RunStatus
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    db_url: str
    resumed: bool = False
    plan: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    steps: list[DescribeRunStep] = Field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class DescribeStepExecution(BaseModel):
    """The latest execution of one step of a job, and the run it belongs to."""

    run_number: int
    arguments: dict[str, Any]
    step: DescribeRunStep


class DescribeInterruptedRun(BaseModel):
    """A run that ended while its step at ``position`` ran (its process died or was killed):
    that step counts as a failed execution, as it may have written half of its work."""

    run_id: int
    run_number: int
    position: int


class DescribeJobHistory(BaseModel):
    """What resume compares a job with, read in one call per run."""

    last_run_number: int | None = None
    executions: list[DescribeStepExecution] = Field(default_factory=list)
    """The latest execution (succeeded or failed, never skipped) of each step name."""
    interrupted: list[DescribeInterruptedRun] = Field(default_factory=list)


class DescribeGrantedConnection(BaseModel):
    """A connection granted to the job's team, with its values: what ``job_input`` hands a step."""

    name: str
    kind: str
    values: dict[str, str]

    def secret_values(self) -> list[str]:
        """What must never show in output: every value but the few that locate a resource
        (bucket, region, endpoint), and of a URL its password."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        found = []
        for key, value in self.values.items():
            if key in PUBLIC_CONNECTION_KEYS:
                continue
            if key == "url":
                try:
                    password = make_url(value).password
                except ArgumentError:
                    password = value
                if password:
                    found.append(str(password))
                continue
            found.append(value)
        return found


PUBLIC_CONNECTION_KEYS = frozenset({"bucket", "region", "endpoint_url"})
