"""Job executors: where a deployed job's execution runs. Chosen by ``NBPLANE_JOB_EXECUTOR``."""

from __future__ import annotations

from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus, JobExecutor
from nbplane.errors import ConfigError
from nbplane.settings import Settings

__all__ = ["ExecutionTicket", "ExecutorStatus", "JobExecutor", "executor_named"]


def executor_named(name: str, settings: Settings) -> JobExecutor:
    if name == "local":
        from nbplane.deployments.executors.local import LocalExecutor

        return LocalExecutor(settings)
    if name == "kubernetes":
        from nbplane.deployments.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(settings)
    raise ConfigError(
        f"unknown job executor {name!r}; choose 'local' or 'kubernetes'", field="job_executor"
    )
