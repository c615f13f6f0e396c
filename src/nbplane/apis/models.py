"""What the API says about executions: pydantic models named by what they do."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbplane.jobs.models import MAX_OFFSET, UtcDatetime


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the execution ended: a final status changes no more."""
        return self not in TRANSITIONS

    def sources(self) -> list[ExecutionStatus]:
        """The statuses an execution may move to this one from."""
        return [source for source, targets in TRANSITIONS.items() if self in targets]


TRANSITIONS: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.QUEUED: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.QUEUED,  # its worker was lost and a retry remains
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.CANCELLED,
        }
    ),
}
"""Every status change an execution may make (see :mod:`nbplane.apis.lifecycle`, their one
writer); the store's conditional UPDATEs take their "from" statuses from here."""


HOPS = (
    "validate_input",
    "queue",
    "engine_start",
    "cells",
    "capture",
    "validate_output",
    "record",
    "other",
)
"""Where an execution's time goes, in order (milliseconds in ``timings`` and the
``Server-Timing`` header): ``validate_input`` checking the parameters against the contract;
``queue`` from its creation until a worker began running it (storing it, waiting for a worker,
being taken; one the answering server's worker takes at once is stored while it runs); the
engine's ``engine_start`` (a kernel or shell ready for it), ``cells`` (running
them) and ``capture`` (the executed notebook and the output); ``validate_output`` checking the
output; ``record`` (header only) from the end of the run until the answering server had the
final record: storing it and, when another process ran it, the signal and the read;
``other`` the worker's time no hop accounts for."""


class DescribeNotebook(BaseModel):
    """A notebook API in the catalog: its contract, or why it cannot be called."""

    name: str
    status: Literal["ok", "broken"] = Field(description="broken: reason says why.")
    reason: str | None = None
    engine: str | None = None
    timeout: float | None = None
    input: dict[str, Any] | None = Field(default=None, description="The input JSON Schema.")
    output: dict[str, Any] | None = Field(default=None, description="The output JSON Schema.")


class SubmitExecution(BaseModel):
    """Body of ``POST /api/v1/notebooks/{name}/executions``."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Values for the notebook's input contract."
    )


class DescribeExecution(BaseModel):
    """An execution: what ran, its status, and why it ended as it did."""

    id: str
    notebook: str
    notebook_version: str
    parameters: dict[str, Any]
    status: ExecutionStatus
    reason: str | None = Field(
        default=None, description="Why it failed, timed out or was cancelled."
    )
    error: dict[str, Any] | None = None
    output: Any = None
    has_output: bool = False
    engine: str
    timeout: float
    retries: int
    attempts: int
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    created_by: str | None = Field(
        default=None,
        description="The user who submitted it (its owner: only they and admins see it).",
    )
    team: str | None = Field(
        default=None,
        description="The submitter's team the notebook API was called for (the first of their "
        "teams the API is open to), or null.",
    )
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="Milliseconds spent in each hop so far, in order: validate_input, queue, "
        "engine_start, cells, capture, validate_output, other.",
    )

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ListExecutionsQuery(BaseModel):
    """Filters and page of ``GET /api/v1/executions``."""

    notebook: str | None = None
    status: ExecutionStatus | None = None
    owner: str | None = Field(
        None,
        description="Admins: only this user's executions. Everyone else always sees only their "
        "own, whatever this says.",
    )
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class ExecutionPage(BaseModel):
    items: list[DescribeExecution]
    total: int
    limit: int
    offset: int
