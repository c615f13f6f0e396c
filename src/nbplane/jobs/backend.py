"""Where a run keeps its records and a job its state: the seam between the runner and nbplane.

A run on a user's machine (``nbplane job run``, ``%job``) talks to nbplane's database directly:
:class:`Store` keeps the run records and :class:`StoreJobState` the properties, secrets (sealed
with the key on that machine) and connections. A deployed job's execution never holds that
database or key: ``nbplane job run-execution`` uses the server's execution API instead, through
a credential that reaches only that execution's job (``control/execute.py``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from nbplane.errors import NotFound
from nbplane.jobs.definition import Job
from nbplane.jobs.models import (
    CreateRun,
    DescribeGrantedConnection,
    DescribeJobHistory,
    DescribeRun,
    DescribeRunStep,
    RunStatus,
)
from nbplane.settings import Settings
from nbplane.store import Store

if TYPE_CHECKING:
    from nbplane.platform.secrets import SecretBox


class RunRecords(Protocol):
    """Run records as the runner writes and resume reads them (``Store`` is one)."""

    def create_run(self, run: CreateRun, execution_id: str | None = None) -> DescribeRun: ...

    def add_step(self, run_id: int, step: DescribeRunStep, checkpoint: bytes | None) -> None: ...

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        error: dict[str, Any] | None,
        notebooks: dict[str, str],
    ) -> DescribeRun: ...

    def job_history(self, job_dir: str) -> DescribeJobHistory:
        """What resume compares the job with: each step's latest execution."""
        ...

    def load_checkpoint(self, step_id: int) -> bytes | None: ...


class JobState(ABC):
    """A job's properties and secrets, kept between runs, and the connections its team may use."""

    @abstractmethod
    def get_properties(self, job_key: str) -> dict[str, Any]: ...

    @abstractmethod
    def set_properties(self, job_key: str, properties: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_secrets(self, job_key: str) -> dict[str, Any]: ...

    @abstractmethod
    def set_secrets(self, job_key: str, secrets: dict[str, Any]) -> None: ...

    @abstractmethod
    def connections(self, team: str | None) -> list[DescribeGrantedConnection]:
        """The connections granted to ``team``, default database first."""


class StoreJobState(JobState):
    """State in nbplane's database, secrets sealed with this machine's key."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    @functools.cached_property
    def box(self) -> SecretBox:
        """The key, read only when a run touches its secrets."""
        from nbplane.platform.secrets import SecretBox

        return SecretBox(self.settings)

    def get_properties(self, job_key: str) -> dict[str, Any]:
        return self.store.get_properties(job_key)

    def set_properties(self, job_key: str, properties: dict[str, Any]) -> None:
        self.store.set_properties(job_key, properties)

    def get_secrets(self, job_key: str) -> dict[str, Any]:
        blob = self.store.get_secrets_blob(job_key)
        return self.box.open(blob) if blob else {}

    def set_secrets(self, job_key: str, secrets: dict[str, Any]) -> None:
        self.store.set_secrets_blob(job_key, self.box.seal(secrets))

    def connections(self, team: str | None) -> list[DescribeGrantedConnection]:
        if not team:
            return []
        from nbplane.sessions.connections import ConnectionService

        return ConnectionService(self.store, self.settings).granted("", [team])


def default_database(connections: list[DescribeGrantedConnection]) -> str | None:
    """The URL of the team's default database connection (else its first database one)."""
    for connection in connections:
        if connection.kind == "database" and "url" in connection.values:
            return connection.values["url"]
    return None


def job_database(explicit: str | None, job: Job, state: JobState, settings: Settings) -> str:
    """The job's database: the one asked for (``--db``), else the job's own config, else its
    team's default database connection, else ``NBPLANE_DB_URL``, else SQLite in NBPLANE_HOME."""
    return (
        explicit
        or job.config.db_url
        or default_database(state.connections(job.config.team))
        or settings.default_db_url
    )


def find_connection(
    connections: list[DescribeGrantedConnection], name: str
) -> DescribeGrantedConnection:
    for connection in connections:
        if connection.name == name:
            return connection
    granted = ", ".join(c.name for c in connections) or "none"
    raise NotFound(
        f"no connection {name!r} is granted to this job's team (granted: {granted})",
        field="connection",
    )
