"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver and
kube-controller-manager (built by ``scripts/kubernetes.sh``), plus ``node.py``, a Python process
that plays scheduler and kubelet for one node. Everything logs into files under the work dir."""

from __future__ import annotations

import base64
import ctypes
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, watch

KUBE_CACHE = Path(os.environ.get("NBPLANE_KUBE_CACHE") or Path.home() / ".cache" / "nbplane-kube")
"""Where ``scripts/kubernetes.sh`` puts the binaries (in ``bin``)."""
NODE_NAME = "nbplane-node"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
START_TIMEOUT = 90.0
FEATURE_GATES = "--feature-gates=TTLAfterFinished=true"
"""Alpha in 1.20 (beta, so on by default, from 1.21): Jobs' ``ttlSecondsAfterFinished``."""
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None)


class KubernetesUnavailable(RuntimeError):
    """The binaries are not built on this machine."""


@dataclass(frozen=True)
class KubeCluster:
    """A running cluster; the token belongs to ``admin`` in group ``system:masters``."""

    workdir: Path
    server: str
    token: str
    kubeconfig: Path
    ca_file: Path
    node_name: str = NODE_NAME

    @property
    def logs(self) -> Path:
        """etcd.log, kube-apiserver.log, kube-controller-manager.log, node.log; containers'
        output (CRI format) is under ``node/logs/NAMESPACE_POD_UID/CONTAINER/RESTARTS.log``."""
        return self.workdir / "logs"

    def api_client(self) -> client.ApiClient:
        """A client authenticated as admin; close it (it is a context manager)."""
        return client.ApiClient(
            client.Configuration(
                host=self.server,
                api_key={"BearerToken": self.token},
                api_key_prefix={"BearerToken": "Bearer"},
                ssl_ca_cert=str(self.ca_file),
            )
        )


def binaries() -> dict[str, Path]:
    """Paths of etcd, kube-apiserver and kube-controller-manager, or a clear error."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    etcd = shutil.which("etcd")
    if etcd:
        found["etcd"] = Path(etcd)
    else:
        missing.append("etcd")
    for name in ("kube-apiserver", "kube-controller-manager"):
        path = KUBE_CACHE / "bin" / name
        if os.access(path, os.X_OK):
            found[name] = path
        else:
            missing.append(str(path))
    if missing:
        raise KubernetesUnavailable(
            f"Kubernetes binaries missing ({', '.join(missing)}): run `bash scripts/kubernetes.sh`"
            " (as root; it installs etcd and builds the rest in 5 to 10 minutes)"
        )
    return found


def free_port() -> int:
    """A loopback port free right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_cluster(workdir: Path) -> Iterator[KubeCluster]:
    """Start etcd, kube-apiserver, kube-controller-manager and the node stand-in; wait until
    the API is ready and the node is Ready; stop them all on exit, also when starting fails.
    The processes also die with the thread that started them, so start it from one that lives
    as long as the cluster (pytest's main thread does)."""
    paths = binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    pki = workdir / "pki"
    pki.mkdir(exist_ok=True)
    _write_pki(pki)
    token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n', encoding="utf-8")
    (pki / "admin.token").write_text(token, encoding="utf-8")
    etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "admin.kubeconfig"
    _write_kubeconfig(kubeconfig, server, token, pki / "ca.crt")
    cluster = KubeCluster(
        workdir=workdir, server=server, token=token, kubeconfig=kubeconfig, ca_file=pki / "ca.crt"
    )

    with ExitStack() as stack:

        def start(name: str, argv: list[str], *, python: bool = False) -> subprocess.Popen[bytes]:
            """The node (``python``) watches its stdin instead of dying with the parent, so it
            can stop its containers first."""
            log = stack.enter_context((logs / f"{name}.log").open("ab"))
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if python else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=None if python else _die_with_parent,
            )
            stack.callback(_stop, process)
            return process

        etcd = start(
            "etcd",
            [
                str(paths["etcd"]),
                "--name=nbplane",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=nbplane=http://127.0.0.1:{etcd_peer_port}",
                "--unsafe-no-fsync",
            ],
        )
        apiserver = start(
            "kube-apiserver",
            [
                str(paths["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                FEATURE_GATES,
                # Pod logs: the apiserver calls the node's HTTPS endpoint on its InternalIP, checks
                # the node's certificate and presents a client certificate the node checks.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            ],
        )
        _wait_ready(cluster, {"etcd": etcd, "kube-apiserver": apiserver}, logs)
        controllers = start(
            "kube-controller-manager",
            [
                str(paths["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                "--port=0",
                "--secure-port=0",
                "--leader-elect=false",  # no listening at all
                "--controllers=*,-nodelifecycle,-serviceaccount-token",
                FEATURE_GATES,
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
            ],
        )
        node = start(
            "node",
            [
                sys.executable,
                str(Path(__file__).with_name("node.py")),
                f"--server={server}",
                f"--token-file={pki / 'admin.token'}",
                f"--ca-file={pki / 'ca.crt'}",
                f"--workdir={workdir / 'node'}",
                f"--name={NODE_NAME}",
                f"--tls-cert={pki / 'kubelet.crt'}",
                f"--tls-key={pki / 'kubelet.key'}",
                f"--client-ca={pki / 'ca.crt'}",
            ],
            python=True,
        )
        processes = {
            "etcd": etcd,
            "kube-apiserver": apiserver,
            "kube-controller-manager": controllers,
            "node": node,
        }
        _wait_node_ready(cluster, processes, logs)
        yield cluster


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[Any], bool],
    *,
    timeout: float = 60,
    **kwargs: Any,
) -> Any:
    """The first object of ``list_fn(**kwargs)`` (a list call of the client, such as
    ``BatchV1Api.list_namespaced_job``) that satisfies ``predicate``: the current list is checked,
    then changes are watched, so nothing is polled."""
    deadline = time.monotonic() + timeout
    listing = list_fn(**kwargs)
    for item in listing.items:
        if predicate(item):
            return item
    for kind, item in _changes(list_fn, listing.metadata.resource_version, deadline, kwargs):
        if kind in ("ADDED", "MODIFIED") and predicate(item):
            return item
    raise TimeoutError(
        f"no object of {getattr(list_fn, '__name__', list_fn)}({kwargs}) "
        f"satisfied the condition within {timeout} s"
    )


def wait_deleted(
    list_fn: Callable[..., Any], name: str, *, timeout: float = 60, **kwargs: Any
) -> None:
    """Return once the object ``name`` listed by ``list_fn(**kwargs)`` no longer exists."""
    deadline = time.monotonic() + timeout
    kwargs["field_selector"] = f"metadata.name={name}"
    listing = list_fn(**kwargs)
    if not listing.items:
        return
    for kind, _ in _changes(list_fn, listing.metadata.resource_version, deadline, kwargs):
        if kind == "DELETED":
            return
    raise TimeoutError(f"{name} still exists after {timeout} s")


def _changes(
    list_fn: Callable[..., Any],
    resource_version: str | None,
    deadline: float,
    kwargs: dict[str, Any],
) -> Iterator[tuple[str, Any]]:
    """(event type, object) of a watch from ``resource_version`` until ``deadline``."""
    watcher = watch.Watch()
    while (remaining := deadline - time.monotonic()) > 0:
        for event in watcher.stream(
            list_fn,
            resource_version=resource_version,
            timeout_seconds=max(1, round(remaining)),
            _request_timeout=remaining + 5,
            **kwargs,
        ):
            yield event["type"], event["object"]
        resource_version = watcher.resource_version


def _node_ready(node: client.V1Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _wait_node_ready(
    cluster: KubeCluster, processes: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    """Watch for the Node to be Ready, in short watches so a crash fails at once."""
    deadline = time.monotonic() + START_TIMEOUT
    with cluster.api_client() as api:
        while True:
            _check_alive(processes, logs)
            try:
                wait_for(
                    client.CoreV1Api(api).list_node,
                    _node_ready,
                    timeout=2,
                    field_selector=f"metadata.name={cluster.node_name}",
                )
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(_failure("node not Ready", processes, logs)) from None


def _wait_ready(
    cluster: KubeCluster, processes: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    """Wait for the apiserver's ``/readyz`` (not in the OpenAPI spec, so a raw call of the
    client); a process that dies meanwhile fails at once with its log."""
    deadline = time.monotonic() + START_TIMEOUT
    with cluster.api_client() as api:
        while time.monotonic() < deadline:
            _check_alive(processes, logs)
            try:
                request = api.param_serialize("GET", "/readyz", auth_settings=["BearerToken"])
                response = api.call_api(*request, _request_timeout=5)
                response.read()
                if response.status == 200:
                    return
            except (client.ApiException, urllib3.exceptions.HTTPError):
                pass  # not listening yet
            time.sleep(0.2)
    raise RuntimeError(_failure("kube-apiserver not ready", processes, logs))


def _check_alive(processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    if any(process.poll() is not None for process in processes.values()):
        raise RuntimeError(_failure("a cluster process exited", processes, logs))


def _failure(reason: str, processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> str:
    """The reason, each process's state and the end of its log."""
    parts = [f"{reason}; logs in {logs}"]
    for name, process in processes.items():
        state = "running" if process.poll() is None else f"exited {process.returncode}"
        tail = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
        parts.append(f"--- {name} ({state})\n" + "\n".join(tail))
    return "\n".join(parts)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the thread that started the cluster ends
    without cleaning up (the test process killed by a timeout, say), so no cluster outlives it.
    Only a call here: libc is loaded beforehand, a forked child of a threaded process must not
    take locks."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s (the node stops its containers on SIGTERM)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin:
        process.stdin.close()


def _write_kubeconfig(path: Path, server: str, token: str, ca_file: Path) -> None:
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "nbplane",
        "clusters": [
            {
                "name": "nbplane",
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "nbplane", "context": {"cluster": "nbplane", "user": "admin"}}],
    }
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")  # JSON is YAML


def _write_pki(directory: Path) -> None:
    """A CA; certificates for the apiserver, the node's log endpoint and the apiserver's
    client calls to it; the service-account signing key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nbplane-test-ca")])
    ca_cert = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write_key(directory / "ca.key", ca_key)
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    issued = {
        "apiserver": (
            "kube-apiserver",
            None,
            [
                *loopback,
                x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                *(
                    x509.DNSName(name)
                    for name in ("kubernetes", "kubernetes.default", "kubernetes.default.svc")
                ),
            ],
        ),
        "kubelet": (f"system:node:{NODE_NAME}", "system:nodes", loopback),
        "kubelet-client": ("kube-apiserver-kubelet-client", "system:masters", []),
    }
    for stem, (common_name, organization, names) in issued.items():
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        cert = _certificate(x509.Name(attributes), key, ca_name, ca_key, ca=False, names=names)
        _write_key(directory / f"{stem}.key", key)
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    service_accounts = ec.generate_private_key(ec.SECP256R1())
    _write_key(directory / "sa.key", service_accounts)
    (directory / "sa.pub").write_bytes(
        service_accounts.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
