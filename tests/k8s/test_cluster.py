"""The loopback cluster does what tests need: a Job's pod runs its command as a local process and
the Job completes (and goes after its TTL) or fails, the log reads back through the API (also
followed live), Secrets and ConfigMaps reach the environment, deleting a Job stops its process,
a StatefulSet's pod becomes Ready once its readiness probe answers."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
from kubernetes import client, config

from tests.k8s.cluster import KubeCluster, free_port, wait_deleted, wait_for


def make_job(name: str, code: str, **container: Any) -> client.V1Job:
    """A Job running ``python -c CODE`` once (no retries); the image is ignored by the node."""
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="main",
                            image="python:3.11",
                            command=[sys.executable, "-c", code],
                            **container,
                        )
                    ],
                )
            ),
        ),
    )


def finished(job: client.V1Job) -> bool:
    conditions = (job.status.conditions if job.status else None) or []
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)


def run_job(api: client.ApiClient, namespace: str, job: client.V1Job) -> client.V1Job:
    """Create the Job and return it once it has completed or failed."""
    batch = client.BatchV1Api(api)
    assert job.metadata
    batch.create_namespaced_job(namespace, job)
    done: client.V1Job = wait_for(
        batch.list_namespaced_job,
        finished,
        namespace=namespace,
        field_selector=f"metadata.name={job.metadata.name}",
    )
    return done


def job_pod(api: client.ApiClient, namespace: str, job: str) -> client.V1Pod:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    assert len(pods.items) == 1, [p.metadata and p.metadata.name for p in pods.items]
    pod: client.V1Pod = pods.items[0]
    return pod


def follow_log(core: client.CoreV1Api, pod: str, namespace: str) -> urllib3.HTTPResponse:
    """The pod's log as a stream that ends when the process has exited; close it (``with``),
    as its connection cannot go back to the pool unread."""
    return cast(
        urllib3.HTTPResponse,
        core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False),
    )


def test_kubeconfig_reaches_the_ready_node(kube_cluster: KubeCluster) -> None:
    """The kubeconfig file is what other tools (KubeSpawner, kubectl) get."""
    api = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    with api:
        node = client.CoreV1Api(api).read_node(kube_cluster.node_name)
    assert node.status
    assert [c.status for c in node.status.conditions or [] if c.type == "Ready"] == ["True"]


def test_job_completes_and_its_log_reads_back(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    done = run_job(
        kube_api, kube_namespace, make_job("hello", "print('hello'); import sys; sys.exit(0)")
    )

    assert done.status and done.status.succeeded == 1 and not done.status.failed
    pod = job_pod(kube_api, kube_namespace, "hello")
    assert pod.status and pod.status.phase == "Succeeded"
    assert pod.metadata and pod.metadata.name
    core = client.CoreV1Api(kube_api)
    assert core.read_namespaced_pod_log(pod.metadata.name, kube_namespace) == "hello\n"


def test_finished_job_is_removed_after_its_ttl(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    job = make_job("brief", "pass")
    assert job.spec
    job.spec.ttl_seconds_after_finished = 0
    client.BatchV1Api(kube_api).create_namespaced_job(kube_namespace, job)

    wait_deleted(client.BatchV1Api(kube_api).list_namespaced_job, "brief", namespace=kube_namespace)


def test_failing_command_fails_the_job(kube_api: client.ApiClient, kube_namespace: str) -> None:
    done = run_job(kube_api, kube_namespace, make_job("fails", "import sys; sys.exit(3)"))

    assert done.status and done.status.failed == 1 and not done.status.succeeded
    assert any(c.type == "Failed" for c in done.status.conditions or [])
    pod = job_pod(kube_api, kube_namespace, "fails")
    assert pod.status and pod.status.phase == "Failed"
    (container,) = pod.status.container_statuses or []
    assert container.state and container.state.terminated
    assert container.state.terminated.exit_code == 3


def test_secret_and_config_map_reach_the_environment(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        kube_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"), string_data={"password": "s3cret"}
        ),
    )
    core.create_namespaced_config_map(
        kube_namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"REGION": "eu"}),
    )
    code = "import os; print(os.environ['PASSWORD'], os.environ['CFG_REGION'], os.environ['X'])"
    run_job(
        kube_api,
        kube_namespace,
        make_job(
            "env",
            code,
            env=[
                client.V1EnvVar(
                    name="PASSWORD",
                    value_from=client.V1EnvVarSource(
                        secret_key_ref=client.V1SecretKeySelector(name="creds", key="password")
                    ),
                ),
                client.V1EnvVar(name="X", value="$(CFG_REGION)-1"),
            ],
            env_from=[
                client.V1EnvFromSource(
                    prefix="CFG_", config_map_ref=client.V1ConfigMapEnvSource(name="settings")
                )
            ],
        ),
    )

    pod = job_pod(kube_api, kube_namespace, "env")
    assert pod.metadata and pod.metadata.name
    assert core.read_namespaced_pod_log(pod.metadata.name, kube_namespace) == "s3cret eu eu-1\n"


def test_log_is_followed_while_the_process_runs(
    kube_api: client.ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    """The process prints a line, then waits for the test to have read it before it goes on."""
    go = tmp_path / "go"
    code = (
        f"import pathlib, time\nprint('first', flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\nprint('second')"
    )
    client.BatchV1Api(kube_api).create_namespaced_job(kube_namespace, make_job("follow", code))
    pod = wait_for(
        client.CoreV1Api(kube_api).list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=kube_namespace,
        label_selector="job-name=follow",
    )
    core = client.CoreV1Api(kube_api)

    with follow_log(core, pod.metadata.name, kube_namespace) as stream:
        assert stream.readline() == b"first\n"
        go.touch()
        assert stream.read() == b"second\n"  # until the end: the process has exited
    assert (
        core.read_namespaced_pod_log(pod.metadata.name, kube_namespace, tail_lines=1) == "second\n"
    )


@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
def test_deleting_a_running_job_kills_its_process(
    kube_api: client.ApiClient, kube_namespace: str, propagation: str
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    batch.create_namespaced_job(kube_namespace, make_job("sleeper", code))
    pod = wait_for(
        core.list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=kube_namespace,
        label_selector="job-name=sleeper",
    )
    with follow_log(core, pod.metadata.name, kube_namespace) as stream:
        pid = int(stream.readline())
    os.kill(pid, 0)  # running

    batch.delete_namespaced_job("sleeper", kube_namespace, propagation_policy=propagation)

    # The node removes the pod only once its process has exited and been reaped.
    wait_deleted(core.list_namespaced_pod, pod.metadata.name, namespace=kube_namespace)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    wait_deleted(batch.list_namespaced_job, "sleeper", namespace=kube_namespace)


def test_statefulset_pod_becomes_ready(kube_api: client.ApiClient, kube_namespace: str) -> None:
    port = free_port()
    labels = {"app": "web"}
    client.CoreV1Api(kube_api).create_namespaced_service(
        kube_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                cluster_ip="None", selector=labels, ports=[client.V1ServicePort(port=port)]
            ),
        ),
    )
    container = client.V1Container(
        name="web",
        image="python:3.11",
        command=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ports=[client.V1ContainerPort(name="http", container_port=port)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1
        ),
    )
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_stateful_set(
        kube_namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1StatefulSetSpec(
                service_name="web",
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[container]),
                ),
            ),
        ),
    )

    wait_for(
        apps.list_namespaced_stateful_set,
        lambda s: s.status.ready_replicas == 1,
        namespace=kube_namespace,
    )

    pod = client.CoreV1Api(kube_api).read_namespaced_pod("web-0", kube_namespace)
    assert pod.status and pod.status.pod_ip == "127.0.0.1"
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.status == 200
