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


class DescribeRetention(BaseModel):
    """How much of a job's history is kept; 0 keeps that much forever. Checkpoints need no
    number: only those resume may still read are kept (see ``store/retention.py``)."""

    keep_runs: int = Field(ge=0, description="Run records of the newest N runs; 0: all.")
    keep_days: float = Field(ge=0, description="No run record older than D days; 0: no limit.")
    keep_outputs: int = Field(
        ge=0,
        description="Executed notebooks, step outputs and execution logs of the newest M runs "
        "only (older runs keep their record without them); 0: of every kept run.",
    )


class DescribePrune(BaseModel):
    """What pruning one job removed, or would remove in a dry run."""

    job: str = Field(description="The job directory, or team/name of a deployed job.")
    dry_run: bool = False
    runs: list[int] = Field(default_factory=list, description="Run records deleted.")
    executions: list[str] = Field(
        default_factory=list, description="Deployed job executions deleted, with their runs."
    )
    steps: int = Field(default=0, description="Step records deleted with their runs.")
    checkpoints: int = Field(default=0, description="Checkpoints dropped, with their runs or not.")
    notebooks: int = Field(default=0, description="Executed notebooks deleted.")
    outputs: int = Field(default=0, description="Step records whose outputs were cleared.")
    logs: int = Field(default=0, description="Executions whose log was deleted.")
    log_characters: int = Field(default=0, description="Characters of those logs.")

    @property
    def removed_anything(self) -> bool:
        return any(
            (self.runs, self.executions, self.checkpoints, self.notebooks, self.outputs, self.logs)
        )

    def summary(self) -> str:
        """In words, for a log line."""
        counts = {
            "executions": len(self.executions),
            "runs": len(self.runs),
            "steps": self.steps,
            "checkpoints": self.checkpoints,
            "executed notebooks": self.notebooks,
            "step outputs": self.outputs,
            f"logs ({self.log_characters} characters)": self.logs,
        }
        return ", ".join(f"{count} {what}" for what, count in counts.items() if count)
