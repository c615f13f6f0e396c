"""The Kubernetes session launcher: the API calls that create, scale, read and delete a
session's objects (:mod:`.manifests`), reading how its start goes (:mod:`.status`)."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from nbplane.errors import ConfigError
from nbplane.platform.kube import MANAGED_BY, KubeClient, client
from nbplane.sessions.jupyter_api import answers, session_client
from nbplane.sessions.launchers.base import (
    LaunchPhase,
    LaunchStatus,
    SessionLauncher,
    SessionSpec,
    check_spec,
)
from nbplane.sessions.launchers.kubernetes import manifests, registry, status
from nbplane.sessions.launchers.kubernetes.manifests import (
    COMPONENT,
    claim_name,
    pod_name,
    session_labels,
    session_name,
)
from nbplane.settings import Settings

ANSWER_TIMEOUT = 2.0
"""Seconds a ready check of the server's API may take."""


class KubernetesLauncher(SessionLauncher):
    name: ClassVar[str] = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.kube = KubeClient(settings.kubeconfig)
        self.http = session_client(ANSWER_TIMEOUT)

    # start, hibernate, stop

    async def start(self, spec: SessionSpec) -> dict[str, Any]:
        """Create the Secret, StatefulSet and Service; or, for a hibernated session, refresh the
        Secret (grants may have changed) and scale back to one pod on the same volume."""
        check_spec(spec)
        api = await self.kube.api()
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        namespace, name = self.settings.kubernetes_namespace, session_name(spec)
        labels = session_labels(spec, name)
        existing = await self._statefulset(apps, namespace, name)
        if existing is not None:
            port = manifests.port_of(existing)
        else:
            port = await self._free_port(namespace)
        url = manifests.session_url(self.settings, spec, name, namespace, port)
        await self._put_secret(core, namespace, name, manifests.secret(spec, name, labels))
        if existing is None:
            statefulset = manifests.statefulset(self.settings, spec, name, labels, port, url)
            existing = await self.kube.call(
                "create a StatefulSet",
                namespace,
                apps.create_namespaced_stateful_set,
                namespace,
                statefulset,
            )
        elif existing.spec.replicas != 1:
            await self.kube.call(
                "scale the session's StatefulSet up",
                namespace,
                apps.patch_namespaced_stateful_set_scale,
                name,
                namespace,
                {"spec": {"replicas": 1}},
            )
        owner = client.V1OwnerReference(
            api_version="apps/v1", kind="StatefulSet", name=name, uid=existing.metadata.uid
        )
        await self.kube.call(
            "create a Service",
            namespace,
            core.create_namespaced_service,
            namespace,
            manifests.service(name, labels, port, owner),
            none_on=(409,),
        )
        await self.kube.own_secret(namespace, name, owner)
        return {"namespace": namespace, "name": name, "port": port, "url": url}

    async def _put_secret(
        self, core: client.CoreV1Api, namespace: str, name: str, secret: client.V1Secret
    ) -> None:
        """The session's Secret, created or its keys replaced whole."""
        created = await self.kube.call(
            "create a Secret",
            namespace,
            core.create_namespaced_secret,
            namespace,
            secret,
            none_on=(409,),
        )
        if created is None:  # a resume: keep its owner, replace its keys
            await self.kube.call(
                "update the session's Secret",
                namespace,
                core.patch_namespaced_secret,
                name,
                namespace,
                [{"op": "replace", "path": "/data", "value": secret.data}],
                _content_type="application/json-patch+json",
            )

    async def _free_port(self, namespace: str) -> int:
        """The configured port, or one of the range that no session Service of the namespace
        uses, chosen at random so that concurrent starts rarely pick the same."""
        low, _, high = self.settings.kubernetes_session_ports.partition("-")
        first, last = int(low), int(high or low)
        if not 0 < first <= last < 65536:
            raise ConfigError(
                f"bad port range {self.settings.kubernetes_session_ports!r}: expected a port "
                "or LOW-HIGH between 1 and 65535",
                field="kubernetes_session_ports",
            )
        if first == last:
            return first
        api = await self.kube.api()
        services = await self.kube.call(
            "list the session Services",
            namespace,
            client.CoreV1Api(api).list_namespaced_service,
            namespace,
            label_selector=manifests.selector_text({**MANAGED_BY, **COMPONENT}),
        )
        taken = {port.port for service in services.items for port in service.spec.ports or []}
        free = [port for port in range(first, last + 1) if port not in taken]
        if not free:
            raise ConfigError(
                f"all ports of {first}-{last} are taken by sessions in namespace {namespace!r}",
                field="kubernetes_session_ports",
            )
        return random.choice(free)

    async def hibernate(self, spec: SessionSpec, state: dict[str, Any]) -> dict[str, Any]:
        """Scale to zero: the pod goes, the volume stays for ``start`` to mount again."""
        api = await self.kube.api()
        namespace, name = self._where(spec, state)
        await self.kube.call(
            "scale the session's StatefulSet down",
            namespace,
            client.AppsV1Api(api).patch_namespaced_stateful_set_scale,
            name,
            namespace,
            {"spec": {"replicas": 0}},
        )
        return state

    async def stop(self, spec: SessionSpec, state: dict[str, Any], *, purge: bool) -> None:
        api = await self.kube.api()
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        namespace, name = self._where(spec, state)
        options = client.V1DeleteOptions(propagation_policy="Background")
        deletions = [
            ("delete the StatefulSet", apps.delete_namespaced_stateful_set),
            ("delete the Service", core.delete_namespaced_service),
            ("delete the Secret", core.delete_namespaced_secret),
        ]
        for doing, delete in deletions:
            await self.kube.delete(doing, namespace, delete, name, namespace, body=options)
        if purge:
            await self.kube.delete(
                "delete the workspace volume",
                namespace,
                core.delete_namespaced_persistent_volume_claim,
                claim_name(name),
                namespace,
            )

    def _where(self, spec: SessionSpec, state: dict[str, Any]) -> tuple[str, str]:
        """Namespace and name as the start recorded them (settings may have changed since)."""
        return (
            state.get("namespace") or self.settings.kubernetes_namespace,
            state.get("name") or session_name(spec),
        )

    # poll and logs

    async def poll(self, spec: SessionSpec, state: dict[str, Any]) -> LaunchStatus:
        """From the StatefulSet, its pod, the volume claim and their events. ``running`` once
        the server's container runs, ``ready`` once the pod is Ready and the server answers
        ``api/status`` with the token; a server that stops answering for a while (the
        readiness probe failing) is still running. A failure's reason does not quote the
        server's output: ``logs`` has it. API errors raise (a ConfigError in words) rather
        than guess how the session is doing."""
        api = await self.kube.api()
        core = client.CoreV1Api(api)
        namespace, name = self._where(spec, state)
        statefulset = await self._statefulset(client.AppsV1Api(api), namespace, name)
        if statefulset is None:
            return LaunchStatus(LaunchPhase.STOPPED, reason="its Kubernetes StatefulSet is gone")
        if not statefulset.spec.replicas:
            return LaunchStatus(LaunchPhase.STOPPED, reason="hibernated")
        pod = await self._pod(core, namespace, name)
        if pod is not None and pod.metadata.deletion_timestamp is not None:
            pod = None  # on its way out; the StatefulSet makes a new one
        url = state.get("url")
        # The server itself must answer with the token, not only the probe's /api.
        if (
            pod is not None
            and status.pod_ready(pod)
            and url
            and await answers(self.http, url, spec.token)
        ):
            return status.running(url, repository=bool(spec.repository))
        claim = await self.kube.call(
            "read the session's volume claim",
            namespace,
            core.read_namespaced_persistent_volume_claim,
            claim_name(name),
            namespace,
            missing_ok=True,
        )
        events = await self._events(core, namespace, pod, claim)
        seen = status.describe(pod, claim, events, repository=bool(spec.repository))
        return LaunchStatus(seen.phase, url=url, steps=seen.steps, reason=seen.reason)

    async def _events(
        self,
        core: client.CoreV1Api,
        namespace: str,
        pod: client.V1Pod | None,
        claim: client.V1PersistentVolumeClaim | None,
    ) -> list[client.CoreV1Event]:
        """The events of the pod and of a claim not yet bound, oldest first."""
        found: list[client.CoreV1Event] = []
        for kind, uid in status.event_sources(pod, claim):
            listing = await self.kube.call(
                "list the session's events",
                namespace,
                core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.kind={kind},involvedObject.uid={uid}",
            )
            found.extend(listing.items)
        return status.oldest_first(found)

    async def logs(self, spec: SessionSpec, state: dict[str, Any], tail: int) -> str:
        """The output of the container :func:`.status.log_source` picks; empty while no
        container has run."""
        api = await self.kube.api()
        core = client.CoreV1Api(api)
        namespace, name = self._where(spec, state)
        pod = await self._pod(core, namespace, name)
        if pod is None:
            return ""
        container, previous = status.log_source(pod)
        text: str | None = await self.kube.call(
            "read the session's log",
            namespace,
            core.read_namespaced_pod_log,
            pod_name(name),
            namespace,
            container=container,
            tail_lines=tail,
            previous=previous,
            missing_ok=True,
            none_on=(400,),  # waiting to start: no log yet
        )
        return text or ""

    async def _statefulset(self, apps: client.AppsV1Api, namespace: str, name: str) -> Any:
        """The session's StatefulSet, None if there is none."""
        return await self.kube.call(
            "read the session's StatefulSet",
            namespace,
            apps.read_namespaced_stateful_set,
            name,
            namespace,
            missing_ok=True,
        )

    async def _pod(self, core: client.CoreV1Api, namespace: str, name: str) -> Any:
        """The StatefulSet's one pod, None if there is none."""
        return await self.kube.call(
            "read the session's pod",
            namespace,
            core.read_namespaced_pod,
            pod_name(name),
            namespace,
            missing_ok=True,
        )

    async def check_image(self, image: str) -> None:
        await registry.check_image(image, self.settings)

    async def close(self) -> None:
        await self.http.aclose()
        await self.kube.close()
