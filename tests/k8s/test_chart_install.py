"""The Helm chart on the real loopback kube-apiserver: installed with Helm's library, its
migration hook, web, worker and control pods run by the node stand-in as the image's entrypoint
commands (``nbplane ...``) against a real PostgreSQL, each acting as the chart's ServiceAccount
(so the Role is proven sufficient). Then, through the web pod with the admin token from the
chart's Secret: a scheduled job runs as Kubernetes Jobs, a notebook-API execution is served by
the worker pod, a session is reached at ``/sessions/{id}/``, and the control pod holding the
Lease is killed: the other takes over, and no schedule tick fires twice."""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import httpx
import psutil
import pytest
from kubernetes import client

from tests.conftest import database_url
from tests.deploy.chart import CHART, REALISTIC
from tests.integration.api_notebooks import write_api
from tests.integration.server_fixture import free_port
from tests.integration.test_cli_control import Cli
from tests.integration.test_cli_control import client as cli_for
from tests.k8s.cluster import KubeCluster, wait_for
from tests.k8s.node import BOUND_PORTS, PORTS

RELEASE = "nbplane"
LEASE = "nbplane-control"
COMPONENT = "app.kubernetes.io/component"
PERIOD = 10
"""Seconds between the schedule's ticks."""


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    with database_url("postgresql", tmp_path) as url:
        yield url


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def process_of(holder: str | None) -> psutil.Process:
    """The process named by a lease holder or worker id (``HOST:PID:NONCE``)."""
    assert holder, "no holder"
    return psutil.Process(int(holder.split(":")[1]))


def test_chart_runs_nbplane_on_the_cluster(
    request: pytest.FixtureRequest,
    kube_cluster: KubeCluster,
    kube_api: client.ApiClient,
    kube_namespace: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    namespace = kube_namespace
    core = client.CoreV1Api(kube_api)
    apis = tmp_path / "apis"
    apis.mkdir()
    save = "from nbplane import save_output\n"
    write_api(
        apis,
        "double",
        [("x = 1", ["parameters"]), save + "save_output({'y': 2 * x})"],
        {"input": {"type": "object", "properties": {"x": {"type": "number"}}}, "output": {}},
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="nbplane-apis"),
            data={path.name: path.read_text() for path in apis.iterdir()},
        ),
    )
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    values = {
        "store": {"url": store_url},
        "warehouse": {"url": store_url},
        "web": {"replicas": 1, "podAnnotations": {PORTS: json.dumps({"8080": port})}},
        "worker": {"podAnnotations": {PORTS: "auto"}},
        "control": {"podAnnotations": {PORTS: "auto"}},
        "publicUrl": web,
        "internalUrl": web,
        "apis": {"configMap": "nbplane-apis"},
        "extraEnv": [  # pods share the node's loopback: sessions need ports of their own
            {"name": "NBPLANE_KUBERNETES_SESSION_PORTS", "value": "20000-29999"},
            {
                "name": "NBPLANE_KUBERNETES_SESSION_URL_TEMPLATE",
                "value": "http://127.0.0.1:{port}/",
            },
        ],
    }
    helm = helm_python.Config(kubeconfig_path=kube_cluster.kubeconfig, namespace=namespace)
    # The platform team's values against this (1.20) API server, which the schemas of
    # kubernetes-validate do not reach back to; ServiceMonitor's CRD is not installed here.
    realistic = {**REALISTIC, "metrics": {"serviceMonitor": {"enabled": False}}}
    helm.install(CHART, "dry-run", realistic, namespace=namespace, dry_run="server")
    began = time.monotonic()
    helm.install(CHART, RELEASE, values, namespace=namespace, wait="watcher", timeout=150)
    installed = time.monotonic() - began
    apps = client.AppsV1Api(kube_api)
    for role, replicas in (("web", 1), ("worker", 1), ("control", 2)):
        deployment = apps.read_namespaced_deployment(f"{RELEASE}-{role}", namespace)
        assert deployment.status.ready_replicas == replicas, role
    pods = core.list_namespaced_pod(namespace).items
    assert {p.spec.service_account_name for p in pods} == {RELEASE}  # the hook Job is gone
    (web_pod,) = [p for p in pods if (p.metadata.labels or {}).get(COMPONENT) == "web"]
    assert json.loads((web_pod.metadata.annotations or {})[BOUND_PORTS]) == {"8080": port}
    print(f"install -> all pods ready: {installed:.1f} s")

    secret = core.read_namespaced_secret(RELEASE, namespace)
    token = base64.b64decode((secret.data or {})["admin-token"]).decode()
    http = httpx.Client(base_url=web, headers={"Authorization": f"Bearer {token}"}, timeout=90)
    request.addfinalizer(http.close)
    assert http.get("/health/ready").status_code == 200
    me = http.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["admin"] is True, me.text

    # A job deployed through the web pod runs as Kubernetes Jobs, on a schedule.
    assert http.post("/api/v1/users", json={"name": "carol", "teams": ["analytics"]}).is_success
    admin = cli_for(tmp_path / "admin")
    admin.run("login", "--url", web, "--token", token)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    admin.run("job", "create", "nightly", "--team", "analytics", "--directory", str(jobs))
    admin.run("job", "deploy", str(jobs / "nightly"), "--schedule", f"*/{PERIOD} * * * * *")
    batch = client.BatchV1Api(kube_api)
    wait_for(batch.list_namespaced_job, lambda job: True, namespace=namespace, timeout=60)
    first = wait_until(
        "a scheduled execution completes",
        lambda: [e for e in scheduled(admin) if e["status"] == "completed"],
        timeout=90,
    )
    assert first[0]["executor"] == "kubernetes"

    # A notebook-API execution is served by the worker pod (the web pod runs none).
    response = http.post(
        "/api/v1/notebooks/double/executions", params={"wait": 60}, json={"parameters": {"x": 3}}
    )
    assert response.status_code == 201, response.text
    execution = response.json()
    assert execution["status"] == "completed" and execution["output"] == {"y": 6}
    worker = process_of(execution["worker_id"])
    assert worker.environ()["HOSTNAME"].startswith(f"{RELEASE}-worker-")

    # A session is reached through the web pod at /sessions/{id}/.
    created = http.post("/api/v1/sessions", json={})
    assert created.status_code in (201, 202), created.text
    session = created.json()
    settled = wait_until(
        "the session settles",
        lambda: (
            (found := http.get(f"/api/v1/sessions/{session['id']}").json())["status"]
            in ("running", "failed")
            and found
        ),
        timeout=90,
    )
    assert settled["status"] == "running", settled
    assert settled["url"] == f"{web}/sessions/{session['id']}/"  # nbplane's door, not the pod
    status = http.get(f"/sessions/{session['id']}/api/status")
    assert status.status_code == 200 and "started" in status.json(), status.text

    # The control pod holding the Lease dies: the other takes over; no tick fires twice.
    leases = client.CoordinationV1Api(kube_api)
    holder = leases.read_namespaced_lease(LEASE, namespace).spec.holder_identity
    dying = process_of(holder)
    dying_pod = dying.environ()["HOSTNAME"]
    assert dying_pod.startswith(f"{RELEASE}-control-")
    killed_at = datetime.datetime.now(datetime.UTC)
    killed = time.monotonic()
    os.killpg(dying.pid, signal.SIGKILL)  # no chance to release the Lease, as when a node dies
    core.delete_namespaced_pod(dying_pod, namespace, grace_period_seconds=0)
    successor = wait_until(
        "another control pod holds the Lease",
        lambda: (
            (h := leases.read_namespaced_lease(LEASE, namespace).spec.holder_identity) != holder
            and h
        ),
        timeout=60,
    )
    takeover = time.monotonic() - killed
    assert process_of(successor).environ()["HOSTNAME"] != dying_pod
    print(f"lease takeover after the holder was killed: {takeover:.1f} s")
    wait_until(
        "the schedule fires again after the takeover",
        lambda: [
            e
            for e in scheduled(admin)
            if e["status"] == "completed" and parse(e["scheduled_for"]) > killed_at
        ],
        timeout=90,
    )
    admin.run("job", "deploy", str(jobs / "nightly"), "--disable")
    ticks = sorted(parse(e["scheduled_for"]) for e in scheduled(admin))
    assert len(ticks) == len(set(ticks)), ticks  # none fired twice
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
    # Every tick fires, but those due while no replica held the Lease, which fire once on
    # takeover (NBPLANE_SCHEDULE_MISSED_GRACE_SECONDS): one gap of at most the takeover.
    late = [gap for gap in gaps if gap != PERIOD]
    assert len(late) <= 1 and all(gap <= PERIOD + takeover + PERIOD for gap in late), gaps


def scheduled(cli: Cli) -> list[dict[str, Any]]:
    found = cli.json("job", "executions", "nightly", "--team", "analytics", "--limit", "100")
    items = found["items"]
    return [e for e in items if e["started_by"] == "schedule"]


def parse(moment: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(moment.replace("Z", "+00:00"))
