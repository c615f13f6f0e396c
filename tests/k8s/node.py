"""A stand-in for the scheduler and the kubelet of the loopback test cluster, started by
``cluster.py``: it registers one Ready node, binds pending pods to it, runs their containers'
``command`` + ``args`` as local processes (the image is ignored), reports pod and container
status so the controllers (Jobs, StatefulSets, Deployments) work, stops processes of deleted pods,
and serves container logs to the apiserver like the kubelet (``/containerLogs``, CRI log files).

Volumes: the node provisions a directory for each PersistentVolumeClaim of a pod it binds (a
hostPath PersistentVolume bound to the claim, as a dynamic provisioner would) and gives an emptyDir
a directory of the pod, a configMap volume a directory of its keys as files. There are no mount
namespaces, so a mount is emulated by translating the
mount path where it appears in the container's command, args, env values and workingDir to that
directory: a server started with ``--root-dir=/home/jovyan`` writes into the claim's directory,
which outlives the pod.

Init containers run one after the other to completion before the containers start (a failing
one is restarted, with back-off, unless the pod's restartPolicy is Never).

The "image" is the node's own Python environment: a bare command is looked up beside the node's
Python first, and its PYTHONPATH is passed on. Pods share 127.0.0.1, so two replicas of a server
would collide on their declared port: a pod annotated ``node.nbplane.test/ports`` (``auto``, or
JSON ``{"8080": 41234}`` to choose) gets a free host port for each declared containerPort,
replaced wherever the number stands in its containers' command, args and env values; the node
records the mapping in the annotation ``node.nbplane.test/bound-ports`` and probes those ports.
A pod naming a serviceAccountName (without automountServiceAccountToken: false) acts as that
ServiceAccount: the node mints it a token (TokenRequest) and hands the containers a kubeconfig
holding it (``KUBECONFIG``), so the pod has exactly its Role's rights.

Not emulated: images, other volumes, resource limits, liveness and startup probes."""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import http.client
import http.server
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import urllib3
from kubernetes import client, watch
from kubernetes.client import ApiException

log = logging.getLogger("nbplane.node")

POD_IP = "127.0.0.1"
MERGE_PATCH = "application/merge-patch+json"
TERMINAL = ("Succeeded", "Failed")
MAX_BACKOFF = 10
"""Restarts wait 1, 2, 4, 8, then 10 s (the kubelet: 10 s doubling up to 5 minutes)."""
PARTIAL_LINE = 16 * 1024
"""Output without a newline is logged as a partial (``P``) record at this size."""
_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
PORTS = "node.nbplane.test/ports"
BOUND_PORTS = "node.nbplane.test/bound-ports"
TOKEN_SECONDS = 3600


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((POD_IP, 0))
        port: int = sock.getsockname()[1]
        return port


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def log_timestamp(moment: datetime.datetime) -> str:
    """Fixed width, so log timestamps compare as strings."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ConfigError(Exception):
    """A container's environment cannot be resolved (yet): CreateContainerConfigError."""


class VolumeNotReady(Exception):
    """A volume cannot be mounted yet (its claim is not bound): the container keeps waiting in
    ContainerCreating, as with the kubelet."""


@dataclass
class Instance:
    """One run of a container's process; a restart is a new instance with its own log file."""

    log_path: Path
    started_at: datetime.datetime
    process: subprocess.Popen[bytes] | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    finished_at: datetime.datetime | None = None
    exit_code: int = 0
    reason: str = ""
    message: str = ""

    def terminated(self) -> dict[str, Any]:
        assert self.finished_at is not None
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
        }
        if self.message:
            state["message"] = self.message
        return state


def kill(instances: Iterable[Instance], grace: float) -> None:
    """SIGTERM each process group, SIGKILL what is left after ``grace`` seconds, wait for all."""
    running = [i for i in instances if i.process and not i.finished.is_set()]
    for instance in running:
        _signal_group(instance, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for instance in running:
        if not instance.finished.wait(max(0.0, deadline - time.monotonic())):
            _signal_group(instance, signal.SIGKILL)
    for instance in running:
        instance.finished.wait(10)


def _signal_group(instance: Instance, signum: int) -> None:
    assert instance.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(instance.process.pid, signum)


class Container:
    """A container of a pod: its resolved command and environment, and its current and previous
    instance."""

    def __init__(self, runner: PodRunner, spec: client.V1Container) -> None:
        self.runner = runner
        self.spec = spec
        self.name = spec.name
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.cwd = runner.directory
        self.restart_count = 0
        self.instance: Instance | None = None
        self.previous: Instance | None = None
        self.ready = False
        self.done = False
        """Terminated and not to be restarted."""
        self.waiting = ("ContainerCreating", "")

    def configure(self) -> None:
        """Resolve env, envFrom and ``$(VAR)`` references through the API, like the kubelet."""
        image_path = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]
        )
        env = {"PATH": image_path, "HOSTNAME": self.runner.name}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        if self.runner.kubeconfig:
            env["KUBECONFIG"] = str(self.runner.kubeconfig)
        for source in self.spec.env_from or []:
            if source.config_map_ref:
                data = self.runner.config_map(
                    source.config_map_ref.name or "", optional=bool(source.config_map_ref.optional)
                )
            elif source.secret_ref:
                data = self.runner.secret(
                    source.secret_ref.name or "", optional=bool(source.secret_ref.optional)
                )
            else:
                continue
            for key, value in (data or {}).items():
                name = (source.prefix or "") + key
                if _ENV_NAME.fullmatch(name):
                    env[name] = value
        for variable in self.spec.env or []:
            if variable.value_from is None:
                env[variable.name] = expand(variable.value or "", env)
                continue
            resolved = self.runner.env_value(variable.name, variable.value_from)
            if resolved is not None:
                env[variable.name] = resolved
        mounts = self.mounts()
        ports = self.runner.ports
        for variable in self.spec.env or []:
            if variable.value_from is None:
                env[variable.name] = translate(translate_ports(env[variable.name], ports), mounts)
        self.argv = [
            translate(translate_ports(expand(part, env), ports), mounts)
            for part in [*(self.spec.command or []), *(self.spec.args or [])]
        ]
        if self.argv and "/" not in self.argv[0]:
            self.argv[0] = shutil.which(self.argv[0], path=env["PATH"]) or self.argv[0]
        self.env = env
        if self.spec.working_dir:
            self.cwd = Path(translate(self.spec.working_dir, mounts))

    def mounts(self) -> dict[str, Path]:
        """Mount path -> the directory standing in for it, longest paths first."""
        volumes = self.runner.volumes()
        found: dict[str, Path] = {}
        for mount in self.spec.volume_mounts or []:
            if mount.name in volumes:
                directory = volumes[mount.name] / (mount.sub_path or "")
                directory.mkdir(parents=True, exist_ok=True)
                found[mount.mount_path.rstrip("/") or "/"] = directory
        return dict(sorted(found.items(), key=lambda item: -len(item[0])))

    def start(self) -> None:
        """Start a new instance: its own process group, output into a CRI-format log file."""
        log_path = self.runner.log_dir / self.name / f"{self.restart_count}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        instance = Instance(log_path=log_path, started_at=now())
        self.instance = instance
        self.ready = False
        output = log_path.open("ab")
        try:
            if not self.argv:
                raise OSError("the nbplane test node runs only containers with a command")
            self.cwd.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            output.close()
            instance.finished_at = now()
            instance.exit_code, instance.reason, instance.message = 128, "StartError", str(error)
            instance.finished.set()
            self.runner.events.put(("exited", self, instance))
            return
        instance.process = process
        log.info("%s/%s: started %s (pid %d)", self.runner.key, self.name, self.argv, process.pid)
        self.runner.record_event("Started", f"Started container {self.name}")
        lock = threading.Lock()
        pumps = [
            threading.Thread(target=_pump, args=(stream, kind, output, lock), daemon=True)
            for stream, kind in ((process.stdout, "stdout"), (process.stderr, "stderr"))
        ]
        for pump in pumps:
            pump.start()
        threading.Thread(
            target=self._wait,
            args=(instance, pumps, output),
            daemon=True,
            name=f"wait-{self.runner.key}-{self.name}",
        ).start()
        probe = self.spec.readiness_probe
        if probe is None:
            self.ready = True
        else:
            threading.Thread(target=self._probe, args=(instance, probe), daemon=True).start()

    def _wait(self, instance: Instance, pumps: list[threading.Thread], output: BinaryIO) -> None:
        """When the main process exits the rest of its group goes too, as in a container."""
        assert instance.process is not None
        code = instance.process.wait()
        _signal_group(instance, signal.SIGKILL)
        for pump in pumps:
            pump.join()
        output.close()
        instance.exit_code = 128 - code if code < 0 else code
        instance.finished_at = now()
        instance.finished.set()
        log.info("%s/%s: exited %d", self.runner.key, self.name, instance.exit_code)
        self.runner.events.put(("exited", self, instance))

    def _probe(self, instance: Instance, probe: client.V1Probe) -> None:
        """Run the readiness probe with its timing and thresholds until the instance ends."""
        period = probe.period_seconds or 10
        ready, successes, failures = False, 0, 0
        if instance.finished.wait(probe.initial_delay_seconds or 0):
            return
        while True:
            if self._check(probe, probe.timeout_seconds or 1):
                successes, failures = successes + 1, 0
                if not ready and successes >= (probe.success_threshold or 1):
                    ready = True
                    self.runner.events.put(("ready", self, instance, True))
            else:
                successes, failures = 0, failures + 1
                if ready and failures >= (probe.failure_threshold or 3):
                    ready = False
                    self.runner.events.put(("ready", self, instance, False))
            if instance.finished.wait(period):
                return

    def _check(self, probe: client.V1Probe, timeout: float) -> bool:
        try:
            if probe.http_get:
                action = probe.http_get
                port = self._port(action.port)
                connection: http.client.HTTPConnection
                if (action.scheme or "HTTP").upper() == "HTTPS":
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    connection = http.client.HTTPSConnection(
                        action.host or POD_IP, port, timeout=timeout, context=context
                    )
                else:
                    connection = http.client.HTTPConnection(
                        action.host or POD_IP, port, timeout=timeout
                    )
                try:
                    headers = {h.name: h.value for h in action.http_headers or []}
                    connection.request("GET", action.path or "/", headers=headers)
                    return 200 <= connection.getresponse().status < 400
                finally:
                    connection.close()
            if probe.tcp_socket:
                port = self._port(probe.tcp_socket.port)
                with socket.create_connection((probe.tcp_socket.host or POD_IP, port), timeout):
                    return True
            if probe.var_exec:
                result = subprocess.run(
                    probe.var_exec.command or [],
                    cwd=self.cwd,
                    env=self.env,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                return result.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
        return True

    def _port(self, port: int | str) -> int:
        """The host port of a probe's port (a number or a declared port's name)."""
        if isinstance(port, str) and not port.isdigit():
            named = [p.container_port for p in self.spec.ports or [] if p.name == port]
            if not named:
                raise OSError(f"no port named {port}")
            port = named[0]
        return self.runner.ports.get(int(port), int(port))

    def status(self) -> dict[str, Any]:
        """This container's entry of ``status.containerStatuses``."""
        instance = self.instance
        state: dict[str, Any]
        if instance is None:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        elif not instance.finished.is_set():
            state = {"running": {"startedAt": rfc3339(instance.started_at)}}
        elif self.done:
            state = {"terminated": instance.terminated()}
        else:
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting container {self.name}",
                }
            }
        # Waiting to restart, the run that ended is the last state (also before the runner
        # has handled its exit).
        last = self.previous if state.get("waiting") is None or instance is None else instance
        return {
            "name": self.name,
            "image": self.spec.image or "",
            "imageID": "",
            "containerID": f"nbplane://{self.runner.uid}/{self.name}/{self.restart_count}",
            "ready": self.ready and state.get("running") is not None,
            "started": state.get("running") is not None,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": last.terminated()} if last else {},
        }


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` references; ``$$`` escapes; unknown references stay as they are."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def translate_ports(text: str, ports: dict[int, int]) -> str:
    """``text`` with each declared port number (a whole number, not part of a longer one)
    replaced by the pod's host port."""
    for declared, host in ports.items():
        text = re.sub(rf"(?<![\d.]){declared}(?![\d])", str(host), text)
    return text


def translate(text: str, mounts: dict[str, Path]) -> str:
    """``text`` with each mount path (as a whole path or its prefix) replaced by its directory,
    in one pass, so a directory put in is not translated again (``/tmp`` in ``/tmp/node/...``);
    the longest path wins where several match."""
    if not mounts:
        return text
    paths = "|".join(re.escape(path) for path in mounts)  # longest first
    return re.sub(rf"(?:{paths})(?=/|$|[^-\w.])", lambda match: str(mounts[match.group(0)]), text)


def _pump(stream: IO[bytes], kind: str, output: BinaryIO, lock: threading.Lock) -> None:
    """Copy a process's stdout or stderr into the log as CRI records: ``TIME STREAM F|P TEXT``
    (``P`` for a part of a line)."""
    pending = b""
    while chunk := os.read(stream.fileno(), 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        stamp = log_timestamp(now())
        records = [f"{stamp} {kind} F ".encode() + line + b"\n" for line in lines]
        if len(pending) >= PARTIAL_LINE:
            records.append(f"{stamp} {kind} P ".encode() + pending + b"\n")
            pending = b""
        if records:
            with lock:
                output.write(b"".join(records))
                output.flush()
    if pending:
        with lock:
            output.write(f"{log_timestamp(now())} {kind} P ".encode() + pending + b"\n")
            output.flush()
    stream.close()


class PodRunner:
    """Runs one pod bound to the node: starts its containers, restarts them per restartPolicy,
    reports status, and on deletion stops them and removes the pod. All of it happens on the
    runner's thread, driven by its events queue (process exits, probe results, restarts, stop)."""

    def __init__(self, node: Node, pod: client.V1Pod) -> None:
        assert pod.metadata and pod.spec
        self.node = node
        self.api = node.api
        self.pod = pod
        self.namespace = pod.metadata.namespace or "default"
        self.name = pod.metadata.name or ""
        self.uid = pod.metadata.uid or ""
        self.key = f"{self.namespace}_{self.name}_{self.uid}"
        self.thread = threading.Thread(
            target=self.run, name=f"pod-{self.namespace}/{self.name}", daemon=True
        )
        self.directory = node.workdir / "pods" / self.key
        self.log_dir = node.workdir / "logs" / self.key
        self.restart_policy = pod.spec.restart_policy or "Always"
        self.init_containers = [Container(self, spec) for spec in pod.spec.init_containers or []]
        self.containers = [Container(self, spec) for spec in pod.spec.containers]
        if self.init_containers:
            for container in self.containers:
                container.waiting = ("PodInitializing", "")
        self.initialized = not self.init_containers
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.phase = "Pending"
        self.start_time: datetime.datetime | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.published: dict[str, Any] | None = None
        self.ports: dict[int, int] = {}
        """Declared containerPort -> host port, for pods that ask (``PORTS``)."""
        self.kubeconfig: Path | None = None

    def stop(self, grace: float) -> None:
        """Ask the runner to stop the containers and remove the pod (from any thread)."""
        self.events.put(("stop", grace))

    def container(self, name: str | None) -> Container | None:
        if name is None and len(self.containers) == 1:
            return self.containers[0]
        return next((c for c in self.init_containers + self.containers if c.name == name), None)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s: runner failed", self.key)

    def _run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._bind_ports()
        retry = 0.05  # a claim binds in moments; a missing Secret may take long
        while errors := self._mint_token() or self._configure():
            log.info("%s: waiting for configuration: %s", self.key, errors)
            self._publish()
            try:
                event = self.events.get(timeout=retry)
            except queue.Empty:
                retry = min(2.0, retry * 2)
                continue
            if event[0] == "stop":
                self._terminate(event[1])
                return
        self.start_time = now()
        self._next_init()
        self._publish()
        while True:
            event = self.events.get()
            if event[0] == "stop":
                self._terminate(event[1])
                return
            if event[0] == "exited" and event[1] in self.init_containers:
                self._init_exited(event[1], event[2])
            elif event[0] == "exited":
                self._exited(event[1], event[2])
            elif event[0] == "restart":
                event[1].start()
            elif event[0] == "ready" and event[1].instance is event[2]:
                event[1].ready = event[3]
            self._publish()

    def _next_init(self) -> None:
        """Start the next init container; when all have completed, the containers."""
        pending = [c for c in self.init_containers if not c.done]
        if pending:
            pending[0].start()
            return
        self.initialized, self.phase = True, "Running"
        for container in self.containers:
            container.start()

    def _init_exited(self, container: Container, instance: Instance) -> None:
        if instance is not container.instance:
            return
        container.ready = False
        if instance.exit_code == 0:
            container.done = True
            self._next_init()
        elif self.restart_policy == "Never":
            container.done = True
            self.phase = "Failed"
        else:
            self._restart_later(container, instance)

    def _restart_later(self, container: Container, instance: Instance) -> None:
        container.previous = instance
        container.restart_count += 1
        delay = min(MAX_BACKOFF, 2 ** (container.restart_count - 1))
        timer = threading.Timer(delay, self.events.put, args=[("restart", container)])
        timer.daemon = True
        timer.start()
        self.record_event(
            "BackOff", f"Back-off {delay}s restarting container {container.name}", "Warning"
        )

    def _bind_ports(self) -> None:
        """Choose the pod's host ports (``PORTS``) and record them on the pod."""
        assert self.pod.metadata and self.pod.spec
        asked = (self.pod.metadata.annotations or {}).get(PORTS)
        if not asked:
            return
        chosen = {} if asked == "auto" else {int(k): int(v) for k, v in json.loads(asked).items()}
        for container in self.pod.spec.containers:
            for declared in container.ports or []:
                port = declared.container_port
                self.ports[port] = chosen.get(port) or free_port()
        self.api.patch_namespaced_pod(
            self.name,
            self.namespace,
            {"metadata": {"annotations": {BOUND_PORTS: json.dumps(self.ports)}}},
        )
        log.info("%s: ports %s", self.key, self.ports)

    def _mint_token(self) -> list[str]:
        """A kubeconfig with a token of the pod's ServiceAccount (TokenRequest, bound to the
        pod), for pods that name one and do not opt out of its token."""
        spec = self.pod.spec
        assert spec and self.pod.metadata
        account = spec.service_account_name
        if self.kubeconfig or not account or spec.automount_service_account_token is False:
            return []
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=TOKEN_SECONDS,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=self.name, uid=self.uid
                ),
            )
        )
        try:
            issued = self.api.create_namespaced_service_account_token(
                account, self.namespace, request
            )
        except ApiException as error:
            return [f"serviceaccount {account!r}: token request failed ({error.status})"]
        configuration = self.api.api_client.configuration
        kubeconfig = self.directory / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "pod",
                    "clusters": [
                        {
                            "name": "cluster",
                            "cluster": {
                                "server": configuration.host,
                                "certificate-authority": configuration.ssl_ca_cert,
                            },
                        }
                    ],
                    "users": [{"name": account, "user": {"token": issued.status.token}}],
                    "contexts": [
                        {
                            "name": "pod",
                            "context": {
                                "cluster": "cluster",
                                "user": account,
                                "namespace": self.namespace,
                            },
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        kubeconfig.chmod(0o600)
        self.kubeconfig = kubeconfig
        return []

    def _configure(self) -> list[str]:
        errors = []
        for container in self.init_containers + self.containers:
            try:
                container.configure()
            except ConfigError as error:
                container.waiting = ("CreateContainerConfigError", str(error))
                errors.append(str(error))
            except VolumeNotReady as error:
                container.waiting = ("ContainerCreating", str(error))
                errors.append(str(error))
        return errors

    def volumes(self) -> dict[str, Path]:
        """The pod's volumes the node can stand in for, by name: a claim's provisioned
        directory (once the claim is bound), an emptyDir's directory in the pod's."""
        assert self.pod.spec
        found: dict[str, Path] = {}
        for volume in self.pod.spec.volumes or []:
            if volume.empty_dir is not None:
                found[volume.name] = self.directory / "volumes" / volume.name
            elif volume.config_map is not None:
                found[volume.name] = self._config_map_volume(volume.name, volume.config_map)
            elif volume.persistent_volume_claim is not None:
                found[volume.name] = self.claimed(volume.persistent_volume_claim.claim_name)
        return found

    def _config_map_volume(self, name: str, source: client.V1ConfigMapVolumeSource) -> Path:
        """A directory holding the ConfigMap's keys as files (written once, at start)."""
        directory = self.directory / "volumes" / name
        data = self.config_map(source.name or "", optional=bool(source.optional))
        if not directory.exists():
            directory.mkdir(parents=True)
            for key, value in (data or {}).items():
                (directory / key).write_text(value, encoding="utf-8")
        return directory

    def claimed(self, claim: str) -> Path:
        try:
            found = self.api.read_namespaced_persistent_volume_claim(claim, self.namespace)
        except ApiException as error:
            if error.status == 404:
                raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found') from None
            raise
        assert found.spec and found.status
        if found.status.phase != "Bound" or not found.spec.volume_name:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound')
        volume = self.api.read_persistent_volume(found.spec.volume_name)
        assert volume.spec
        if volume.spec.host_path is None:
            raise ConfigError(f"volume {found.spec.volume_name} is not one the node provisioned")
        return Path(volume.spec.host_path.path)

    def _exited(self, container: Container, instance: Instance) -> None:
        if instance is not container.instance:
            return
        container.ready = False
        policy = self.restart_policy
        if policy == "Always" or (policy == "OnFailure" and instance.exit_code != 0):
            self._restart_later(container, instance)
            return
        container.done = True
        if all(c.done for c in self.containers):
            failed = any(
                c.instance is not None and c.instance.exit_code != 0 for c in self.containers
            )
            self.phase = "Failed" if failed else "Succeeded"

    def _terminate(self, grace: float) -> None:
        """Stop the containers (SIGTERM, SIGKILL after the grace period), then remove the pod."""
        instances = [c.instance for c in self.init_containers + self.containers if c.instance]
        if any(i.process and not i.finished.is_set() for i in instances):
            self.record_event("Killing", "Stopping containers")
        kill(instances, grace)
        log.info("%s: stopped; deleting the pod", self.key)
        try:
            self.api.delete_namespaced_pod(
                self.name,
                self.namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def _publish(self) -> None:
        """Merge-patch the pod's status (lists replaced whole); the uid in the patch makes it
        fail rather than touch a new pod of the same name."""
        ready = self.phase == "Running" and all(c.ready for c in self.containers)
        conditions = {
            "PodScheduled": "True",
            "Initialized": str(self.initialized),
            "ContainersReady": str(ready),
            "Ready": str(ready),
        }
        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": POD_IP,
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "conditions": [self._condition(kind, value) for kind, value in conditions.items()],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.start_time:
            status["startTime"] = rfc3339(self.start_time)
        if status == self.published or self.node.stopping.is_set():
            return
        try:
            self.api.patch_namespaced_pod_status(
                self.name,
                self.namespace,
                {"metadata": {"uid": self.uid}, "status": status},
                _content_type=MERGE_PATCH,
            )
            self.published = status
        except ApiException as error:
            log.warning("%s: status not updated: %s %s", self.key, error.status, error.reason)

    def _condition(self, kind: str, value: str) -> dict[str, str]:
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != value:
            previous = self.transitions[kind] = (value, rfc3339(now()))
        condition = {"type": kind, "status": value, "lastTransitionTime": previous[1]}
        if value == "False" and self.phase in TERMINAL:
            condition["reason"] = "PodCompleted"
        return condition

    def config_map(self, name: str, *, optional: bool) -> dict[str, str] | None:
        try:
            found = self.api.read_namespaced_config_map(name, self.namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return None
            raise ConfigError(f'configmap "{name}" not found') from None
        return dict(found.data or {})

    def secret(self, name: str, *, optional: bool) -> dict[str, str] | None:
        try:
            found = self.api.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404 and optional:
                return None
            raise ConfigError(f'secret "{name}" not found') from None
        return {
            key: base64.b64decode(value).decode("utf-8", "surrogateescape")
            for key, value in (found.data or {}).items()
        }

    def env_value(self, name: str, source: client.V1EnvVarSource) -> str | None:
        """The value of ``env[].valueFrom``; None for a missing optional key."""
        if source.secret_key_ref or source.config_map_key_ref:
            ref = source.secret_key_ref or source.config_map_key_ref
            assert ref is not None
            optional = bool(ref.optional)
            data = (
                self.secret(ref.name or "", optional=optional)
                if source.secret_key_ref
                else self.config_map(ref.name or "", optional=optional)
            )
            if data is not None and ref.key in data:
                return data[ref.key]
            if optional:
                return None
            raise ConfigError(f'couldn\'t find key {ref.key} in "{ref.name}" for {name}')
        if source.field_ref:
            return self._field(source.field_ref.field_path)
        raise ConfigError(f"{name}: only secretKeyRef, configMapKeyRef and fieldRef are supported")

    def _field(self, path: str) -> str:
        meta = self.pod.metadata
        spec = self.pod.spec
        assert meta is not None and spec is not None
        if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
            return str((getattr(meta, match.group(1)) or {}).get(match.group(2), ""))
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.node.name,
            "spec.serviceAccountName": spec.service_account_name or "",
            "status.hostIP": POD_IP,
            "status.podIP": POD_IP,
            "status.podIPs": POD_IP,
        }
        if path not in values:
            raise ConfigError(f"fieldRef {path} is not supported")
        return values[path]

    def record_event(self, reason: str, message: str, kind: str = "Normal") -> None:
        self.node.record_event(self.pod, reason, message, kind)


class Node:
    """The node: registration, the pod watch, the runners, the log endpoint."""

    def __init__(self, api: client.CoreV1Api, name: str, workdir: Path) -> None:
        self.api = api
        self.name = name
        self.workdir = workdir
        self.runners: dict[str, PodRunner] = {}
        """By pod uid; a runner stays until its pod is deleted, so logs stay readable."""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        """Set on shutdown: the API may be gone, runners no longer report."""

    def register(self, port: int) -> None:
        """Create the Node, then set its status: Ready, InternalIP, capacity, and the port of
        the log endpoint (the apiserver reaches the kubelet there)."""
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        try:
            self.api.create_node(
                client.V1Node(metadata=client.V1ObjectMeta(name=self.name, labels=labels))
            )
        except ApiException as error:
            if error.status != 409:
                raise
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        resources = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        stamp = rfc3339(now())
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasNo{kind}",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "nbplane test node",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        )
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": "nbplane",
                "systemUUID": "nbplane",
                "bootID": "nbplane",
                "kernelVersion": os.uname().release,
                "osImage": "nbplane test node",
                "containerRuntimeVersion": "nbplane://0",
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.api.patch_node_status(self.name, {"status": status}, _content_type=MERGE_PATCH)
        log.info("node %s registered, log endpoint on port %d", self.name, port)

    def serve_logs(self, cert: Path, key: Path, client_ca: Path) -> int:
        """Serve ``/containerLogs`` over HTTPS on loopback for the apiserver, which must present
        a certificate of the cluster's CA; returns the port."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(cert), str(key))
        server = LogServer((POD_IP, 0), LogHandler, self, context)
        threading.Thread(target=server.serve_forever, daemon=True, name="logs").start()
        return server.server_address[1]

    def run(self) -> None:
        """Follow the pods with a watch, listing again when the watch expires or fails."""
        while True:
            try:
                self._list_and_watch()
            except ApiException as error:  # 410 Gone: the watch's version expired
                log.info("pod watch ended (%s %s); listing again", error.status, error.reason)
            except Exception:  # one bad pod or a lost connection must not stop the node
                log.exception("pod watch failed; listing again")
                time.sleep(1)

    def _list_and_watch(self) -> None:
        listing = self.api.list_pod_for_all_namespaces()
        assert listing.metadata
        for pod in listing.items:
            self.handle(pod)
        for uid in set(self.runners) - {pod.metadata.uid for pod in listing.items if pod.metadata}:
            self.forget(uid)
        watcher = watch.Watch()
        for event in watcher.stream(
            self.api.list_pod_for_all_namespaces, resource_version=listing.metadata.resource_version
        ):
            if event["type"] == "DELETED":
                self.forget(event["object"].metadata.uid)
            elif event["type"] in ("ADDED", "MODIFIED"):
                self.handle(event["object"])

    def handle(self, pod: client.V1Pod) -> None:
        """Bind an unscheduled pod; start a runner for a new pod of ours; stop a deleted one."""
        meta, spec = pod.metadata, pod.spec
        assert meta and spec
        phase = pod.status.phase if pod.status else None
        if not spec.node_name:
            if meta.deletion_timestamp is None and phase == "Pending":
                self.provision(pod)
                self.bind(pod)
            return
        if spec.node_name != self.name:
            return
        uid = meta.uid or ""
        with self.lock:
            runner = self.runners.get(uid)
            if runner is None and meta.deletion_timestamp is None and phase not in TERMINAL:
                runner = self.runners[uid] = PodRunner(self, pod)
                runner.thread.start()
        if meta.deletion_timestamp is not None:
            grace = meta.deletion_grace_period_seconds
            if grace is None:
                grace = spec.termination_grace_period_seconds or 30
            if runner is not None:
                runner.stop(grace)
            else:
                self._delete(pod)

    def forget(self, uid: str) -> None:
        """The pod is gone: stop its processes at once (a forced deletion)."""
        with self.lock:
            runner = self.runners.pop(uid, None)
        if runner is not None:
            runner.stop(0)

    def provision(self, pod: client.V1Pod) -> None:
        """Play a dynamic provisioner for the pod's claims that have no volume: a directory and
        a hostPath PersistentVolume bound to the claim (the controller-manager binds the claim
        to it). Retained on release; the directories go with the cluster's work dir."""
        assert pod.metadata and pod.spec
        namespace = pod.metadata.namespace or ""
        for volume in pod.spec.volumes or []:
            if volume.persistent_volume_claim is None:
                continue
            try:
                claim = self.api.read_namespaced_persistent_volume_claim(
                    volume.persistent_volume_claim.claim_name, namespace
                )
            except ApiException as error:
                if error.status == 404:
                    continue  # the pod waits in ContainerCreating
                raise
            assert claim.metadata and claim.spec
            if claim.spec.volume_name:
                continue
            name = f"pvc-{claim.metadata.uid}"
            directory = self.workdir / "volumes" / name
            directory.mkdir(parents=True, exist_ok=True)
            requests = claim.spec.resources.requests if claim.spec.resources else None
            persistent = client.V1PersistentVolume(
                metadata=client.V1ObjectMeta(name=name, labels={"nbplane.io/node": self.name}),
                spec=client.V1PersistentVolumeSpec(
                    capacity={"storage": (requests or {}).get("storage", "1Gi")},
                    access_modes=claim.spec.access_modes or ["ReadWriteOnce"],
                    storage_class_name=claim.spec.storage_class_name or "",
                    persistent_volume_reclaim_policy="Retain",
                    host_path=client.V1HostPathVolumeSource(path=str(directory)),
                    claim_ref=client.V1ObjectReference(
                        api_version="v1",
                        kind="PersistentVolumeClaim",
                        namespace=namespace,
                        name=claim.metadata.name,
                        uid=claim.metadata.uid,
                    ),
                ),
            )
            try:
                self.api.create_persistent_volume(persistent)
            except ApiException as error:
                if error.status != 409:
                    raise
                continue
            log.info("provisioned %s for %s/%s", name, namespace, claim.metadata.name)

    def bind(self, pod: client.V1Pod) -> None:
        """Do the scheduler's job (there is only one node). The Status the API returns does not
        parse as the Binding the client expects, hence no preloading."""
        assert pod.metadata
        name, namespace = pod.metadata.name or "", pod.metadata.namespace or ""
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.name),
        )
        try:
            response = cast(
                urllib3.HTTPResponse,
                self.api.create_namespaced_pod_binding(
                    name, namespace, binding, _preload_content=False
                ),
            )
            response.drain_conn()
            response.release_conn()
        except ApiException as error:
            if error.status in (404, 409):
                return
            raise
        log.info("bound %s/%s", namespace, name)
        self.record_event(
            pod,
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {self.name}",
            "Normal",
            component="default-scheduler",
        )

    def _delete(self, pod: client.V1Pod) -> None:
        assert pod.metadata
        try:
            self.api.delete_namespaced_pod(
                pod.metadata.name or "",
                pod.metadata.namespace or "",
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0,
                    preconditions=(client.V1Preconditions(uid=pod.metadata.uid)),
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def runner_for(self, namespace: str, name: str) -> PodRunner | None:
        with self.lock:
            runners = [
                r for r in self.runners.values() if r.namespace == namespace and r.name == name
            ]
        return runners[-1] if runners else None

    def record_event(
        self, pod: client.V1Pod, reason: str, message: str, kind: str, *, component: str = "kubelet"
    ) -> None:
        """Best effort, as the kubelet's: a namespace being deleted refuses new events."""
        assert pod.metadata
        if self.stopping.is_set():
            return
        moment = now()
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{pod.metadata.name}.", namespace=pod.metadata.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version="v1",
                kind="Pod",
                name=pod.metadata.name,
                namespace=pod.metadata.namespace,
                uid=pod.metadata.uid,
            ),
            reason=reason,
            message=message,
            type=kind,
            count=1,
            first_timestamp=moment,
            last_timestamp=moment,
            source=client.V1EventSource(component=component, host=self.name),
        )
        try:
            self.api.create_namespaced_event(pod.metadata.namespace or "", event)
        except ApiException as error:
            log.debug("event %s not recorded: %s", reason, error.status)

    def shutdown(self) -> None:
        """Stop every container (the cluster is going away; the API may be gone already)."""
        self.stopping.set()
        with self.lock:
            runners = list(self.runners.values())
        kill(
            [c.instance for r in runners for c in r.init_containers + r.containers if c.instance],
            grace=3,
        )


class LogServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[LogHandler],
        node: Node,
        context: ssl.SSLContext,
    ) -> None:
        self.node = node
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True), address


class LogHandler(http.server.BaseHTTPRequestHandler):
    """The kubelet's ``GET /containerLogs/NAMESPACE/POD/CONTAINER`` with ``follow``,
    ``tailLines``, ``limitBytes``, ``timestamps``, ``sinceSeconds``, ``sinceTime``, ``previous``."""

    server: LogServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.fail(404, f"no handler for {url.path}")
            return
        namespace, pod, name = parts[1:]
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        runner = self.server.node.runner_for(namespace, pod)
        container = runner.container(name) if runner else None
        if container is None:
            self.fail(404, f'container "{name}" in pod "{pod}" not found')
            return
        previous = query.get("previous") == "true"
        instance = container.previous if previous else container.instance
        if instance is None:
            self.fail(
                400,
                f'previous terminated container "{name}" in pod "{pod}" not found'
                if previous
                else f'container "{name}" in pod "{pod}" is waiting to start: '
                f"{container.waiting[0]}",
            )
            return
        since = ""
        if "sinceSeconds" in query:
            since = log_timestamp(now() - datetime.timedelta(seconds=int(query["sinceSeconds"])))
        elif "sinceTime" in query:
            since = log_timestamp(datetime.datetime.fromisoformat(query["sinceTime"]))
        tail = int(query["tailLines"]) if "tailLines" in query else None
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        output = read_log(
            instance,
            follow=query.get("follow") == "true",
            tail=tail,
            since=since,
            timestamps=query.get("timestamps") == "true",
            gone=self._gone,
        )
        try:
            for data in output:
                if limit is not None:
                    data = data[:limit]
                    limit -= len(data)
                self.wfile.write(data)
                self.wfile.flush()
                if limit == 0:
                    break
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            output.close()

    def _gone(self) -> bool:
        """The client has closed the connection (it sends nothing else while it reads)."""
        return bool(select.select([self.connection], [], [], 0)[0])

    def fail(self, code: int, message: str) -> None:
        """A plain-text error, as the kubelet's: the apiserver passes it on as the message."""
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("log endpoint: " + format, *args)


def read_log(
    instance: Instance,
    *,
    follow: bool,
    tail: int | None,
    since: str,
    timestamps: bool,
    gone: Callable[[], bool],
) -> Generator[bytes]:
    """The instance's output from its CRI log file; with ``follow``, until it has exited or
    the reader is ``gone``."""

    def render(record: bytes) -> tuple[bytes, bool] | None:
        stamp, _, tag, content = record.split(b" ", 3)
        if since and stamp.decode() < since:
            return None
        whole = tag == b"F"
        return (stamp + b" " if timestamps else b"") + content + (b"\n" if whole else b""), whole

    with instance.log_path.open("rb") as file:
        buffer = b""

        def records() -> list[bytes]:
            nonlocal buffer
            buffer += file.read()
            *complete, buffer = buffer.split(b"\n")
            return complete

        rendered = [r for r in map(render, records()) if r]
        if tail is not None:
            # The last ``tail`` lines start after the end of the line before them.
            ends = [i for i, (_, whole) in enumerate(rendered) if whole]
            if tail < len(ends):
                rendered = rendered[ends[-tail - 1] + 1 :] if tail else []
        if rendered:
            yield b"".join(data for data, _ in rendered)
        while follow:
            finished = instance.finished.is_set()
            fresh = [r for r in map(render, records()) if r]
            if fresh:
                yield b"".join(data for data, _ in fresh)
            elif finished or gone():
                return
            else:
                instance.finished.wait(0.1)


def _exit_with_parent() -> None:
    """cluster.py holds our stdin open: end of file means the test process is gone, so stop
    (and stop the containers) as on SIGTERM."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--ca-file", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--name", default="nbplane-node")
    parser.add_argument("--tls-cert", required=True, type=Path)
    parser.add_argument("--tls-key", required=True, type=Path)
    parser.add_argument("--client-ca", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(threadName)s %(levelname)s %(message)s",
    )
    api = client.CoreV1Api(
        client.ApiClient(
            client.Configuration(
                host=args.server,
                api_key={"BearerToken": args.token_file.read_text().strip()},
                api_key_prefix={"BearerToken": "Bearer"},
                ssl_ca_cert=str(args.ca_file),
                connection_pool_maxsize=32,
            )
        )
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    node = Node(api, args.name, args.workdir)
    node.register(node.serve_logs(args.tls_cert, args.tls_key, args.client_ca))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        node.run()
    finally:
        node.shutdown()


if __name__ == "__main__":
    main()
