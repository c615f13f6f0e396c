"""The Kubernetes session launcher against a real API server, the node stand-in running the real
``jupyter-lab``: the StatefulSet, Service, Secret and volume it makes, a server that answers
with its token and sees its environment, hibernate and resume on the same files, stop and purge,
a server that fails to start, a new launcher taking over, and the image check against a registry
served on loopback.

On the loopback cluster every pod runs on 127.0.0.1, so sessions get their own port from a range
and are reached at ``http://127.0.0.1:{port}/`` instead of their Service's DNS name."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from kubernetes import client

from nbplane.errors import InvalidInput
from nbplane.sessions.launchers import launcher_named
from nbplane.sessions.launchers.base import (
    LaunchPhase,
    LaunchStatus,
    LaunchStep,
    SessionSpec,
    StepStatus,
)
from nbplane.sessions.launchers.kubernetes import KubernetesLauncher
from nbplane.sessions.launchers.kubernetes.status import describe
from nbplane.settings import Settings
from tests.integration.server_fixture import stop, wait_healthy
from tests.integration.session_helpers import (
    SESSIONS,
    as_user,
    create,
    jupyter,
    kernel_run,
    run_in_kernel,
    session_server,
    user_token,
    wait_status,
)
from tests.k8s.cluster import KubeCluster, free_port, wait_deleted, wait_for

JUPYTER_LAB = str(Path(sys.executable).with_name("jupyter-lab"))
ENVIRONMENT = {"NBPLANE_URL": "http://127.0.0.1:1/", "WAREHOUSE_PASSWORD": "s3cret-" + "x" * 8}


@pytest.fixture
def settings(kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kubeconfig=kube_cluster.kubeconfig,
        kubernetes_namespace=kube_namespace,
        session_launcher="kubernetes",
        session_command=JUPYTER_LAB,
        # Outside Linux's ephemeral ports (32768-60999), so nothing else takes them meanwhile.
        kubernetes_session_ports="20000-29999",
        kubernetes_session_url_template="http://127.0.0.1:{port}/",
    )


def session(**changes: Any) -> SessionSpec:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "user": "Alice.Smith@example.com",
        "resource_class": "small",
        "cpu": "500m",
        "memory": "1Gi",
        "image": None,
        "token": secrets.token_hex(24),
        "environment": dict(ENVIRONMENT),
    }
    return SessionSpec(**(values | changes))


def run(scenario: Any) -> Any:
    return asyncio.run(scenario)


async def until(
    launcher: KubernetesLauncher,
    spec: SessionSpec,
    state: dict[str, Any],
    phase: LaunchPhase,
    timeout: float = 120,
) -> LaunchStatus:
    """Poll as the session service does until the phase (running: and ready) or a failure."""
    deadline = time.monotonic() + timeout
    status = await launcher.poll(spec, state)
    while status.phase is not LaunchPhase.FAILED and (
        status.phase is not phase or (phase is LaunchPhase.RUNNING and not status.ready)
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"not {phase} after {timeout} s: {status}")
        await asyncio.sleep(0.2)
        status = await launcher.poll(spec, state)
    return status


def kubernetes_launcher(settings: Settings) -> KubernetesLauncher:
    launcher = launcher_named("kubernetes", settings)
    assert isinstance(launcher, KubernetesLauncher)
    return launcher


async def start_and_read_logs(
    settings: Settings, spec: SessionSpec, tail: int
) -> tuple[LaunchStatus, str]:
    """Start the session and poll until it is ready or failed; that status and the last
    ``tail`` lines of its logs. The session is purged after."""
    launcher = kubernetes_launcher(settings)
    try:
        state = await launcher.start(spec)
        status = await until(launcher, spec, state, LaunchPhase.RUNNING)
        logs = await launcher.logs(spec, state, tail)
        await launcher.stop(spec, state, purge=True)
        return status, logs
    finally:
        await launcher.close()


async def api_status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}api/status", headers=headers)).status_code


async def kernel_output(url: str, token: str, code: str) -> str:
    """What ``code`` printed in a new kernel of the server (the session tests' helper)."""
    return await asyncio.to_thread(kernel_run, url, {"Authorization": f"token {token}"}, code)


def decoded(secret: client.V1Secret) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def test_start_makes_statefulset_service_secret_and_volume_and_the_server_answers(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    """Labels (the user name made a label value), resources as requests and limits, the port
    and the workspace, credentials only in the Secret; the server answers with its token only
    and its kernels see the environment."""
    spec = session(directory="reports")

    async def scenario() -> tuple[dict[str, Any], LaunchStatus, str, int, int]:
        launcher = kubernetes_launcher(settings)
        try:
            state = await launcher.start(spec)
            status = await until(launcher, spec, state, LaunchPhase.RUNNING)
            assert status.phase is LaunchPhase.RUNNING, status
            url = state["url"]
            printed = await kernel_output(
                url,
                spec.token,
                "import os; print(os.environ['WAREHOUSE_PASSWORD'], "
                "os.environ['NBPLANE_URL'], os.environ['HOME'], os.getcwd())",
            )
            return (
                state,
                status,
                printed,
                await api_status(url, spec.token),
                await api_status(url, None),
            )
        finally:
            await launcher.close()

    state, status, printed, with_token, without_token = run(scenario())

    name, port = state["name"], state["port"]
    assert state == {
        "namespace": kube_namespace,
        "name": name,
        "port": port,
        "url": f"http://127.0.0.1:{port}/sessions/{spec.id}/",
    }
    assert 20000 <= port <= 29999
    assert status == LaunchStatus(
        LaunchPhase.RUNNING,
        url=state["url"],
        ready=True,
        steps=[
            LaunchStep(step, StepStatus.DONE)
            for step in ("volume", "scheduled", "image", "container", "ready")
        ],
    )
    assert (with_token, without_token) == (200, 403)
    password, nbplane_url, home, cwd = printed.split()
    assert (password, nbplane_url) == (
        ENVIRONMENT["WAREHOUSE_PASSWORD"],
        ENVIRONMENT["NBPLANE_URL"],
    )
    assert home == cwd  # the workspace volume's directory on the node stands in for /home/jovyan

    labels = {
        "app.kubernetes.io/managed-by": "nbplane",
        "app.kubernetes.io/component": "session",
        "app.kubernetes.io/instance": name,
        "nbplane.io/session": spec.id,
        "nbplane.io/user": "alice.smith-example.com",
    }
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    statefulset = apps.read_namespaced_stateful_set(name, kube_namespace)
    assert name.startswith("nbplane-alice-smith-example-") and len(name) <= 52
    assert statefulset.metadata.labels == labels
    assert statefulset.metadata.annotations is not None
    assert statefulset.metadata.annotations["nbplane.io/user-name"] == spec.user
    assert statefulset.spec.replicas == 1
    pod_spec = statefulset.spec.template.spec
    assert labels.items() <= statefulset.spec.template.metadata.labels.items()
    assert pod_spec.automount_service_account_token is False
    assert pod_spec.enable_service_links is False
    (pod,) = core.list_namespaced_pod(
        kube_namespace, label_selector=f"nbplane.io/session={spec.id}"
    ).items
    assert pod.spec.automount_service_account_token is False, "as the API server stored it"
    assert not [volume for volume in pod.spec.volumes or [] if volume.secret or volume.projected]
    (container,) = pod_spec.containers
    assert container.image == settings.kubernetes_session_image
    assert (
        container.resources.requests
        == container.resources.limits
        == {"cpu": "500m", "memory": "1Gi"}
    )
    assert container.command == [
        JUPYTER_LAB,
        "--no-browser",
        "--allow-root",
        "--ip=0.0.0.0",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url=/sessions/{spec.id}/",
        "--ServerApp.root_dir=/home/jovyan",
        "--LabApp.default_url=/lab/tree/reports",
    ]
    assert [(p.name, p.container_port) for p in container.ports] == [("http", port)]
    assert container.env_from is not None
    (source,) = container.env_from
    assert source.secret_ref.name == name
    assert container.volume_mounts is not None
    (mount,) = container.volume_mounts
    assert (mount.name, mount.mount_path) == ("workspace", "/home/jovyan")

    secret = core.read_namespaced_secret(name, kube_namespace)
    assert decoded(secret) == {**ENVIRONMENT, "JUPYTER_TOKEN": spec.token}
    assert [(o.kind, o.name) for o in secret.metadata.owner_references] == [("StatefulSet", name)]
    service = core.read_namespaced_service(name, kube_namespace)
    assert service.metadata.labels == labels
    assert service.spec.selector == {
        "app.kubernetes.io/managed-by": "nbplane",
        "app.kubernetes.io/instance": name,
    }
    assert [(p.port, p.target_port) for p in service.spec.ports] == [(port, "http")]
    claim = core.read_namespaced_persistent_volume_claim(f"workspace-{name}-0", kube_namespace)
    assert claim.spec.resources.requests == {"storage": settings.kubernetes_session_storage}
    assert claim.status.phase == "Bound"

    pod = core.read_namespaced_pod(f"{name}-0", kube_namespace)
    assert labels.items() <= pod.metadata.labels.items()
    everything = json.dumps(kube_api.sanitize_for_serialization(pod)) + json.dumps(
        kube_api.sanitize_for_serialization(statefulset)
    )
    for credential in (spec.token, ENVIRONMENT["WAREHOUSE_PASSWORD"]):
        assert credential not in everything


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_hibernate_keeps_the_files_and_resume_comes_back_in_a_new_launcher(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    """Scaled to zero: the pod and its process go, the volume stays. A launcher that knows only
    the recorded state (a restarted nbplane server) resumes it on the same files, then stops
    it: everything but the volume goes, and purge takes the volume too."""
    spec = session()
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)

    async def first_life() -> tuple[dict[str, Any], LaunchStatus, int]:
        launcher = kubernetes_launcher(settings)
        try:
            state = await launcher.start(spec)
            running = await until(launcher, spec, state, LaunchPhase.RUNNING)
            assert running.phase is LaunchPhase.RUNNING, running
            async with httpx.AsyncClient(headers={"Authorization": f"token {spec.token}"}) as http:
                response = await http.put(
                    f"{state['url']}api/contents/notes.txt",
                    json={"type": "file", "format": "text", "content": "kept across hibernation"},
                )
                response.raise_for_status()
            state = await launcher.hibernate(spec, state)
            status = await until(launcher, spec, state, LaunchPhase.STOPPED)
            return state, status, state["port"]
        finally:
            await launcher.close()

    state, hibernated, port = run(first_life())

    assert hibernated.phase is LaunchPhase.STOPPED and hibernated.reason == "hibernated"
    name = state["name"]
    assert apps.read_namespaced_stateful_set(name, kube_namespace).spec.replicas == 0
    wait_deleted(core.list_namespaced_pod, f"{name}-0", namespace=kube_namespace)
    assert not port_open(port)
    claim = f"workspace-{name}-0"
    assert core.read_namespaced_persistent_volume_claim(claim, kube_namespace).status.phase == (
        "Bound"
    )

    resumed_spec = session(
        id=spec.id, token=secrets.token_hex(24), environment={**ENVIRONMENT, "ADDED_GRANT": "yes"}
    )

    async def second_life() -> tuple[dict[str, Any], LaunchStatus, str, str, str]:
        launcher = kubernetes_launcher(settings)  # knows the session by its recorded state only
        try:
            again = await launcher.start(resumed_spec)
            status = await until(launcher, resumed_spec, again, LaunchPhase.RUNNING)
            assert status.phase is LaunchPhase.RUNNING, status
            async with httpx.AsyncClient(
                headers={"Authorization": f"token {resumed_spec.token}"}
            ) as http:
                response = await http.get(f"{again['url']}api/contents/notes.txt")
                response.raise_for_status()
            printed = await kernel_output(
                again["url"], resumed_spec.token, "import os; print(os.environ['ADDED_GRANT'])"
            )
            logs = await launcher.logs(resumed_spec, state, 200)
            await launcher.stop(resumed_spec, state, purge=False)
            return again, status, response.json()["content"], printed, logs
        finally:
            await launcher.close()

    again, resumed, content, printed, logs = run(second_life())

    assert again == state  # same StatefulSet, port and URL
    assert resumed.ready and resumed.phase is LaunchPhase.RUNNING
    assert content == "kept across hibernation"
    assert printed == "yes\n"
    assert "Jupyter Server" in logs and resumed_spec.token not in logs
    for list_call in (
        apps.list_namespaced_stateful_set,
        core.list_namespaced_service,
        core.list_namespaced_secret,
        core.list_namespaced_pod,
    ):
        wait_deleted(
            list_call,
            name if list_call != core.list_namespaced_pod else f"{name}-0",
            namespace=kube_namespace,
        )
    assert core.read_namespaced_persistent_volume_claim(claim, kube_namespace)

    async def gone() -> LaunchStatus:
        launcher = kubernetes_launcher(settings)
        try:
            status = await launcher.poll(resumed_spec, state)
            await launcher.stop(resumed_spec, state, purge=True)
            await launcher.stop(resumed_spec, state, purge=True)  # no error when gone
            return status
        finally:
            await launcher.close()

    stopped = run(gone())

    assert stopped == LaunchStatus(LaunchPhase.STOPPED, reason="its Kubernetes StatefulSet is gone")
    wait_deleted(core.list_namespaced_persistent_volume_claim, claim, namespace=kube_namespace)


def test_two_sessions_on_one_node_get_their_own_ports(settings: Settings) -> None:
    specs = [session(), session(user="bob")]

    async def scenario() -> list[dict[str, Any]]:
        launcher = kubernetes_launcher(settings)
        try:
            states = [await launcher.start(spec) for spec in specs]
            for spec, state in zip(specs, states, strict=True):
                running = await until(launcher, spec, state, LaunchPhase.RUNNING)
                assert running.phase is LaunchPhase.RUNNING, running
                assert await api_status(state["url"], spec.token) == 200
                await launcher.stop(spec, state, purge=True)
            return states
        finally:
            await launcher.close()

    first, second = run(scenario())

    assert first["port"] != second["port"] and first["name"] != second["name"]
    assert second["name"].startswith("nbplane-bob-")


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def test_repository_is_cloned_at_its_commit_once(settings: Settings, tmp_path: Path) -> None:
    """An init container clones the repository into the workspace at the commit; a resumed
    session keeps the clone and the user's changes; a clone that fails fails the session with
    git's words in the logs."""
    origin = tmp_path / "origin"
    (origin / "analysis").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=origin)
    (origin / "analysis" / "report.py").write_text("version = 1\n")
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "first", cwd=origin)
    first = git("rev-parse", "HEAD", cwd=origin)
    (origin / "analysis" / "report.py").write_text("version = 2\n")
    git("commit", "-q", "-am", "second", cwd=origin)
    spec = session(repository=f"file://{origin}", commit=first, directory="analysis")

    async def read(url: str, path: str) -> str:
        async with httpx.AsyncClient(headers={"Authorization": f"token {spec.token}"}) as http:
            response = await http.get(f"{url}api/contents/{path}")
            response.raise_for_status()
            content: str = response.json()["content"]
            return content

    async def scenario() -> tuple[LaunchStatus, str, str, str]:
        launcher = kubernetes_launcher(settings)
        try:
            state = await launcher.start(spec)
            status = await until(launcher, spec, state, LaunchPhase.RUNNING)
            assert status.phase is LaunchPhase.RUNNING, status
            cloned = await read(state["url"], "analysis/report.py")
            async with httpx.AsyncClient(headers={"Authorization": f"token {spec.token}"}) as http:
                response = await http.put(
                    f"{state['url']}api/contents/analysis/report.py",
                    json={"type": "file", "format": "text", "content": "version = 'mine'\n"},
                )
                response.raise_for_status()
            await launcher.hibernate(spec, state)
            await until(launcher, spec, state, LaunchPhase.STOPPED)
            state = await launcher.start(spec)
            resumed = await until(launcher, spec, state, LaunchPhase.RUNNING)
            assert resumed.phase is LaunchPhase.RUNNING, resumed
            kept = await read(state["url"], "analysis/report.py")
            pod = f"{state['name']}-0"
            core = client.CoreV1Api(await launcher.kube.api())
            clone_log = await asyncio.to_thread(
                core.read_namespaced_pod_log, pod, state["namespace"], container="repository"
            )
            await launcher.stop(spec, state, purge=True)
            return status, cloned, kept, clone_log
        finally:
            await launcher.close()

    status, cloned, kept, clone_log = run(scenario())

    assert [step.name for step in status.steps] == [
        "volume",
        "scheduled",
        "image",
        "repository",
        "container",
        "ready",
    ]
    assert cloned == "version = 1\n"
    assert kept == "version = 'mine'\n"
    assert clone_log == "nbplane: the workspace has its repository already\n"

    broken = session(repository=f"file://{tmp_path / 'nowhere'}")
    failed, logs = run(start_and_read_logs(settings, broken, 20))

    assert failed.phase is LaunchPhase.FAILED
    assert failed.reason == "cloning the repository failed (exit code 128)"
    steps = {step.name: step.status for step in failed.steps}
    assert (steps["repository"], steps["container"]) == (StepStatus.FAILED, StepStatus.PENDING)
    assert "nbplane: cloning the repository into the workspace" in logs
    assert "does not appear to be a git repository" in logs or "nowhere" in logs


def test_server_that_fails_to_start_fails_with_its_exit_code_and_output(
    settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "broken-lab"
    script.write_text(
        "#!/bin/sh\necho 'starting the lab'\n"
        "echo 'error: no module named notebook_shim' >&2\nexit 3\n"
    )
    script.chmod(0o755)
    settings = settings.model_copy(update={"session_command": str(script)})
    status, logs = run(start_and_read_logs(settings, session(), 50))

    assert status.phase is LaunchPhase.FAILED and not status.ready
    assert status.reason == "the server exited with code 3"  # its output is in the logs
    steps = {step.name: step for step in status.steps}
    assert steps["volume"].status is steps["scheduled"].status is StepStatus.DONE
    assert steps["container"] == LaunchStep(
        "container", StepStatus.FAILED, "the server exited with code 3"
    )
    # stdout and stderr come through separate pipes: their lines may swap
    assert sorted(logs.splitlines()[-2:]) == [
        "error: no module named notebook_shim",
        "starting the lab",
    ]


def test_missing_command_fails_in_words(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"session_command": str(tmp_path / "no-such-lab")})
    spec = session()

    async def scenario() -> LaunchStatus:
        launcher = kubernetes_launcher(settings)
        try:
            state = await launcher.start(spec)
            status = await until(launcher, spec, state, LaunchPhase.RUNNING)
            await launcher.stop(spec, state, purge=True)
            return status
        finally:
            await launcher.close()

    status = run(scenario())

    assert status.phase is LaunchPhase.FAILED
    assert status.reason and status.reason.startswith(
        "the server exited with code 128 (StartError)"
    )
    assert "no-such-lab" in status.reason


def pod_with(
    container_status: dict[str, Any] | None = None,
    *,
    conditions: list[dict[str, Any]] | None = None,
    limit: str | None = None,
) -> client.V1Pod:
    """A session pod as the API would return it (deserialized by the client itself)."""
    resources = {"limits": {"memory": limit}} if limit else {}
    body = {
        "metadata": {"name": "nbplane-x-0", "uid": "u1"},
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "notebook",
                    "image": "quay.io/jupyter/minimal-notebook:2024",
                    "resources": resources,
                }
            ],
        },
        "status": {
            "phase": "Pending",
            "conditions": conditions or [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [container_status] if container_status else [],
        },
    }
    with client.ApiClient() as api:
        pod: client.V1Pod = api.deserialize(json.dumps(body), "V1Pod", "application/json")
    return pod


def bound_claim() -> client.V1PersistentVolumeClaim:
    return client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(uid="c1"),
        status=client.V1PersistentVolumeClaimStatus(phase="Bound", capacity={"storage": "1Gi"}),
    )


def test_pull_errors_crashes_and_unschedulable_pods_read_in_words() -> None:
    """How pod states the node stand-in cannot produce (no images, one roomy node) read."""

    def waiting(reason: str, message: str) -> dict[str, Any]:
        return {
            "name": "notebook",
            "image": "x",
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }

    pull = describe(
        pod_with(waiting("ImagePullBackOff", 'Back-off pulling image "x"')), bound_claim(), []
    )
    assert pull.phase is LaunchPhase.FAILED
    assert pull.reason == (
        'image quay.io/jupyter/minimal-notebook:2024 cannot be pulled: Back-off pulling image "x"'
    )
    assert [s.status for s in pull.steps] == [
        StepStatus.DONE,
        StepStatus.DONE,
        StepStatus.FAILED,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]

    oom = describe(
        pod_with(
            {
                "name": "notebook",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            },
            limit="512Mi",
        ),
        bound_claim(),
        [],
    )
    assert oom.reason == (
        "the server exited with code 137 (OOMKilled: it needed more than its memory limit 512Mi)"
    )

    unschedulable = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
        }
    ]
    stuck = describe(pod_with(conditions=unschedulable), bound_claim(), [])
    assert stuck.phase is LaunchPhase.FAILED
    assert stuck.reason == "no node can run it: 0/3 nodes are available: 3 Insufficient cpu."
    scale_up = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="e"),
        reason="TriggeredScaleUp",
        message="pod triggered scale-up",
        involved_object=client.V1ObjectReference(kind="Pod"),
    )
    growing = describe(pod_with(conditions=unschedulable), bound_claim(), [scale_up])
    assert growing.phase is LaunchPhase.STARTING
    assert growing.steps[1] == LaunchStep(
        "scheduled", StepStatus.RUNNING, "0/3 nodes are available: 3 Insufficient cpu."
    )

    waiting_volume = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(uid="c1"),
        status=client.V1PersistentVolumeClaimStatus(phase="Pending"),
    )
    provisioning = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="v"),
        reason="ExternalProvisioning",
        message="waiting for a volume to be created",
        involved_object=client.V1ObjectReference(kind="PersistentVolumeClaim"),
    )
    pending = describe(None, waiting_volume, [provisioning])
    assert pending == LaunchStatus(
        LaunchPhase.STARTING,
        steps=[
            LaunchStep("volume", StepStatus.RUNNING, "waiting for a volume to be created"),
            *[
                LaunchStep(name, StepStatus.PENDING)
                for name in ("scheduled", "image", "container", "ready")
            ],
        ],
    )


class Registry(http.server.BaseHTTPRequestHandler):
    """A registry of the Docker Registry HTTP API v2 with Docker Hub's anonymous token flow:
    manifests answer 401 with a Bearer challenge until asked with the token of ``/token``."""

    images: ClassVar = {("team/notebook", "2024.1"), ("library/python", "3.11")}
    asked: ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        self.asked.append(f"HEAD {self.path}")
        match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", self.path)
        if match is None:
            self.answer(404)
            return
        repository, reference = match.groups()
        if self.headers.get("Authorization") != f"Bearer anonymous:{repository}":
            address = self.server.server_address
            assert isinstance(address, tuple), "an AF_INET server's (host, port)"
            host, port = address[:2]
            self.answer(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="http://{host}:{port}/token",'
                    f'service="loopback",scope="repository:{repository}:pull"'
                },
            )
            return
        known = (repository, reference) in self.images
        self.answer(
            200 if known else 404,
            {"Content-Type": "application/vnd.oci.image.index.v1+json"} if known else {},
        )

    def do_GET(self) -> None:
        self.asked.append(f"GET {self.path}")
        match = re.fullmatch(r"/token\?(?:.*&)?scope=repository%3A([^&]+)%3Apull(&.*)?", self.path)
        if match is None or "service=loopback" not in self.path:
            self.answer(400)
            return
        body = json.dumps({"token": f"anonymous:{match.group(1).replace('%2F', '/')}"}).encode()
        self.answer(200, {"Content-Type": "application/json"}, body)

    def answer(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Registry.asked.clear()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_image_check_asks_the_registry(registry: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kubernetes_session_trusted_images="private.example/*")

    async def check(image: str) -> InvalidInput | None:
        launcher = KubernetesLauncher(settings)
        try:
            await launcher.check_image(image)
            return None
        except InvalidInput as error:
            return error
        finally:
            await launcher.close()

    assert run(check(f"{registry}/team/notebook:2024.1")) is None
    assert Registry.asked == [
        "HEAD /v2/team/notebook/manifests/2024.1",
        "GET /token?scope=repository%3Ateam%2Fnotebook%3Apull&service=loopback",
        "HEAD /v2/team/notebook/manifests/2024.1",
    ]

    missing = run(check(f"{registry}/team/notebook:2099.9"))
    assert isinstance(missing, InvalidInput) and missing.fields == {"field": "image"}
    assert missing.message.startswith(
        f"image '{registry}/team/notebook:2099.9' not found: {registry} has no team/notebook:2099.9"
    )
    assert isinstance(run(check(f"{registry}/nobody/nothing")), InvalidInput)

    Registry.asked.clear()
    assert run(check("private.example/team/secret:1")) is None  # trusted: nobody asked
    assert run(check(settings.kubernetes_session_image)) is None  # the default is trusted
    assert Registry.asked == []

    malformed = run(check("Not An Image!"))
    assert isinstance(malformed, InvalidInput) and malformed.fields == {"field": "image"}
    assert "not an image reference" in malformed.message

    closed = f"127.0.0.1:{free_port()}/team/notebook:1"
    assert run(check(closed)) is None  # cannot tell: Kubernetes' pull will say


def test_image_check_can_be_turned_off(registry: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kubernetes_session_trusted_images="*")

    async def scenario() -> None:
        launcher = KubernetesLauncher(settings)
        try:
            await launcher.check_image(f"{registry}/team/notebook:2099.9")
        finally:
            await launcher.close()

    run(scenario())
    assert Registry.asked == []


def test_option_like_commit_and_outside_directory_are_refused(
    settings: Settings, kube_api: client.ApiClient, kube_namespace: str
) -> None:
    async def refused(spec: SessionSpec) -> InvalidInput:
        launcher = kubernetes_launcher(settings)
        try:
            await launcher.start(spec)
        except InvalidInput as error:
            return error
        finally:
            await launcher.close()
        raise AssertionError(f"{spec} started")

    commit = run(refused(session(repository="file:///nowhere", commit="--orphan=x")))
    assert commit.fields == {"field": "commit"}
    directory = run(refused(session(directory="../../etc")))
    assert directory.fields == {"field": "directory"}
    assert client.AppsV1Api(kube_api).list_namespaced_stateful_set(kube_namespace).items == []
    assert (
        client.CoreV1Api(kube_api)
        .list_namespaced_secret(
            kube_namespace, label_selector="app.kubernetes.io/managed-by=nbplane"
        )
        .items
        == []
    )


def test_bad_url_template_is_a_clear_error(settings: Settings) -> None:
    from nbplane.errors import ConfigError

    settings = settings.model_copy(
        update={"kubernetes_session_url_template": "http://{host}:{port}/"}
    )

    async def scenario() -> None:
        launcher = kubernetes_launcher(settings)
        try:
            await launcher.start(session())
        finally:
            await launcher.close()

    with pytest.raises(ConfigError) as raised:
        run(scenario())
    assert raised.value.fields == {"field": "kubernetes_session_url_template"}
    assert "{host}" in raised.value.message or "'host'" in raised.value.message


def test_statefulset_pod_reaches_node_provisioned_volume(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    """The node stand-in binds each claim to a directory of its own, which outlives the pod."""
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "files"}
    code = (
        "import pathlib; pathlib.Path('/data/seen').write_text('x'); import time; time.sleep(600)"
    )
    apps.create_namespaced_stateful_set(
        kube_namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="files"),
            spec=client.V1StatefulSetSpec(
                service_name="files",
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                volume_claim_templates=[
                    client.V1PersistentVolumeClaim(
                        metadata=client.V1ObjectMeta(name="data"),
                        spec=client.V1PersistentVolumeClaimSpec(
                            access_modes=["ReadWriteOnce"],
                            resources=client.V1VolumeResourceRequirements(
                                requests={"storage": "1Gi"}
                            ),
                        ),
                    )
                ],
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(
                                name="main",
                                image="python:3.11",
                                command=[sys.executable, "-c", code],
                                volume_mounts=[
                                    client.V1VolumeMount(name="data", mount_path="/data")
                                ],
                            )
                        ]
                    ),
                ),
            ),
        ),
    )
    core = client.CoreV1Api(kube_api)
    wait_for(
        core.list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=kube_namespace,
        field_selector="metadata.name=files-0",
    )
    claim = wait_for(
        core.list_namespaced_persistent_volume_claim,
        lambda c: c.status.phase == "Bound",
        namespace=kube_namespace,
    )
    volume = core.read_persistent_volume(claim.spec.volume_name)
    seen = Path(volume.spec.host_path.path) / "seen"
    deadline = time.monotonic() + 30
    while not seen.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen.read_text() == "x"
    apps.delete_namespaced_stateful_set("files", kube_namespace)


def test_sessions_api_on_kubernetes_survives_a_restart(
    kube_cluster: KubeCluster,
    kube_api: client.ApiClient,
    kube_namespace: str,
    registry: str,
    tmp_path: Path,
    store_url: str,
) -> None:
    """Through ``nbplane serve`` with NBPLANE_SESSION_LAUNCHER=kubernetes: an unknown image is
    refused, a session becomes ready with the resource class's resources and its variables,
    outlives a killed nbplane server, hibernates to zero pods, resumes on its files, and a
    purge leaves nothing behind."""
    environment = {
        "NBPLANE_SESSION_LAUNCHER": "kubernetes",
        "NBPLANE_KUBECONFIG": str(kube_cluster.kubeconfig),
        "NBPLANE_KUBERNETES_NAMESPACE": kube_namespace,
        "NBPLANE_SESSION_COMMAND": JUPYTER_LAB,
        "NBPLANE_KUBERNETES_SESSION_PORTS": "20000-29999",
        "NBPLANE_KUBERNETES_SESSION_URL_TEMPLATE": "http://127.0.0.1:{port}/",
    }
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    restarted: list[subprocess.Popen[str]] = []
    with contextlib.ExitStack() as stack:
        # Stopped last: the server's own cleanup (deleting sessions) needs it running.
        @stack.callback
        def stop_restarted() -> None:
            for process in restarted:
                stop(process)

        server = stack.enter_context(session_server(tmp_path, store_url, **environment))
        alice = as_user(server, user_token(server, "alice", "analytics"))
        refused = alice.post(SESSIONS, json={"image": f"{registry}/team/notebook:2099.9"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "image"

        created = create(alice, environment={"GREETING": "hi"})
        running = wait_status(alice, created["id"], "running", "failed", timeout=180)
        assert running["status"] == "running" and running["ready"], running
        assert running["url"] == f"{server.url}/sessions/{created['id']}/", "through nbplane"
        printed = run_in_kernel(alice, running, "import os; print(os.environ['GREETING'])")
        assert printed == "hi\n", "a kernel's WebSocket through nbplane's proxy"
        with jupyter(alice, running) as http:
            saved = http.put(
                "api/contents/kept.txt",
                json={"type": "file", "format": "text", "content": "still here"},
            )
            assert saved.status_code == 201, saved.text
        (statefulset,) = apps.list_namespaced_stateful_set(
            kube_namespace, label_selector=f"nbplane.io/session={created['id']}"
        ).items
        name = statefulset.metadata.name
        assert name is not None
        (container,) = statefulset.spec.template.spec.containers
        assert container.resources.limits == {"cpu": "1", "memory": "2Gi"}

        server.process.send_signal(signal.SIGKILL)  # no chance to tidy up
        server.process.wait()
        with server.log.open("a") as output:
            server.process = subprocess.Popen(
                server.args,
                env=server.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        restarted.append(server.process)
        wait_healthy(server)
        alive = alice.get(f"{SESSIONS}/{created['id']}").json()
        assert alive["status"] == "running" and alive["ready"], alive

        hibernating = alice.post(f"{SESSIONS}/{created['id']}/hibernate")
        assert hibernating.status_code == 200, hibernating.text
        wait_status(alice, created["id"], "hibernated")
        assert apps.read_namespaced_stateful_set(name, kube_namespace).spec.replicas == 0
        wait_deleted(core.list_namespaced_pod, f"{name}-0", namespace=kube_namespace)

        resuming = alice.post(f"{SESSIONS}/{created['id']}/resume")
        assert resuming.status_code == 200, resuming.text
        resumed = wait_status(alice, created["id"], "running", "failed", timeout=180)
        assert resumed["status"] == "running", resumed
        with jupyter(alice, resumed) as http:
            assert http.get("api/contents/kept.txt").json()["content"] == "still here"

        assert (
            alice.delete(f"{SESSIONS}/{created['id']}", params={"purge": "true"}).status_code == 204
        )
        wait_deleted(apps.list_namespaced_stateful_set, name, namespace=kube_namespace)
        wait_deleted(
            core.list_namespaced_persistent_volume_claim,
            f"workspace-{name}-0",
            namespace=kube_namespace,
        )
        assert (
            core.list_namespaced_secret(
                kube_namespace, label_selector=f"app.kubernetes.io/instance={name}"
            ).items
            == []
        )
