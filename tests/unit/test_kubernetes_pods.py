"""What a job's or a session's pod on Kubernetes is given: no service-account token (no API
access), no variables about the namespace's other Services, and no Secret but its own, read as
``envFrom``. Checked on the manifests the executor and launcher build, without a cluster (the
test cluster runs no ServiceAccount admission, so it would show no more than these)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubernetes import client

from nbplane.deployments.executors.base import ExecutionTicket
from nbplane.deployments.executors.kubernetes import (
    KubernetesExecutor,
    execution_labels,
    job_name,
)
from nbplane.sessions.launchers.base import SessionSpec
from nbplane.sessions.launchers.kubernetes.manifests import statefulset
from nbplane.settings import Settings


def assert_alone(pod: client.V1PodSpec, own_secret: str) -> None:
    assert pod.automount_service_account_token is False
    assert pod.service_account_name is None, "no account of its own to hold a token either"
    assert pod.enable_service_links is False
    secrets: list[Any] = []
    for volume in pod.volumes or []:
        secrets += [volume.secret, volume.projected]
    assert not any(secrets), "no Secret or projected token as a volume"
    for container in [*(pod.init_containers or []), *pod.containers]:
        assert [source.secret_ref.name for source in container.env_from or []] == [own_secret]
        assert not [variable for variable in container.env or [] if variable.value_from]


TICKET = ExecutionTicket(
    execution_id="0123456789abcdef",
    team="sales",
    job="daily",
    version="1",
    resources={},
    timeout=60.0,
    command=["python", "-m", "nbplane", "job", "run-execution", "0123456789abcdef"],
    environment={"NBPLANE_EXECUTION_TOKEN": "credential"},
)


def test_each_attempt_is_a_job_of_its_own_that_kubernetes_never_retries() -> None:
    """nbplane records and retries attempts itself: a retry is a new Job, never a restart."""
    retry = replace(TICKET, attempt=2)
    assert job_name(TICKET) == "nbplane-sales-daily-01234567"
    assert job_name(retry) == "nbplane-sales-daily-01234567-a2"
    assert execution_labels(retry)["nbplane.io/attempt"] == "2"
    job = KubernetesExecutor(Settings()).job(retry, job_name(retry), execution_labels(retry))
    assert job.spec is not None and job.spec.backoff_limit == 0


def test_a_job_pod_gets_no_token_and_only_its_own_secret() -> None:
    job = KubernetesExecutor(Settings()).job(TICKET, "nbplane-sales-daily-01234567", {})
    pod = job.spec.template.spec
    assert pod is not None
    assert_alone(pod, "nbplane-sales-daily-01234567")


def test_a_session_pod_gets_no_token_and_only_its_own_secret() -> None:
    spec = SessionSpec(
        id="s1",
        user="alice",
        resource_class="small",
        cpu=None,
        memory=None,
        image=None,
        token="token",
        environment={"WAREHOUSE_PASSWORD": "pw"},
        repository="https://example.com/repo.git",
    )

    built = statefulset(Settings(), spec, "nbplane-alice-s1", {}, 8888, "http://x:8888/")
    pod = built.spec.template.spec
    assert pod is not None
    assert pod.init_containers, "the clone runs with the same Secret and nothing more"
    assert_alone(pod, "nbplane-alice-s1")
