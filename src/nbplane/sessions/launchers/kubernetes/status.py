"""How a session's start is going, read from its pod, its volume claim and their events: the
steps a user sees (volume, scheduled, image, repository, container, ready), the phase, and why
it failed in words. Pure functions of what the API server returned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nbplane.platform.kube import client
from nbplane.sessions.launchers.base import LaunchPhase, LaunchStatus, LaunchStep, StepStatus
from nbplane.sessions.launchers.kubernetes.manifests import CONTAINER, REPOSITORY

IMAGE_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
GENERIC_EXITS = {"Error", "Completed"}

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


def running(url: str, *, repository: bool) -> LaunchStatus:
    """A server that answers with its token: every step done."""
    steps = [LaunchStep(step, StepStatus.DONE) for step in _step_names(repository)]
    return LaunchStatus(LaunchPhase.RUNNING, url=url, ready=True, steps=steps)


def pod_ready(pod: client.V1Pod) -> bool:
    condition = _condition(pod, "Ready")
    return condition is not None and condition.status == "True"


def event_sources(
    pod: client.V1Pod | None, claim: client.V1PersistentVolumeClaim | None
) -> list[tuple[str, str]]:
    """The objects whose events say how the start goes, as (kind, uid): the pod, and its
    volume claim while it is not bound."""
    objects = [("Pod", _uid(pod))]
    if claim is not None and (claim.status and claim.status.phase) != "Bound":
        objects.append(("PersistentVolumeClaim", _uid(claim)))
    return [(kind, uid) for kind, uid in objects if uid]


def oldest_first(events: list[client.CoreV1Event]) -> list[client.CoreV1Event]:
    return sorted(events, key=_event_time)


def log_source(pod: client.V1Pod) -> tuple[str, bool]:
    """The container whose output a user needs, and whether of its run before: the server's,
    or the clone's while it has not succeeded; the run before when the current one, restarted
    after a crash, is not ready (the crash is what a user needs to see)."""
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
    return name, previous


def _container_spec(pod: client.V1Pod, name: str = CONTAINER) -> client.V1Container:
    """The server's container, or the init container ``name`` (empty if the pod has none)."""
    spec = pod.spec
    containers = spec.containers + (spec.init_containers or []) if spec else []
    return next((c for c in containers if c.name == name), client.V1Container(name=name))


def _uid(item: Any) -> str:
    return str(item.metadata.uid) if item is not None and item.metadata else ""
