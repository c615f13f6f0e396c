"""The Kubernetes session launcher: each session is a StatefulSet of one pod with a volume for
its workspace, a Service in front of it and a Secret with its environment.

Hibernating scales the StatefulSet to zero: the pod goes, the volume (a PersistentVolumeClaim
made from the StatefulSet's claim template) stays, and scaling back to one mounts it again.
Credentials (the server's token, the user's environment and granted connections) reach the
container through the Secret (``envFrom``), never as values in the pod spec, which anyone
allowed to read StatefulSets or Pods could see. The Service and the Secret are owned by the
StatefulSet, so deleting it by hand takes them along; the volume is deleted only on purge.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import ipaddress
import logging
import random
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from nbplane.errors import ConfigError, InvalidInput
from nbplane.platform.kube import (
    MANAGED_BY,
    KubeClient,
    client,
    dns_label,
    label_value,
    requests_and_limits,
    secret_env,
)
from nbplane.sessions.jupyter_api import answers, session_client
from nbplane.sessions.launchers.base import (
    LaunchPhase,
    LaunchStatus,
    LaunchStep,
    SessionLauncher,
    SessionSpec,
    StepStatus,
    check_spec,
)
from nbplane.settings import Settings

log = logging.getLogger("nbplane.sessions")

CONTAINER = "notebook"
REPOSITORY = "repository"
"""The init container that clones a session's repository into its workspace."""
CLONE_SCRIPT = """\
if [ -e .git ]; then
    echo "nbplane: the workspace has its repository already"
    exit 0
fi
echo "nbplane: cloning the repository into the workspace"
set -e
# Cloned beside, then moved in: a fresh volume may hold lost+found, and git clones only into
# an empty directory.
git clone --quiet --no-checkout -- "$NBPLANE_SESSION_REPOSITORY" .nbplane-clone
mv .nbplane-clone/.git .git
rmdir .nbplane-clone
git -c advice.detachedHead=false checkout --quiet --force "${NBPLANE_SESSION_COMMIT:-HEAD}" --
echo "nbplane: repository checked out"
"""
"""Run in the session's image (git needed) on the workspace, once: a resumed session keeps its
clone and the user's changes. The URL (it may carry credentials) and commit come from the
Secret."""
VOLUME = "workspace"
COMPONENT = {"app.kubernetes.io/component": "session"}
USERS_GROUP = 100
"""The group of the Jupyter Docker Stacks' user (jovyan); the pod's ``fsGroup``, so a fresh
volume is writable to it, as in KubeSpawner and Zero to JupyterHub."""
STOP_GRACE_SECONDS = 15
"""Time Jupyter gets on SIGTERM to shut its kernels down."""
ANSWER_TIMEOUT = 2.0
"""Seconds a ready check of the server's API may take."""
REGISTRY_TIMEOUT = 10.0
IMAGE_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
GENERIC_EXITS = {"Error", "Completed"}
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


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
        port = _port_of(existing) if existing is not None else await self._free_port(namespace)
        url = self._url(spec, name, namespace, port)
        await self._put_secret(core, namespace, name, labels, spec)
        if existing is None:
            statefulset = self.statefulset(spec, name, labels, port, url)
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
        service = client.V1Service(
            metadata=client.V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
            spec=client.V1ServiceSpec(
                selector=_selector(name),
                ports=[client.V1ServicePort(name="http", port=port, target_port="http")],
            ),
        )
        await self.kube.call(
            "create a Service",
            namespace,
            core.create_namespaced_service,
            namespace,
            service,
            none_on=(409,),
        )
        await self.kube.own_secret(namespace, name, owner)
        return {"namespace": namespace, "name": name, "port": port, "url": url}

    async def _put_secret(
        self,
        core: client.CoreV1Api,
        namespace: str,
        name: str,
        labels: dict[str, str],
        spec: SessionSpec,
    ) -> None:
        """The server's token and the session's environment, created or replaced whole."""
        data: dict[str, bytes | str] = {
            key: base64.b64encode(value.encode()).decode()
            for key, value in {
                **spec.environment,
                **_repository(spec),
                "JUPYTER_TOKEN": spec.token,
            }.items()
        }
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=labels), type="Opaque", data=data
        )
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
                [{"op": "replace", "path": "/data", "value": data}],
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
            label_selector=_selector_text({**MANAGED_BY, **COMPONENT}),
        )
        taken = {port.port for service in services.items for port in service.spec.ports or []}
        free = [port for port in range(first, last + 1) if port not in taken]
        if not free:
            raise ConfigError(
                f"all ports of {first}-{last} are taken by sessions in namespace {namespace!r}",
                field="kubernetes_session_ports",
            )
        return random.choice(free)

    def _url(self, spec: SessionSpec, name: str, namespace: str, port: int) -> str:
        template = self.settings.kubernetes_session_url_template
        try:
            url = template.format(service=name, namespace=namespace, port=port, session=spec.id)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"bad session URL template {template!r}: {exc!r}; placeholders are {{service}}, "
                "{namespace}, {port} and {session}",
                field="kubernetes_session_url_template",
            ) from None
        return url if url.endswith("/") else url + "/"

    def statefulset(
        self, spec: SessionSpec, name: str, labels: dict[str, str], port: int, url: str
    ) -> client.V1StatefulSet:
        """One pod running the Jupyter server on the workspace volume; the token comes from the
        Secret as ``JUPYTER_TOKEN``, which Jupyter reads itself."""
        workspace = self.settings.kubernetes_session_workspace.rstrip("/") or "/"
        base_url = urllib.parse.urlsplit(url).path or "/"
        command = [
            self.settings.session_command,
            "--no-browser",
            "--allow-root",  # some images run as root; harmless for others
            "--ip=0.0.0.0",
            f"--port={port}",
            "--ServerApp.port_retries=0",  # another port would not be the Service's
            f"--ServerApp.base_url={base_url}",
            f"--ServerApp.root_dir={workspace}",
        ]
        if spec.directory:  # opened by JupyterLab; the server starts also if it does not exist
            directory = urllib.parse.quote(spec.directory.strip("/"))
            command.append(f"--LabApp.default_url=/lab/tree/{directory}")
        init_containers = []
        if spec.repository:
            init_containers.append(
                client.V1Container(
                    name=REPOSITORY,
                    image=spec.image or self.settings.kubernetes_session_image,
                    command=["sh", "-c", CLONE_SCRIPT],
                    working_dir=workspace,
                    env_from=secret_env(name),
                    env=[client.V1EnvVar(name="HOME", value=workspace)],
                    volume_mounts=[client.V1VolumeMount(name=VOLUME, mount_path=workspace)],
                )
            )
        quantities = {
            key: value for key, value in (("cpu", spec.cpu), ("memory", spec.memory)) if value
        }
        container = client.V1Container(
            name=CONTAINER,
            image=spec.image or self.settings.kubernetes_session_image,
            command=command,
            working_dir=workspace,
            ports=[client.V1ContainerPort(name="http", container_port=port)],
            env_from=secret_env(name),
            env=[
                client.V1EnvVar(name="HOME", value=workspace),
                client.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            ],
            resources=requests_and_limits(quantities),
            volume_mounts=[client.V1VolumeMount(name=VOLUME, mount_path=workspace)],
            readiness_probe=client.V1Probe(
                # /api answers without a token; /api/status would need it in the pod spec.
                http_get=client.V1HTTPGetAction(path=f"{base_url}api", port="http"),
                period_seconds=1,
                failure_threshold=3,
            ),
        )
        claim = client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=VOLUME, labels=labels),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=self.settings.kubernetes_session_storage_class,
                resources=client.V1VolumeResourceRequirements(
                    requests={"storage": self.settings.kubernetes_session_storage}
                ),
            ),
        )
        annotations = {"nbplane.io/session-id": spec.id, "nbplane.io/user-name": spec.user}
        return client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
            spec=client.V1StatefulSetSpec(
                replicas=1,
                service_name=name,
                selector=client.V1LabelSelector(match_labels=_selector(name)),
                volume_claim_templates=[claim],
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                    spec=client.V1PodSpec(
                        init_containers=init_containers or None,
                        containers=[container],
                        security_context=client.V1PodSecurityContext(fs_group=USERS_GROUP),
                        automount_service_account_token=False,  # a session needs no API access
                        enable_service_links=False,  # no variables about others' Services
                        termination_grace_period_seconds=STOP_GRACE_SECONDS,
                    ),
                ),
            ),
        )

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
        if pod is not None and _ready(pod) and url and await answers(self.http, url, spec.token):
            names = _step_names(bool(spec.repository))
            steps = [LaunchStep(step, StepStatus.DONE) for step in names]
            return LaunchStatus(LaunchPhase.RUNNING, url=url, ready=True, steps=steps)
        claim = await self.kube.call(
            "read the session's volume claim",
            namespace,
            core.read_namespaced_persistent_volume_claim,
            claim_name(name),
            namespace,
            missing_ok=True,
        )
        events = await self._events(core, namespace, pod, claim)
        status = describe(pod, claim, events, repository=bool(spec.repository))
        return LaunchStatus(status.phase, url=url, steps=status.steps, reason=status.reason)

    async def _events(
        self,
        core: client.CoreV1Api,
        namespace: str,
        pod: client.V1Pod | None,
        claim: client.V1PersistentVolumeClaim | None,
    ) -> list[client.CoreV1Event]:
        """The events of the pod and of a claim not yet bound, oldest first."""
        objects = [("Pod", _uid(pod))]
        if claim is not None and (claim.status and claim.status.phase) != "Bound":
            objects.append(("PersistentVolumeClaim", _uid(claim)))
        found: list[client.CoreV1Event] = []
        for kind, uid in objects:
            if not uid:
                continue
            listing = await self.kube.call(
                "list the session's events",
                namespace,
                core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.kind={kind},involvedObject.uid={uid}",
            )
            found.extend(listing.items)
        return sorted(found, key=_event_time)

    async def logs(self, spec: SessionSpec, state: dict[str, Any], tail: int) -> str:
        api = await self.kube.api()
        core = client.CoreV1Api(api)
        namespace, name = self._where(spec, state)
        pod = await self._pod(core, namespace, name)
        return "" if pod is None else await self._log(core, namespace, pod, tail)

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

    async def _log(
        self, core: client.CoreV1Api, namespace: str, pod: client.V1Pod, tail: int
    ) -> str:
        """The server's output, or the clone's while it has not succeeded; that of the run
        before when the current one, restarted after a crash, is not ready (the crash is what
        a user needs to see). Empty while no container has run."""
        name = CONTAINER
        status = _container_status(pod)
        clone = _container_status(pod, REPOSITORY)
        if clone is not None and not _cloned(clone):
            name, status = REPOSITORY, clone
        previous = bool(
            status is not None
            and not status.ready
            and status.state
            and status.state.running
            and status.last_state
            and status.last_state.terminated
        )
        text: str | None = await self.kube.call(
            "read the session's log",
            namespace,
            core.read_namespaced_pod_log,
            _name(pod),
            namespace,
            container=name,
            tail_lines=tail,
            previous=previous,
            missing_ok=True,
            none_on=(400,),  # waiting to start: no log yet
        )
        return text or ""

    # images

    async def check_image(self, image: str) -> None:
        """Ask the image's registry (Docker Registry HTTP API v2, anonymously) whether it has
        the image, unless it is trusted. Only a definite "no" refuses it: a registry that cannot
        be reached or asks for credentials leaves the answer to Kubernetes, whose pull error
        the session then shows."""
        if image == self.settings.kubernetes_session_image:
            return
        reference = ImageReference.parse(image)
        patterns = [p.strip() for p in self.settings.kubernetes_session_trusted_images.split(",")]
        if any(
            fnmatch.fnmatchcase(form, pattern)
            for pattern in patterns
            if pattern
            for form in (image, reference.canonical)
        ):
            return
        exists = await manifest_exists(reference)
        if exists is False:
            raise InvalidInput(
                f"image {image!r} not found: {reference.registry} has no {reference.repository}"
                f"{reference.separator}{reference.reference} that can be pulled anonymously "
                "(a private image's registry must be listed in "
                "NBPLANE_KUBERNETES_SESSION_TRUSTED_IMAGES)",
                field="image",
            )

    async def close(self) -> None:
        await self.http.aclose()
        await self.kube.close()


STEPS = ("volume", "scheduled", "image", "container", "ready")


def describe(
    pod: client.V1Pod | None,
    claim: client.V1PersistentVolumeClaim | None,
    events: list[client.CoreV1Event],
    *,
    repository: bool = False,
) -> LaunchStatus:
    """Steps, phase and reason of a session not (yet) ready, from its pod, volume claim and
    their events: the volume bound, the pod scheduled, the image pulled, the container
    running (the phase is then ``running``, not ready), the server ready. A pull error, a
    crash, a container that cannot be created, an unschedulable pod (unless the cluster is
    scaling up for it) or an evicted pod fail it."""
    steps = [_volume_step(claim, events)]
    if pod is None:
        names = _step_names(repository)[1:]
        steps += [LaunchStep(name, StepStatus.PENDING) for name in names]
    else:
        container = _container_status(pod)
        clone = _container_status(pod, REPOSITORY)
        steps += [_scheduled_step(pod, events), _image_step(pod, [clone, container], events)]
        if _container_spec(pod, REPOSITORY).command:
            steps.append(_repository_step(clone, pulled=steps[-1].status is StepStatus.DONE))
        steps.append(_container_step(pod, container, pulled=steps[-1].status is StepStatus.DONE))
        started = steps[-1].status is StepStatus.DONE
        steps.append(
            LaunchStep("ready", StepStatus.RUNNING, "waiting for the server to answer")
            if started
            else LaunchStep("ready", StepStatus.PENDING)
        )
    failures = [s.detail or s.name for s in steps if s.status is StepStatus.FAILED]
    if pod is not None and pod.status and pod.status.phase in ("Failed", "Succeeded"):
        said = ": ".join(part for part in (pod.status.reason, pod.status.message) if part)
        failures.append(said or f"its pod {pod.status.phase.lower()}")
    if failures:
        return LaunchStatus(LaunchPhase.FAILED, steps=steps, reason="; ".join(failures))
    if steps[-1].status is StepStatus.RUNNING:
        return LaunchStatus(LaunchPhase.RUNNING, steps=steps)
    return LaunchStatus(LaunchPhase.STARTING, steps=steps)


def _step_names(repository: bool) -> tuple[str, ...]:
    return STEPS[:3] + ((REPOSITORY,) if repository else ()) + STEPS[3:]


def _volume_step(
    claim: client.V1PersistentVolumeClaim | None, events: list[client.CoreV1Event]
) -> LaunchStep:
    phase = claim.status.phase if claim is not None and claim.status else None
    if claim is None:
        return LaunchStep("volume", StepStatus.PENDING)
    if phase == "Bound":
        capacity = (claim.status.capacity if claim.status else None) or {}
        return LaunchStep("volume", StepStatus.DONE, capacity.get("storage"))
    if phase == "Lost":
        return LaunchStep("volume", StepStatus.FAILED, "its workspace volume is lost")
    said = [e for e in events if e.involved_object.kind == "PersistentVolumeClaim"]
    return LaunchStep("volume", StepStatus.RUNNING, said[-1].message if said else None)


def _scheduled_step(pod: client.V1Pod, events: list[client.CoreV1Event]) -> LaunchStep:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.status == "True":
        return LaunchStep("scheduled", StepStatus.DONE, pod.spec.node_name if pod.spec else None)
    message = scheduled.message if scheduled else None
    if (
        scheduled is not None
        and scheduled.reason == "Unschedulable"
        and not any(e.reason == "TriggeredScaleUp" for e in events)
    ):
        return LaunchStep("scheduled", StepStatus.FAILED, f"no node can run it: {message}")
    return LaunchStep("scheduled", StepStatus.RUNNING, message)


def _image_step(
    pod: client.V1Pod,
    statuses: list[client.V1ContainerStatus | None],
    events: list[client.CoreV1Event],
) -> LaunchStep:
    """Pulled once a container of the image (the clone's or the server's) has run."""
    image = _container_spec(pod).image
    for status in statuses:
        if status is None or status.state is None:
            continue
        state = status.state
        if state.waiting is not None and state.waiting.reason in IMAGE_ERRORS:
            said = state.waiting.message or state.waiting.reason
            return LaunchStep("image", StepStatus.FAILED, f"image {image} cannot be pulled: {said}")
        if (
            state.running
            or state.terminated
            or (status.last_state and status.last_state.terminated)
        ):
            return LaunchStep("image", StepStatus.DONE, image)
    if not _scheduled(pod):
        return LaunchStep("image", StepStatus.PENDING, image)
    pulling = [e for e in events if e.reason == "Pulling"]
    return LaunchStep("image", StepStatus.RUNNING, pulling[-1].message if pulling else image)


def _repository_step(clone: client.V1ContainerStatus | None, *, pulled: bool) -> LaunchStep:
    state = clone.state if clone else None
    if clone is None or state is None or not pulled:
        return LaunchStep(REPOSITORY, StepStatus.PENDING)
    if _cloned(clone):
        return LaunchStep(REPOSITORY, StepStatus.DONE)
    ended = _failed_run(clone)
    if ended is not None:
        said = f"cloning the repository failed (exit code {ended.exit_code})"
        return LaunchStep(REPOSITORY, StepStatus.FAILED, said)
    if state.running is not None:
        return LaunchStep(REPOSITORY, StepStatus.RUNNING, "git clone")
    return LaunchStep(REPOSITORY, StepStatus.PENDING)


def _container_step(
    pod: client.V1Pod, container: client.V1ContainerStatus | None, *, pulled: bool
) -> LaunchStep:
    state = container.state if container else None
    if container is None or state is None:
        return LaunchStep("container", StepStatus.PENDING)
    if state.waiting is not None and state.waiting.reason in CONFIG_ERRORS:
        said = state.waiting.message or state.waiting.reason
        return LaunchStep("container", StepStatus.FAILED, f"its container cannot start: {said}")
    if _crashed(pod):
        return LaunchStep("container", StepStatus.FAILED, _exit_reason(pod, container))
    if state.running is not None:
        return LaunchStep("container", StepStatus.DONE)
    return LaunchStep("container", StepStatus.RUNNING if pulled else StepStatus.PENDING)


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    conditions = (pod.status.conditions if pod.status else None) or []
    return next((c for c in conditions if c.type == kind), None)


def _scheduled(pod: client.V1Pod) -> bool:
    condition = _condition(pod, "PodScheduled")
    return condition is not None and condition.status == "True"


def _ready(pod: client.V1Pod) -> bool:
    condition = _condition(pod, "Ready")
    return condition is not None and condition.status == "True"


def _container_status(pod: client.V1Pod, name: str = CONTAINER) -> client.V1ContainerStatus | None:
    """The status of the server's container, or of the init container ``name``."""
    status = pod.status
    found = (
        (status.container_statuses or []) + (status.init_container_statuses or []) if status else []
    )
    return next((s for s in found if s.name == name), None)


def _cloned(clone: client.V1ContainerStatus) -> bool:
    terminated = clone.state.terminated if clone.state else None
    return terminated is not None and terminated.exit_code == 0


def _failed_run(status: client.V1ContainerStatus) -> client.V1ContainerStateTerminated | None:
    """How the container's last run failed, if it did and has not been replaced by a run
    that is ready."""
    state = status.state
    if state is None:
        return None
    ended = state.terminated or (status.last_state.terminated if status.last_state else None)
    if ended is None or status.ready or ended.exit_code == 0:
        return None
    return ended


def _crashed(pod: client.V1Pod) -> bool:
    """The server exited: it is not running, or it runs again after a crash and is not ready
    (it never answered, or broke)."""
    status = _container_status(pod)
    if status is None or status.state is None or status.ready:
        return False
    state = status.state
    if state.terminated is not None:
        return True
    if state.waiting is not None and state.waiting.reason == "CrashLoopBackOff":
        return True
    return state.running is not None and bool(status.last_state and status.last_state.terminated)


def _exit_reason(pod: client.V1Pod, status: client.V1ContainerStatus) -> str:
    """ "the server exited with code 1", with Kubernetes' reason when it says more
    (OOMKilled: the memory limit) and the runtime's message (a command not found)."""
    ended = (status.state.terminated if status.state else None) or (
        status.last_state.terminated if status.last_state else None
    )
    if ended is None:
        return "the server keeps exiting"
    said = f"the server exited with code {ended.exit_code}"
    if ended.reason == "OOMKilled":
        resources = _container_spec(pod).resources
        limit = ((resources.limits if resources else None) or {}).get("memory")
        said += f" (OOMKilled: it needed more than its memory limit{f' {limit}' if limit else ''})"
    elif ended.reason and ended.reason not in GENERIC_EXITS:
        said += f" ({ended.reason})"
    if ended.message:
        said += f": {ended.message.strip()}"
    return said


def _event_time(event: client.CoreV1Event) -> datetime:
    moment = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return moment or datetime.min.replace(tzinfo=UTC)


def _port_of(statefulset: client.V1StatefulSet) -> int:
    """The port a session's server listens on, as its StatefulSet says."""
    pod = statefulset.spec.template.spec if statefulset.spec else None
    containers = pod.containers if pod else []
    return next(p.container_port for c in containers for p in c.ports or [] if p.name == "http")


def _container_spec(pod: client.V1Pod, name: str = CONTAINER) -> client.V1Container:
    """The server's container, or the init container ``name`` (empty if the pod has none)."""
    spec = pod.spec
    containers = spec.containers + (spec.init_containers or []) if spec else []
    return next((c for c in containers if c.name == name), client.V1Container(name=name))


def _name(item: Any) -> str:
    """The name of an object read from the API (always set there; optional in the model)."""
    return str(item.metadata.name) if item is not None and item.metadata else ""


def _uid(item: Any) -> str:
    return str(item.metadata.uid) if item is not None and item.metadata else ""


def session_name(spec: SessionSpec) -> str:
    """``nbplane-<user, 20 characters>-<hash of the session id>``: a DNS label short enough
    for the StatefulSet's pods (their ``controller-revision-hash`` label adds 11 characters)."""
    digest = hashlib.sha256(spec.id.encode()).hexdigest()[:10]
    return f"{dns_label(f'nbplane-{spec.user}')[:28].strip('-')}-{digest}"


def pod_name(name: str) -> str:
    return f"{name}-0"


def claim_name(name: str) -> str:
    """The claim the StatefulSet controller makes from its template for pod 0."""
    return f"{VOLUME}-{name}-0"


def _repository(spec: SessionSpec) -> dict[str, str]:
    """What the clone needs, for the Secret (a repository URL may carry credentials)."""
    if not spec.repository:
        return {}
    return {
        "NBPLANE_SESSION_REPOSITORY": spec.repository,
        "NBPLANE_SESSION_COMMIT": spec.commit or "",
    }


def session_labels(spec: SessionSpec, name: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        **COMPONENT,
        "app.kubernetes.io/instance": name,
        "nbplane.io/session": label_value(spec.id),
        "nbplane.io/user": label_value(spec.user),
    }


def _selector(name: str) -> dict[str, str]:
    return {**MANAGED_BY, "app.kubernetes.io/instance": name}


def _selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


@dataclass(frozen=True)
class ImageReference:
    """An image reference split as registries see it: ``jupyter/base-notebook`` is
    ``registry-1.docker.io``, ``jupyter/base-notebook``, tag ``latest``."""

    registry: str
    repository: str
    reference: str
    """A tag or a digest."""

    @property
    def separator(self) -> str:
        return "@" if ":" in self.reference else ":"

    @property
    def canonical(self) -> str:
        registry = "docker.io" if self.registry == DOCKER_HUB else self.registry
        return f"{registry}/{self.repository}{self.separator}{self.reference}"

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        """Docker's reference grammar: ``[registry/]repository[:tag][@digest]``."""
        rest, _, digest = image.strip().partition("@")
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        name, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if registry in (DOCKER_HUB, "docker.io", "index.docker.io"):
            registry = DOCKER_HUB
            name = name if "/" in name else f"library/{name}"
        valid = (
            _REPOSITORY.fullmatch(name)
            and (not tag or _TAG.fullmatch(tag))
            and (not digest or _DIGEST.fullmatch(digest))
        )
        if not valid:
            raise InvalidInput(
                f"{image!r} is not an image reference; expected [registry/]name[:tag][@digest], "
                "e.g. 'quay.io/jupyter/base-notebook:2024-12-02'",
                field="image",
            )
        return cls(registry, name, digest or tag or "latest")


async def manifest_exists(image: ImageReference) -> bool | None:
    """Whether the registry has the image's manifest: ``HEAD /v2/<name>/manifests/<tag>``,
    with an anonymous bearer token when the registry asks for one (Docker Hub, GHCR, Quay).
    None when it cannot tell: unreachable, failing, or asking for credentials."""
    host = image.registry.rpartition(":")[0] if image.registry.count(":") == 1 else image.registry
    scheme = "http" if _loopback(host) else "https"  # Docker's default insecure registries
    url = f"{scheme}://{image.registry}/v2/{image.repository}/manifests/{image.reference}"
    headers = {"Accept": MANIFEST_TYPES}
    try:
        async with httpx.AsyncClient(timeout=REGISTRY_TIMEOUT, follow_redirects=True) as http:
            response = await http.head(url, headers=headers)
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer "):
                token = await _anonymous_token(http, challenge, image.repository)
                if token is None:
                    return None
                headers["Authorization"] = f"Bearer {token}"
                response = await http.head(url, headers=headers)
                if response.status_code in (401, 403):
                    return False  # Docker Hub's answer for a repository that does not exist
    except httpx.HTTPError as exc:
        log.warning("cannot ask %s whether it has %s: %s", image.registry, image.repository, exc)
        return None
    if response.status_code == 200:
        return True
    if response.status_code == 404:
        return False
    log.warning(
        "%s answered HTTP %d about %s; leaving it to Kubernetes",
        image.registry,
        response.status_code,
        image.repository,
    )
    return None


async def _anonymous_token(http: httpx.AsyncClient, challenge: str, repository: str) -> str | None:
    """The token a ``Bearer realm=...,service=...,scope=...`` challenge hands out anonymously."""
    fields = dict(_CHALLENGE.findall(challenge))
    if "realm" not in fields:
        return None
    params = {"scope": fields.get("scope") or f"repository:{repository}:pull"}
    if "service" in fields:
        params["service"] = fields["service"]
    response = await http.get(fields["realm"], params=params)
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
