"""The server's retention pass in-process, on :class:`nbplane.testing.FakeExecutor`: old
executions of a deployed job go with their runs and logs, as the deployed version's config.ini
says over NBPLANE_RETENTION_*, the executor is asked to discard them, and an execution that
still runs stays however old. The SQL itself: tests/integration/test_retention.py."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbplane.deployments.executors.local import LocalExecutor
from nbplane.deployments.models import (
    CreateJob,
    ExecuteJob,
    JobExecutionStatus,
    ListJobExecutionsQuery,
)
from nbplane.deployments.reconciler import DeploymentReconciler
from nbplane.deployments.service import DeploymentService
from nbplane.errors import InvalidInput
from nbplane.settings import Settings
from nbplane.store import Store, open_store
from tests.unit.deployed import ALICE, JOB, TEAM, deploy_fake_job


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_the_loop_prunes_old_executions_as_the_deployed_version_says(
    tmp_path: Path,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        job_server_url="http://127.0.0.1:9",
        retention_keep_runs=10,
        retention_keep_outputs=0,
    )
    service, executor = deploy_fake_job(
        store, settings, tmp_path, monkeypatch, "[retention]\nkeep_runs = 2\n"
    )
    ids: list[str] = []

    async def steps(plane: DeploymentReconciler) -> float:
        for _ in range(5):
            ids.append(service.execute(ALICE, TEAM, JOB, ExecuteJob()).id)
            await plane.watch()  # started
            time.sleep(0.002)  # distinct creation times
        for ticket, execution in zip(executor.tickets[1:], ids[1:], strict=True):
            service.deployments.append_log(execution, "hello\n")
            service.lifecycle.finish(execution, JobExecutionStatus.COMPLETED, None)
            executor.finish(ticket)
        await plane.watch()
        return await plane.apply_retention()

    async def main() -> float:
        return await steps(DeploymentReconciler(service))

    with caplog.at_level(logging.INFO, logger="nbplane.deployments"):
        interval = asyncio.run(main())

    kept = [
        e.id
        for e in service.executions(
            ALICE, TEAM, JOB, ListJobExecutionsQuery(limit=100, offset=0)
        ).items
    ]
    # the newest two (config.ini: 2, over the setting's 10), and the oldest, still running
    assert sorted(kept) == sorted([ids[0], ids[3], ids[4]])
    assert service.execution(ALICE, TEAM, JOB, ids[0]).status == JobExecutionStatus.RUNNING
    assert sorted(executor.discarded) == sorted(ids[1:3])
    assert service.deployments.read_log(ids[4], 0)[0] == "hello\n"
    assert f"{TEAM}/{JOB}: removed 2 executions" in caplog.text
    assert interval == settings.retention_interval_seconds


def test_an_upload_with_a_bad_retention_is_refused(tmp_path: Path, store: Store) -> None:
    """A zip made by hand: `job export` refuses such a job before it is packed."""
    service = DeploymentService(store, Settings(home=tmp_path / "home"), "local")
    service.create_job(ALICE, TEAM, CreateJob(name=JOB))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("10_main.sql", "SELECT 1")
        bundle.writestr("config.ini", "[retention]\nkeep_runs = many\n")
    with pytest.raises(InvalidInput) as raised:
        service.upload(ALICE, TEAM, JOB, archive.getvalue())
    assert raised.value.message == (
        "the archive is not a job: config.ini: [retention] keep_runs must be a whole number "
        "of at least 0 (0 keeps forever), not 'many'"
    )
    assert raised.value.fields["field"] == "body"


def test_the_local_executor_discards_an_executions_directory(tmp_path: Path) -> None:
    executor = LocalExecutor(Settings(home=tmp_path, sandbox="none"))
    work = tmp_path / "executions" / "abc" / "work"
    work.mkdir(parents=True)
    (work / "scratch.csv").write_text("1,2\n")

    asyncio.run(executor.discard("abc"))
    asyncio.run(executor.discard("abc"))  # gone already: nothing to do

    assert not (tmp_path / "executions" / "abc").exists()
