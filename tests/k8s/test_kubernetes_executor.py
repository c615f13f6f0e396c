"""The Kubernetes job executor against a real API server: the Job and Secret it makes, how it
reads success, failure and a deadline, stop, logs and clear errors; then a real ``nbplane serve``
whose deployed jobs run as Kubernetes Jobs (execute, cancel, schedule)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus
from nbplane.deployments.executors.kubernetes import KubernetesExecutor
from nbplane.errors import ConfigError
from nbplane.settings import Settings
from tests.conftest import write_notebook
from tests.integration.server_fixture import Server, running_server
from tests.k8s.cluster import KubeCluster, wait_deleted, wait_for
from tests.security.hostile import HOSTILE, attempts_that_succeeded, digest

SECRET_ENVIRONMENT = {
    "NBPLANE_URL": "http://127.0.0.1:1",
    "NBPLANE_EXECUTION_TOKEN": "nbx_not-a-real-credential",
}


@pytest.fixture
def settings(kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kubeconfig=kube_cluster.kubeconfig,
        kubernetes_namespace=kube_namespace,
        kubernetes_image="python:3.11",
        db_url=None,
    )


def ticket(
    code: str, *, resources: dict[str, str] | None = None, timeout: float = 120
) -> ExecutionTicket:
    return ExecutionTicket(
        execution_id=str(uuid.uuid4()),
        team="sales.eu",
        job="daily_report",
        version="ab" * 32,
        resources=resources or {},
        timeout=timeout,
        command=[sys.executable, "-c", code],
        environment=dict(SECRET_ENVIRONMENT),
    )


def run(scenario: Any) -> Any:
    """Each test drives the executor from one event loop, as the monitor does."""
    return asyncio.run(scenario)


async def ended(
    executor: KubernetesExecutor, state: dict[str, Any], timeout: float = 60
) -> ExecutorStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await executor.poll(state)
        if not status.running:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{state} still running after {timeout} s")


async def started_and_ended(
    settings: Settings, code: str, **options: Any
) -> tuple[dict[str, Any], ExecutorStatus, str | None]:
    executor = KubernetesExecutor(settings)
    try:
        state = await executor.start(ticket(code, **options))
        status = await ended(executor, state)
        return state, status, await executor.logs(state)
    finally:
        await executor.close()


def test_job_and_secret_it_creates(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    """Labels, no retries, the deadline, resources as requests and limits, and the settings
    only in a Secret that the Job owns."""
    job_ticket = ticket("pass", resources={"cpu": "250m", "memory": "64Mi"}, timeout=90.5)

    async def scenario() -> dict[str, Any]:
        executor = KubernetesExecutor(settings)
        try:
            return await executor.start(job_ticket)
        finally:
            await executor.close()

    state = run(scenario())

    name = state["job"]
    assert state == {"namespace": kube_namespace, "job": name, "secret": name}
    assert name.startswith("nbplane-sales-eu-daily-report-") and len(name) <= 63
    assert name.endswith(job_ticket.execution_id[:8])
    job = client.BatchV1Api(kube_api).read_namespaced_job(name, kube_namespace)
    labels = {
        "app.kubernetes.io/managed-by": "nbplane",
        "nbplane.io/team": "sales.eu",
        "nbplane.io/job": "daily_report",
        "nbplane.io/execution": job_ticket.execution_id,
        "nbplane.io/attempt": "1",
    }
    assert job.metadata and job.spec and job.spec.template.spec and job.spec.template.metadata
    assert job.metadata.labels == labels
    assert labels.items() <= (job.spec.template.metadata.labels or {}).items()
    assert job.spec.backoff_limit == 0 and job.spec.active_deadline_seconds == 91
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never"
    (container,) = pod.containers
    assert container.image == "python:3.11" and container.command == job_ticket.command
    assert container.resources
    assert (
        container.resources.requests
        == container.resources.limits
        == {"cpu": "250m", "memory": "64Mi"}
    )
    assert {variable.name: variable.value for variable in container.env or []} == {
        "NBPLANE_EXECUTION_ID": job_ticket.execution_id,
        "PYTHONUNBUFFERED": "1",
    }
    (source,) = container.env_from or []
    assert source.secret_ref and source.secret_ref.name == state["secret"]

    secret = client.CoreV1Api(kube_api).read_namespaced_secret(state["secret"], kube_namespace)
    assert {
        key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()
    } == SECRET_ENVIRONMENT
    assert secret.metadata and secret.metadata.owner_references
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Job", name, job.metadata.uid)


def test_success_sees_the_secret_environment_and_reads_back_the_log(settings: Settings) -> None:
    code = (
        "import os; print(os.environ['NBPLANE_URL'], os.environ['NBPLANE_EXECUTION_TOKEN'],"
        " os.environ['NBPLANE_EXECUTION_ID'])"
    )

    state, status, log = run(started_and_ended(settings, code))

    assert status == ExecutorStatus(running=False, exit_code=0)
    assert log is not None
    url, credential, execution = log.split()
    assert (url, credential) == (
        SECRET_ENVIRONMENT["NBPLANE_URL"],
        SECRET_ENVIRONMENT["NBPLANE_EXECUTION_TOKEN"],
    )
    assert state["job"].endswith(execution[:8])


def test_failure_carries_the_exit_code_and_the_log(settings: Settings) -> None:
    code = "import sys; print('about to fail', flush=True); sys.exit(3)"

    _, status, log = run(started_and_ended(settings, code))

    assert status == ExecutorStatus(running=False, exit_code=3, reason=None)
    assert log == "about to fail\n"


def test_deadline_ends_a_job_nobody_stops(settings: Settings) -> None:
    """activeDeadlineSeconds holds even when no server is watching."""
    _, status, _ = run(started_and_ended(settings, "import time; time.sleep(600)", timeout=1))

    assert not status.running
    assert status.reason and status.reason.startswith("DeadlineExceeded"), status


def test_stop_kills_the_process_and_removes_job_pod_and_secret(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    core, batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
    executor = KubernetesExecutor(settings)

    async def started() -> tuple[dict[str, Any], int]:
        state = await executor.start(
            ticket("import os, time; print(os.getpid(), flush=True); time.sleep(600)")
        )
        deadline = time.monotonic() + 60
        while not (log := await executor.logs(state)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert log, "the sleeper never printed its pid"
        assert (await executor.poll(state)).running
        return state, int(log)

    async def stopped(state: dict[str, Any]) -> tuple[ExecutorStatus, str | None]:
        await executor.stop(state)
        await executor.stop(state)  # a Job that is gone already is fine
        return await executor.poll(state), await executor.logs(state)

    try:
        state, pid = run(started())
        os.kill(pid, 0)
        pod = wait_for(
            core.list_namespaced_pod,
            lambda _: True,
            namespace=kube_namespace,
            label_selector=f"job-name={state['job']}",
        )

        status, _ = run(stopped(state))
    finally:
        run(executor.close())

    assert status == ExecutorStatus(running=False, reason="the Kubernetes Job is gone")
    wait_deleted(core.list_namespaced_pod, pod.metadata.name, namespace=kube_namespace)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    wait_deleted(core.list_namespaced_secret, state["secret"], namespace=kube_namespace)
    assert not batch.list_namespaced_job(kube_namespace).items


def test_missing_namespace_is_a_clear_error(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, kubeconfig=kube_cluster.kubeconfig, kubernetes_namespace="no-such-namespace"
    )

    with pytest.raises(ConfigError) as caught:
        run(started_and_ended(settings, "pass"))

    assert caught.value.message == (
        "Kubernetes namespace 'no-such-namespace' not found (NBPLANE_KUBERNETES_NAMESPACE)"
    )


def test_rejected_job_leaves_no_secret(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        run(started_and_ended(settings, "pass", resources={"cpu": "lots"}))

    assert caught.value.message.startswith(
        f"Kubernetes could not create a Job in namespace '{kube_namespace}': "
    )
    assert "cpu" in caught.value.message
    secrets = client.CoreV1Api(kube_api).list_namespaced_secret(
        kube_namespace, label_selector="app.kubernetes.io/managed-by=nbplane"
    )
    assert not secrets.items


def test_unusable_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "missing.kubeconfig"
    settings = Settings(home=tmp_path, kubeconfig=kubeconfig)

    with pytest.raises(ConfigError) as caught:
        run(started_and_ended(settings, "pass"))

    assert caught.value.message.startswith(
        f"cannot load the Kubernetes configuration from kubeconfig {kubeconfig}: "
    )


# A real server whose deployed jobs run on Kubernetes.

TEAM = "sales"


@pytest.fixture
def server(kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path) -> Iterator[Server]:
    """SQLite works as the store because the test node runs pods as local processes."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    environment = {
        "NBPLANE_JOB_EXECUTOR": "kubernetes",
        "NBPLANE_KUBECONFIG": str(kube_cluster.kubeconfig),
        "NBPLANE_KUBERNETES_NAMESPACE": kube_namespace,
        "NBPLANE_KUBERNETES_PYTHON": sys.executable,
        "NBPLANE_DB_URL": f"sqlite:///{tmp_path / 'warehouse.sqlite'}",
    }
    with running_server(
        notebooks,
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'nbplane.db'}",
        environment=environment,
    ) as running:
        yield running


def nbplane_cli(server: Server, *args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "nbplane", *args],
        env=server.environment,
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def deploy(server: Server, name: str, archive: bytes, **deployment: Any) -> str:
    """Create the job, upload the archive, deploy it; returns the job's URL path."""
    job = f"/api/v1/teams/{TEAM}/jobs/{name}"
    created = server.client.post(f"/api/v1/teams/{TEAM}/jobs", json={"name": name})
    assert created.status_code == 201, created.text
    uploaded = server.client.post(
        f"{job}/versions", content=archive, headers={"content-type": "application/zip"}
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    deployed = server.client.put(f"{job}/deployment", json=deployment)
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["executor"] == "kubernetes"
    return job


def created_job_archive(server: Server, tmp_path: Path) -> bytes:
    """The example job `nbplane job create` makes, packed by `nbplane job export`."""
    nbplane_cli(server, "job", "create", "daily", "--team", TEAM, cwd=tmp_path)
    nbplane_cli(server, "job", "export", "daily", "--to", "daily.zip", cwd=tmp_path)
    return (tmp_path / "daily.zip").read_bytes()


def notebook_archive(tmp_path: Path, name: str, *cells: str) -> bytes:
    from nbplane.jobs.scaffold import export_job

    directory = tmp_path / name
    directory.mkdir()
    write_notebook(directory / "10_main.ipynb", list(cells))
    export_job(directory, tmp_path / f"{name}.zip")
    return (tmp_path / f"{name}.zip").read_bytes()


def execute(server: Server, job: str) -> str:
    started = server.client.post(f"{job}/executions", json={})
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def kubernetes_jobs(
    kube_api: client.ApiClient, namespace: str, execution_id: str
) -> list[client.V1Job]:
    jobs: list[client.V1Job] = (
        client.BatchV1Api(kube_api)
        .list_namespaced_job(namespace, label_selector=f"nbplane.io/execution={execution_id}")
        .items
    )
    return jobs


def wait_for_log(
    server: Server,
    job: str,
    execution: str,
    text: str,
    kube_api: client.ApiClient,
    namespace: str,
    timeout: float = 180,
) -> None:
    """Wait until the execution's log shows ``text``; a pod starts in seconds alone but can
    take a minute on a machine busy with the rest of the suite. Fails at once if the execution
    ends first, and says what Kubernetes saw either way."""
    deadline = time.monotonic() + timeout
    while text not in server.client.get(f"{job}/executions/{execution}/logs").text:
        record = server.client.get(f"{job}/executions/{execution}").json()
        if record["status"] not in ("queued", "running") or time.monotonic() > deadline:
            pods = client.CoreV1Api(kube_api).list_namespaced_pod(
                namespace, label_selector=f"nbplane.io/execution={execution}"
            )
            events = client.CoreV1Api(kube_api).list_namespaced_event(namespace)
            pytest.fail(
                f"{text!r} never reached the log of execution {execution}: {record}\n"
                f"pods: {[(p.metadata.name, p.status.phase) for p in pods.items]}\n"
                f"events: {[(e.involved_object.name, e.reason, e.message) for e in events.items]}"
            )
        time.sleep(0.2)


def test_server_executes_a_deployed_job_as_a_kubernetes_job(
    server: Server, tmp_path: Path, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    job = deploy(server, "daily", created_job_archive(server, tmp_path))

    execution = execute(server, job)
    record = server.client.get(f"{job}/executions/{execution}", params={"wait": 60}).json()

    assert record["status"] == "completed", record
    assert record["executor"] == "kubernetes"
    assert [step["status"] for step in record["steps"]] == ["succeeded"] * 3
    log = server.client.get(f"{job}/executions/{execution}/logs").text
    assert "hello, world" in log and "completed" in log
    wait_for(
        client.BatchV1Api(kube_api).list_namespaced_job,  # the pod ends just after
        lambda found: found.status.succeeded == 1,
        namespace=kube_namespace,
        label_selector=f"nbplane.io/execution={execution}",
    )


def test_cancel_deletes_the_kubernetes_job(
    server: Server, tmp_path: Path, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    job = deploy(
        server,
        "sleepy",
        notebook_archive(
            tmp_path, "sleepy", "import time\nprint('started', flush=True)\ntime.sleep(600)"
        ),
    )
    execution = execute(server, job)
    wait_for_log(server, job, execution, "started", kube_api, kube_namespace)
    assert kubernetes_jobs(kube_api, kube_namespace, execution)

    cancelled = server.client.post(f"{job}/executions/{execution}/cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert not kubernetes_jobs(kube_api, kube_namespace, execution)
    pods = client.CoreV1Api(kube_api).list_namespaced_pod
    deadline = time.monotonic() + 60
    while pods(kube_namespace, label_selector=f"nbplane.io/execution={execution}").items:
        assert time.monotonic() < deadline, "the cancelled execution's pod is still there"
        time.sleep(0.2)


def test_schedule_starts_executions_on_kubernetes(server: Server, tmp_path: Path) -> None:
    job = deploy(
        server,
        "ticker",
        notebook_archive(tmp_path, "ticker", "print('tick')"),
        schedule="*/2 * * * * *",
    )
    deadline = time.monotonic() + 120
    while True:
        items = server.client.get(f"{job}/executions").json()["items"]
        done = [item for item in items if item["status"] == "completed"]
        if len(done) >= 2:
            break
        assert time.monotonic() < deadline, items
        assert not [item for item in items if item["status"] == "failed"], items
        time.sleep(0.2)
    server.client.patch(f"{job}/deployment", json={"enabled": False})

    assert all(item["started_by"] == "schedule" for item in done)
    assert len({item["scheduled_for"] for item in done}) == len(done)
    assert "tick" in server.client.get(f"{job}/executions/{done[0]['id']}/logs").text


def test_a_hostile_job_on_kubernetes_holds_only_its_credential(
    server: Server, tmp_path: Path, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    """The pod gets the server's URL and its execution's credential in its Secret, no service
    account token, and with them reaches nothing but its own job."""
    first = deploy(server, "daily", created_job_archive(server, tmp_path))
    done = server.client.get(
        f"{first}/executions/{execute(server, first)}", params={"wait": 60}
    ).json()
    assert done["status"] == "completed", done
    job = deploy(server, "hostile", notebook_archive(tmp_path, "hostile", HOSTILE))
    assert (
        server.client.patch(
            f"{job}/secrets", json={"values": {"mine": "own-secret-42"}}
        ).status_code
        == 200
    )
    started = server.client.post(
        f"{job}/executions",
        json={
            "arguments": {
                "alice_run": done["steps"][0]["run_id"],
                "expected": digest("own-secret-42"),
            }
        },
    )
    assert started.status_code == 201, started.text
    execution = started.json()["id"]
    kube_job = wait_for(
        client.BatchV1Api(kube_api).list_namespaced_job,
        lambda found: True,
        namespace=kube_namespace,
        label_selector=f"nbplane.io/execution={execution}",
    )
    assert kube_job.spec.template.spec.automount_service_account_token is False
    secret = client.CoreV1Api(kube_api).read_namespaced_secret(
        kube_job.metadata.name, kube_namespace
    )
    assert secret.data is not None
    assert sorted(secret.data) == ["NBPLANE_EXECUTION_TOKEN", "NBPLANE_URL"]
    record = server.client.get(f"{job}/executions/{execution}", params={"wait": 60}).json()
    log = server.client.get(f"{job}/executions/{execution}/logs").text
    assert record["status"] == "completed", log
    assert attempts_that_succeeded(log) == {}
