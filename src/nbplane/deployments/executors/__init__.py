"""Job executors: where a deployed job's execution runs. Chosen by ``NBPLANE_JOB_EXECUTOR``."""

from __future__ import annotations

from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus, JobExecutor
from nbplane.plugins import ExtensionPoint
from nbplane.settings import Settings

__all__ = ["EXECUTORS", "ExecutionTicket", "ExecutorStatus", "JobExecutor", "executor_named"]

EXECUTORS = ExtensionPoint[JobExecutor](
    "nbplane.job_executors", JobExecutor, "job executor", "NBPLANE_JOB_EXECUTOR"
)


def executor_named(name: str, settings: Settings) -> JobExecutor:
    return EXECUTORS.load(name)(settings)
