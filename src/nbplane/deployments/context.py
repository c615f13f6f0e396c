"""What a deployed job's execution may reach through the server, and nothing more.

An execution's process holds no key, database URL or user token of nbplane: it gets its own
credential (``nbx_...``, only a SHA-256 of it is kept), which is good for that execution while it
runs and speaks for nothing else. With it the process reads its version's archive, its job's
properties and secrets (decrypted here, on the server), the connections granted to its team, and
writes its run record and log. Another job's state, another team's connections and every other
route of the API stay out of its reach.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbplane.deployments.lifecycle import JobExecutionLifecycle
from nbplane.deployments.models import (
    AppendLog,
    DescribeExecutionContext,
    FailureKind,
    FinishJobExecution,
    FinishRun,
    JobExecutionStatus,
)
from nbplane.errors import NotFound, Unauthorized
from nbplane.jobs.backend import StoreJobState
from nbplane.jobs.models import (
    CreateRun,
    DescribeGrantedConnection,
    DescribeRun,
    DescribeRunStep,
)
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.settings import Settings
from nbplane.store import Store
from nbplane.store.auth import token_hash

EXECUTION_TOKEN_PREFIX = "nbx_"


def new_execution_token() -> str:
    return EXECUTION_TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ExecutionIdentity:
    """The running execution a credential speaks for, in one of its attempts."""

    id: str
    attempt: int
    job_id: int
    team: str
    job: str
    version: str
    arguments: dict[str, Any]

    @property
    def key(self) -> str:
        """The job's key of its properties and secrets."""
        return f"{self.team}/{self.job}"


class ExecutionContextService:
    def __init__(self, store: Store, settings: Settings, metrics: Metrics = UNOBSERVED) -> None:
        self.store, self.settings = store, settings
        self.deployments = store.deployments
        self.lifecycle = JobExecutionLifecycle(self.deployments, metrics)
        self.state = StoreJobState(store, settings)

    def identify(self, token: str) -> ExecutionIdentity:
        execution = (
            self.deployments.execution_by_token(token_hash(token))
            if token.startswith(EXECUTION_TOKEN_PREFIX)
            else None
        )
        if execution is None:
            raise Unauthorized(
                "this endpoint needs the credential of a running job execution", field="token"
            )
        return ExecutionIdentity(
            id=execution.id,
            attempt=execution.attempt,
            job_id=execution.job_id,
            team=execution.team,
            job=execution.job,
            version=execution.version,
            arguments=execution.arguments,
        )

    def describe(self, identity: ExecutionIdentity) -> DescribeExecutionContext:
        return DescribeExecutionContext(
            id=identity.id,
            team=identity.team,
            job=identity.job,
            version=identity.version,
            arguments=identity.arguments,
            db_url=self.settings.db_url
            or f"sqlite:///{team_directory(self.settings, identity.team) / 'warehouse.sqlite'}",
        )

    def archive(self, identity: ExecutionIdentity) -> bytes:
        return self.deployments.archive(identity.job_id, identity.version)

    def properties(self, identity: ExecutionIdentity) -> dict[str, Any]:
        return self.state.get_properties(identity.key)

    def set_properties(self, identity: ExecutionIdentity, values: dict[str, Any]) -> None:
        self.state.set_properties(identity.key, values)

    def secrets(self, identity: ExecutionIdentity) -> dict[str, Any]:
        return self.state.get_secrets(identity.key)

    def set_secrets(self, identity: ExecutionIdentity, values: dict[str, Any]) -> None:
        self.state.set_secrets(identity.key, values)

    def connections(self, identity: ExecutionIdentity) -> list[DescribeGrantedConnection]:
        return self.state.connections(identity.team)

    def append_log(self, identity: ExecutionIdentity, body: AppendLog) -> None:
        self.deployments.append_log(identity.id, body.text)

    def create_run(self, identity: ExecutionIdentity, body: CreateRun) -> DescribeRun:
        """The execution's run record, named and numbered after the deployed job whatever the
        archive and the scratch directory it runs in say."""
        run = self.store.create_run(
            body.model_copy(
                update={
                    "job_dir": deployed_job_dir(identity.team, identity.job),
                    "job_name": identity.job,
                    "job_team": identity.team,
                }
            ),
            identity.id,
        )
        self.deployments.set_run(identity.id, run.id)
        return run

    def add_step(self, identity: ExecutionIdentity, run_id: int, step: DescribeRunStep) -> None:
        self._own_run(identity, run_id)
        # No checkpoint: a deployed execution always runs every step, and the server keeps no
        # pickle a job wrote.
        self.store.add_step(run_id, step.model_copy(update={"has_checkpoint": False}), None)

    def finish_run(self, identity: ExecutionIdentity, run_id: int, body: FinishRun) -> DescribeRun:
        self._own_run(identity, run_id)
        return self.store.finish_run(run_id, body.status, body.error, body.notebooks)

    def finish(self, identity: ExecutionIdentity, body: FinishJobExecution) -> None:
        """The attempt ends as its process says: a failure it reports is the job's own."""
        failed = body.status == JobExecutionStatus.FAILED
        self.lifecycle.finish(
            identity.id,
            body.status,
            body.reason,
            attempt=identity.attempt,
            failure=FailureKind.USER if failed else None,
        )

    def _own_run(self, identity: ExecutionIdentity, run_id: int) -> None:
        if self.store.run_execution_id(run_id) != identity.id:
            raise NotFound(f"no run {run_id} of this execution", field="run_id")


def deployed_job_dir(team: str, job: str) -> str:
    """What a deployed job's run records have as ``job_dir``: each execution runs in a scratch
    directory of its own, and its runs are numbered per deployed job."""
    return f"deployed:{team}/{job}"


def team_directory(settings: Settings, team: str) -> Path:
    """A team's own files on this server (its default SQLite database), which its jobs on the
    local executor may write and no other team's can see."""
    return settings.home / "teams" / team
