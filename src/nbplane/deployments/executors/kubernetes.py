"""The Kubernetes job executor: each execution is a ``batch/v1`` Job of one pod.

The settings the command needs (nbplane's database URL and secrets key) travel in a Secret the
pod reads with ``envFrom``, never as plain values in the pod spec, which anyone allowed to read
Jobs or Pods could see. The Secret is owned by the Job, so deleting the Job (a cancel, a timeout,
``ttlSecondsAfterFinished``) takes the Secret and the pod with it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import UTC, datetime
from typing import Any, ClassVar

from nbplane.deployments.executors.base import ExecutionTicket, ExecutorStatus, JobExecutor
from nbplane.errors import ConfigError
from nbplane.platform.kube import (
    MANAGED_BY,
    KubeClient,
    client,
    dns_label,
    label_value,
    requests_and_limits,
    secret_env,
)

log = logging.getLogger("nbplane.deployments")

CONTAINER = "job"
FINISHED_TTL_SECONDS = 24 * 3600
"""Finished Jobs (and their pods and Secrets) stay this long for ``kubectl logs``, then go;
the execution's own log and record stay in nbplane's database."""
LOG_TAIL_LINES = 2000
"""The monitor keeps only the end of a pod's log; no need to read a huge one whole."""
GENERIC_REASONS = {"Error", "Completed", "BackoffLimitExceeded"}
"""Reasons that say no more than the exit code does."""


class KubernetesExecutor(JobExecutor):
    name: ClassVar[str] = "kubernetes"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kube = KubeClient(self.settings.kubeconfig)

    def python(self) -> str:
        return self.settings.kubernetes_python

    async def start(self, ticket: ExecutionTicket) -> dict[str, Any]:
        api = await self.kube.api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        namespace = self.settings.kubernetes_namespace
        name = job_name(ticket)
        labels = {**MANAGED_BY, **execution_labels(ticket)}
        environment = dict(ticket.environment)
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            type="Opaque",
            string_data=environment,
        )
        # The Secret comes first so the pod finds it at once; it is owned by the Job just after.
        await self.kube.call(
            "create a Secret", namespace, core.create_namespaced_secret, namespace, secret
        )
        try:
            job = await self.kube.call(
                "create a Job",
                namespace,
                batch.create_namespaced_job,
                namespace,
                self.job(ticket, name, labels),
            )
            owner = client.V1OwnerReference(
                api_version="batch/v1", kind="Job", name=name, uid=job.metadata.uid
            )
            await self.kube.own_secret(namespace, name, owner)
        except ConfigError:
            with contextlib.suppress(ConfigError):  # the first error is the one to tell
                await self._delete(namespace, name)
            raise
        return {"namespace": namespace, "job": name, "secret": name}

    def job(self, ticket: ExecutionTicket, name: str, labels: dict[str, str]) -> client.V1Job:
        """The Job of one execution: one pod, no retries (a rerun is a new execution), limited
        to the execution's timeout even when no server is watching."""
        container = client.V1Container(
            name=CONTAINER,
            image=self.settings.kubernetes_image,
            command=list(ticket.command),
            env_from=secret_env(name),
            env=[
                client.V1EnvVar(name="NBPLANE_EXECUTION_ID", value=ticket.execution_id),
                client.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            ],
            resources=requests_and_limits(ticket.resources),
        )
        return client.V1Job(
            metadata=client.V1ObjectMeta(
                name=name, labels=labels, annotations={"nbplane.io/version": ticket.version}
            ),
            spec=client.V1JobSpec(
                backoff_limit=0,  # nbplane retries itself: a new Job per recorded attempt
                active_deadline_seconds=max(1, math.ceil(ticket.timeout)),
                ttl_seconds_after_finished=FINISHED_TTL_SECONDS,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        containers=[container],
                        automount_service_account_token=False,  # jobs need no API access
                        enable_service_links=False,  # no variables about others' Services
                    ),
                ),
            ),
        )

    async def poll(self, state: dict[str, Any]) -> ExecutorStatus:
        api = await self.kube.api()
        namespace, name = state["namespace"], state["job"]
        try:
            job = await self.kube.call(
                "read the Job",
                namespace,
                client.BatchV1Api(api).read_namespaced_job,
                name,
                namespace,
                missing_ok=True,
            )
        except ConfigError as exc:  # an API hiccup must not fail a running execution
            log.warning(
                "cannot tell how Kubernetes Job %s/%s is doing: %s", namespace, name, exc.message
            )
            return ExecutorStatus(running=True)
        if job is None:
            return ExecutorStatus(running=False, reason="the Kubernetes Job is gone")
        status = job.status or client.V1JobStatus()
        failed = [c for c in status.conditions or [] if c.type == "Failed" and c.status == "True"]
        if status.succeeded:
            return ExecutorStatus(running=False, exit_code=0)
        if not (failed or status.failed):
            return ExecutorStatus(running=True)
        condition = failed[0] if failed else None
        terminated = await self._terminated(api, namespace, name)
        reason = None
        if terminated is not None and terminated.reason not in (None, *GENERIC_REASONS):
            reason = terminated.reason  # e.g. OOMKilled
        elif condition is not None and (
            terminated is None or condition.reason not in GENERIC_REASONS
        ):
            reason = ": ".join(part for part in (condition.reason, condition.message) if part)
        return ExecutorStatus(
            running=False,
            exit_code=terminated.exit_code if terminated else None,
            reason=reason or None,
        )

    async def _terminated(
        self, api: client.ApiClient, namespace: str, name: str
    ) -> client.V1ContainerStateTerminated | None:
        """How the Job's newest pod's container ended, if it has and the pod is still there."""
        pod = await self._pod(api, namespace, name)
        statuses = (pod.status.container_statuses if pod and pod.status else None) or []
        for status in statuses:
            if status.state and status.state.terminated:
                terminated: client.V1ContainerStateTerminated = status.state.terminated
                return terminated
        return None

    async def _pod(self, api: client.ApiClient, namespace: str, name: str) -> client.V1Pod | None:
        try:
            pods = await self.kube.call(
                "list the Job's pods",
                namespace,
                client.CoreV1Api(api).list_namespaced_pod,
                namespace,
                label_selector=f"job-name={name}",
            )
        except ConfigError as exc:
            log.warning(
                "cannot list the pods of Kubernetes Job %s/%s: %s", namespace, name, exc.message
            )
            return None
        newest: list[client.V1Pod] = sorted(pods.items, key=_created, reverse=True)
        return newest[0] if newest else None

    async def stop(self, state: dict[str, Any]) -> None:
        await self._delete(state["namespace"], state["job"])

    async def _delete(self, namespace: str, name: str) -> None:
        """Delete the Job; the garbage collector removes its pods (which stops them) and its
        Secret. A Secret whose Job was never made goes too."""
        api = await self.kube.api()
        options = client.V1DeleteOptions(propagation_policy="Background")
        await self.kube.delete(
            "delete the Job",
            namespace,
            client.BatchV1Api(api).delete_namespaced_job,
            name,
            namespace,
            body=options,
        )
        await self.kube.delete(
            "delete the Secret",
            namespace,
            client.CoreV1Api(api).delete_namespaced_secret,
            name,
            namespace,
        )

    async def logs(self, state: dict[str, Any]) -> str | None:
        api = await self.kube.api()
        namespace, name = state["namespace"], state["job"]
        pod = await self._pod(api, namespace, name)
        if pod is None or pod.metadata is None:
            return None
        try:
            text: str | None = await self.kube.call(
                "read the pod's log",
                namespace,
                client.CoreV1Api(api).read_namespaced_pod_log,
                pod.metadata.name,
                namespace,
                container=CONTAINER,
                tail_lines=LOG_TAIL_LINES,
                missing_ok=True,
            )
        except ConfigError as exc:
            log.warning(
                "cannot read the log of Kubernetes pod %s/%s: %s",
                namespace,
                pod.metadata.name,
                exc.message,
            )
            return None
        return text

    async def close(self) -> None:
        await self.kube.close()


def _created(pod: client.V1Pod) -> datetime:
    return (pod.metadata.creation_timestamp if pod.metadata else None) or datetime.min.replace(
        tzinfo=UTC
    )


def job_name(ticket: ExecutionTicket) -> str:
    """``nbplane-<team, 8 characters>-<job>-<execution id, 8 characters>``, and ``-a<N>`` for
    a retry's attempt N, made a DNS-1123 label of at most 63 characters (the Job controller puts
    it in its pods' labels)."""
    suffix = dns_label(ticket.execution_id.replace("-", ""))[:8]
    if ticket.attempt > 1:
        suffix += f"-a{ticket.attempt}"
    prefix = dns_label(f"nbplane-{ticket.team[:8]}-{ticket.job}")[: 62 - len(suffix)].strip("-")
    return f"{prefix}-{suffix}"


def execution_labels(ticket: ExecutionTicket) -> dict[str, str]:
    return {
        "nbplane.io/team": label_value(ticket.team),
        "nbplane.io/job": label_value(ticket.job),
        "nbplane.io/execution": label_value(ticket.execution_id),
        "nbplane.io/attempt": str(ticket.attempt),
    }
