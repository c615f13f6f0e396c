"""The job executor extension point: start an execution somewhere, watch it, stop it.

Every executor runs the same command, ``nbplane job run-execution ID``, which reads the
deployed version from the server, runs it, streams its log to the server and records the final
status itself, all through the server's execution API with the execution's own credential: the
process never holds nbplane's database URL or key (:mod:`nbplane.deployments.context`). An
executor only has to start that command (a local process, a Kubernetes Job), say whether it
still runs, stop it, and read back the logs where it ran. The monitor
(:mod:`nbplane.deployments.reconciler`) owns the lifecycle around those hooks: cancellation,
timeouts, and a final status for an execution whose process ended without writing one, each
written through :mod:`nbplane.deployments.lifecycle`.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nbplane.deployments.context import team_directory
from nbplane.deployments.models import JobExecutionRecord
from nbplane.settings import Settings


@dataclass(frozen=True)
class ExecutionTicket:
    """What an executor needs to start one execution."""

    execution_id: str
    team: str
    job: str
    version: str
    resources: dict[str, str]
    timeout: float
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    """What the command needs: the server's URL and the execution's credential; pass it
    secretly (not on a command line, not in a pod spec)."""
    data_directory: str | None = None
    """The team's own directory (its default SQLite database), where the executor can offer it."""
    attempt: int = 1
    """Which attempt of the execution this is: each attempt is a process (a Kubernetes Job) of
    its own, never a restart of an earlier one's."""


@dataclass(frozen=True)
class ExecutorStatus:
    """How a started execution is doing, as its executor sees it."""

    running: bool
    exit_code: int | None = None
    reason: str | None = None
    """Why it ended, when the executor knows more than the exit code (e.g. OOMKilled)."""


class JobExecutor(ABC):
    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def ticket(self, execution: JobExecutionRecord, server_url: str, token: str) -> ExecutionTicket:
        """The ticket of an execution, with the command every executor runs and the only
        credential it gets: the execution's own."""
        return ExecutionTicket(
            execution_id=execution.id,
            team=execution.team,
            job=execution.job,
            version=execution.version,
            resources=dict(execution.resources),
            timeout=execution.timeout,
            command=[self.python(), "-m", "nbplane", "job", "run-execution", execution.id],
            environment={"NBPLANE_URL": server_url, "NBPLANE_EXECUTION_TOKEN": token},
            data_directory=str(team_directory(self.settings, execution.team)),
            attempt=execution.attempt,
        )

    def python(self) -> str:
        """The Python that runs the command where the executor starts it."""
        return sys.executable

    @abstractmethod
    async def start(self, ticket: ExecutionTicket) -> dict[str, Any]:
        """Start the command; returns what ``poll``/``stop``/``logs`` need, kept in the row."""

    @abstractmethod
    async def poll(self, state: dict[str, Any]) -> ExecutorStatus:
        """Whether it still runs; how it ended if not."""

    @abstractmethod
    async def stop(self, state: dict[str, Any]) -> None:
        """Stop it for good (cancel, timeout, job deleted); no error if it is gone."""

    async def logs(self, state: dict[str, Any]) -> str | None:
        """Its output as the place it ran keeps it, when that differs from our own log."""
        return None

    async def discard(self, execution_id: str) -> None:  # noqa: B027 - most leave nothing behind
        """Remove what an ended execution left where it ran, as retention deletes its record;
        nothing when there is nothing (or it was removed already)."""

    async def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release clients and connections."""
