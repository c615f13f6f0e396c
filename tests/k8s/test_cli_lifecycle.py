"""A job's whole life through the CLI alone, with each executor on each database: created,
deployed with a schedule, executed by the schedule, watched, executed by hand, cancelled."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import BACKENDS, database_url, write_notebook
from tests.integration.server_fixture import nbplane, running_server
from tests.integration.test_cli_control import Cli
from tests.integration.test_cli_control import client as cli_for
from tests.k8s.cluster import KubeCluster


@pytest.fixture(
    params=[
        "local",
        # the cluster is asked for inside the fixture: say its group, so its worker starts it
        pytest.param("kubernetes", marks=pytest.mark.xdist_group("tests/k8s")),
    ]
)
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def environment(
    request: pytest.FixtureRequest,
    executor: str,
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str]]]:
    with database_url(request.param, tmp_path) as url:
        store = url if url.startswith("postgresql") else f"sqlite:///{tmp_path / 'nbplane.db'}"
        variables = {"NBPLANE_JOB_EXECUTOR": executor, "NBPLANE_DB_URL": url}
        if executor == "kubernetes":
            cluster: KubeCluster = request.getfixturevalue("kube_cluster")
            variables.update(
                {
                    "NBPLANE_KUBECONFIG": str(cluster.kubeconfig),
                    "NBPLANE_KUBERNETES_NAMESPACE": request.getfixturevalue("kube_namespace"),
                    "NBPLANE_KUBERNETES_PYTHON": sys.executable,
                }
            )
        yield store, variables


def executions(cli: Cli, job: str) -> list[dict[str, Any]]:
    return list(cli.json("job", "executions", job)["items"])


def wait_until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_job_life_through_the_cli(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    executor: str,
    environment: tuple[str, dict[str, str]],
) -> None:
    store, variables = environment
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with running_server(notebooks, tmp_path / "server", store, environment=variables) as server:
        nbplane("user", "create", "carol", "--team", "analytics", environment=server.environment)
        token = nbplane(
            "token", "create", "carol-cli", "--user", "carol", environment=server.environment
        ).stdout.strip()
        carol = cli_for(tmp_path / "carol")
        carol.run("login", "--url", server.url, "--token", token)
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        carol.run("job", "create", "nightly", "--team", "analytics", "--directory", str(jobs))

        carol.run("job", "deploy", str(jobs / "nightly"), "--schedule", "*/2 * * * * *")
        scheduled = wait_until(
            "a scheduled execution completes",
            lambda: [
                e
                for e in executions(carol, "nightly")
                if e["started_by"] == "schedule" and e["status"] == "completed"
            ],
        )
        carol.run("job", "deploy", str(jobs / "nightly"), "--disable")
        shown = carol.json("job", "show", "nightly")
        assert shown["deployment"]["executor"] == executor
        assert shown["deployment"]["enabled"] is False
        assert "hello, world" in carol.run("job", "logs", "nightly", scheduled[0]["id"]).stdout

        write_notebook(
            jobs / "nightly" / "20_wait.ipynb",
            ["import time\nprint('waiting', flush=True)\ntime.sleep(120)"],
        )
        carol.run("job", "deploy", str(jobs / "nightly"))
        carol.run("job", "execute", "nightly")
        running = wait_until(
            "the manual execution is running and logging",
            lambda: [
                e
                for e in executions(carol, "nightly")
                if e["started_by"] == "user:carol"
                and e["status"] == "running"
                and "waiting" in carol.run("job", "logs", "nightly", e["id"]).stdout
            ],
        )
        carol.run("job", "cancel", "nightly", running[0]["id"])
        final = wait_until(
            "the execution is cancelled",
            lambda: [
                e
                for e in executions(carol, "nightly")
                if e["id"] == running[0]["id"] and e["status"] == "cancelled"
            ],
        )
        assert final[0]["reason"] == "cancelled"
        if executor == "kubernetes":
            batch = client.BatchV1Api(request.getfixturevalue("kube_api"))
            wait_until(
                "cancel deletes the Kubernetes Job",
                lambda: (
                    not batch.list_namespaced_job(
                        variables["NBPLANE_KUBERNETES_NAMESPACE"],
                        label_selector=f"nbplane.io/execution={running[0]['id']}",
                    ).items
                ),
            )
        statuses = {e["status"] for e in executions(carol, "nightly")}
        assert statuses <= {"completed", "cancelled"}, statuses
