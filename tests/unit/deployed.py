"""A job deployed on a store, its executions run by :class:`nbplane.testing.FakeExecutor`: where
the in-process tests of the deployments reconciler, notifications and retention start."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbplane.auth.models import DescribeCaller
from nbplane.deployments import reconciler
from nbplane.deployments.models import CreateJob, DeployJob
from nbplane.deployments.service import DeploymentService
from nbplane.jobs.scaffold import export_job
from nbplane.settings import Settings
from nbplane.store import Store
from nbplane.testing import FakeExecutor
from tests.conftest import write_notebook

TEAM, JOB = "sales", "daily"
ALICE = DescribeCaller(user="alice", admin=False, teams=[TEAM])


def deploy_fake_job(
    store: Store,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: str | None = None,
) -> tuple[DeploymentService, FakeExecutor]:
    """Alice's job ``daily`` (one notebook, ``config`` as its config.ini) uploaded and deployed,
    the reconciler's executor being the returned fake."""
    executor = FakeExecutor(settings)
    monkeypatch.setattr(reconciler, "executor_named", lambda name, settings: executor)
    service = DeploymentService(store, settings, "local")
    service.create_job(ALICE, TEAM, CreateJob(name=JOB))
    upload(service, tmp_path, config)
    service.deploy(ALICE, TEAM, JOB, DeployJob(timeout=60))
    return service, executor


def upload(service: DeploymentService, tmp_path: Path, config: str | None = None) -> None:
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    write_notebook(job / "10_main.ipynb", ["x = 1"])
    if config is not None:
        (job / "config.ini").write_text(config)
    export_job(job, tmp_path / "job.zip")
    service.upload(ALICE, TEAM, JOB, (tmp_path / "job.zip").read_bytes())
