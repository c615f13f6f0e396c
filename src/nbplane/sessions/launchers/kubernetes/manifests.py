"""What a session is made of in Kubernetes, as objects to create: its names and labels, the
Secret with its environment, the StatefulSet running its server on a workspace volume, and the
Service in front of it. Building them asks the API server nothing."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse

from nbplane.errors import ConfigError
from nbplane.platform.kube import (
    MANAGED_BY,
    client,
    dns_label,
    label_value,
    requests_and_limits,
    secret_env,
)
from nbplane.sessions.launchers.base import SessionSpec
from nbplane.settings import Settings

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


def session_labels(spec: SessionSpec, name: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        **COMPONENT,
        "app.kubernetes.io/instance": name,
        "nbplane.io/session": label_value(spec.id),
        "nbplane.io/user": label_value(spec.user),
    }


def selector(name: str) -> dict[str, str]:
    return {**MANAGED_BY, "app.kubernetes.io/instance": name}


def selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def session_url(settings: Settings, spec: SessionSpec, name: str, namespace: str, port: int) -> str:
    """Where nbplane reaches the server: NBPLANE_KUBERNETES_SESSION_URL_TEMPLATE filled in,
    then the server's base URL ``/sessions/{id}/``, the path users reach it at through
    nbplane (so its pages' own links need no rewriting)."""
    template = settings.kubernetes_session_url_template
    try:
        url = template.format(service=name, namespace=namespace, port=port, session=spec.id)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"bad session URL template {template!r}: {exc!r}; placeholders are {{service}}, "
            "{namespace}, {port} and {session}",
            field="kubernetes_session_url_template",
        ) from None
    parts = urllib.parse.urlsplit(url)
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError(
            f"bad session URL template {template!r}: scheme, host and port only; the server's "
            "path is always /sessions/{id}/",
            field="kubernetes_session_url_template",
        )
    return f"{parts.scheme}://{parts.netloc}/sessions/{spec.id}/"


def secret(spec: SessionSpec, name: str, labels: dict[str, str]) -> client.V1Secret:
    """The server's token and the session's environment (with what the clone needs: a
    repository URL may carry credentials), base64 as the API wants them."""
    data: dict[str, bytes | str] = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in {
            **spec.environment,
            **_repository(spec),
            "JUPYTER_TOKEN": spec.token,
        }.items()
    }
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=labels), type="Opaque", data=data
    )


def _repository(spec: SessionSpec) -> dict[str, str]:
    """What the clone needs, for the Secret (a repository URL may carry credentials)."""
    if not spec.repository:
        return {}
    return {
        "NBPLANE_SESSION_REPOSITORY": spec.repository,
        "NBPLANE_SESSION_COMMIT": spec.commit or "",
    }


def statefulset(
    settings: Settings, spec: SessionSpec, name: str, labels: dict[str, str], port: int, url: str
) -> client.V1StatefulSet:
    """One pod running the Jupyter server on the workspace volume; the token comes from the
    Secret as ``JUPYTER_TOKEN``, which Jupyter reads itself."""
    workspace = settings.kubernetes_session_workspace.rstrip("/") or "/"
    base_url = urllib.parse.urlsplit(url).path or "/"
    command = [
        settings.session_command,
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
                image=spec.image or settings.kubernetes_session_image,
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
        image=spec.image or settings.kubernetes_session_image,
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
            storage_class_name=settings.kubernetes_session_storage_class,
            resources=client.V1VolumeResourceRequirements(
                requests={"storage": settings.kubernetes_session_storage}
            ),
        ),
    )
    annotations = {"nbplane.io/session-id": spec.id, "nbplane.io/user-name": spec.user}
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
        spec=client.V1StatefulSetSpec(
            replicas=1,
            service_name=name,
            selector=client.V1LabelSelector(match_labels=selector(name)),
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


def service(
    name: str, labels: dict[str, str], port: int, owner: client.V1OwnerReference
) -> client.V1Service:
    """The server's port under the session's name, owned by its StatefulSet."""
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels, owner_references=[owner]),
        spec=client.V1ServiceSpec(
            selector=selector(name),
            ports=[client.V1ServicePort(name="http", port=port, target_port="http")],
        ),
    )


def port_of(statefulset: client.V1StatefulSet) -> int:
    """The port a session's server listens on, as its StatefulSet says."""
    pod = statefulset.spec.template.spec if statefulset.spec else None
    containers = pod.containers if pod else []
    return next(p.container_port for c in containers for p in c.ports or [] if p.name == "http")
