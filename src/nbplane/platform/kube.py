"""What nbplane's Kubernetes parts share (the job executor, the session launcher): a client
loaded on first use, blocking calls run in threads with API errors in words, and Kubernetes'
naming rules.

The Kubernetes client is the extra ``nbplane[kubernetes]``: those parts import it through this
module (``from nbplane.platform.kube import client``), so choosing one without the extra is a
ConfigError that says what to install."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from nbplane.errors import ConfigError

INSTALL = "pip install 'nbplane[kubernetes]'"

try:
    import urllib3
    from kubernetes import client as client
    from kubernetes import config
    from kubernetes.client import ApiException
except ImportError as exc:  # the extra is optional: a laptop runs jobs without it
    raise ConfigError(
        f"the Kubernetes job executor and session launcher need the Kubernetes client: {INSTALL}",
        field="kubernetes",
    ) from exc

MANAGED_BY = {"app.kubernetes.io/managed-by": "nbplane"}
REQUEST_TIMEOUT = 30.0
"""Seconds any one API call may take, so a hung API server cannot stall a monitor loop."""
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^a-z0-9._-]+")
_NOT_LABEL_EDGE = re.compile(r"^[^a-z0-9]+|[^a-z0-9]+$")


class KubeClient:
    """One API client per nbplane part, loaded on first use, so a broken kubeconfig fails that
    part's work in words rather than the server's start (which serves much else)."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self.kubeconfig = kubeconfig
        self._api: client.ApiClient | None = None
        self._lock = asyncio.Lock()

    async def api(self) -> client.ApiClient:
        async with self._lock:
            if self._api is None:
                self._api = await asyncio.to_thread(load_client, self.kubeconfig)
            return self._api

    async def call(
        self,
        doing: str,
        namespace: str,
        call: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        none_on: Collection[int] = (),
        **kwargs: Any,
    ) -> Any:
        """Run a blocking client call in a thread; API errors become ConfigErrors in words.
        With ``missing_ok``, a 404 returns None; so does any status in ``none_on`` (409: it
        exists already)."""
        try:
            return await asyncio.to_thread(call, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            if (missing_ok and exc.status == 404) or exc.status in none_on:
                return None
            raise api_error(exc, doing, namespace) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self._api.configuration.host if self._api else "?"
            raise ConfigError(
                f"cannot reach the Kubernetes API at {host} to {doing}: {exc}", field="kubeconfig"
            ) from None

    async def delete(
        self, doing: str, namespace: str, call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """A delete call, no error if it is gone. Its answer is not parsed: some API versions
        answer a Status where the client expects the object (a Service on 1.20)."""
        response = await self.call(
            doing, namespace, call, *args, missing_ok=True, _preload_content=False, **kwargs
        )
        if response is not None:
            await asyncio.to_thread(_drain, response)

    async def own_secret(self, namespace: str, name: str, owner: client.V1OwnerReference) -> None:
        """Make ``owner`` (a Job, a StatefulSet) own the Secret ``name``, so that deleting it
        takes the Secret along."""
        api = await self.api()
        await self.call(
            f"make the {owner.kind} own its Secret",
            namespace,
            client.CoreV1Api(api).patch_namespaced_secret,
            name,
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(owner_references=[owner])),
            _content_type="application/merge-patch+json",
        )

    async def close(self) -> None:
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None


def _drain(response: urllib3.BaseHTTPResponse) -> None:
    response.drain_conn()
    response.release_conn()


def load_client(kubeconfig: Path | None) -> client.ApiClient:
    """A client of its own configuration (the library's global default stays untouched):
    ``NBPLANE_KUBECONFIG``, else the pod's service account, else ``~/.kube/config``."""
    configuration = client.Configuration()
    where = f"kubeconfig {kubeconfig}" if kubeconfig else "the service account or ~/.kube/config"
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(configuration)  # type: ignore[no-untyped-call]
                return client.ApiClient(configuration)
            except config.ConfigException:
                pass  # not in a pod: the default kubeconfig
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the Kubernetes configuration from {where}: {exc}", field="kubeconfig"
        ) from None
    return client.ApiClient(configuration)


def secret_env(name: str) -> list[client.V1EnvFromSource]:
    """A container's variables from the Secret ``name`` (``envFrom``): credentials never stand
    as values in the pod spec, which anyone allowed to read the pod could see."""
    return [client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=name))]


def requests_and_limits(quantities: dict[str, str]) -> client.V1ResourceRequirements | None:
    """Requests and limits alike (``{"cpu": "500m", "memory": "1Gi"}``); None for none."""
    if not quantities:
        return None
    return client.V1ResourceRequirements(requests=dict(quantities), limits=dict(quantities))


def dns_label(text: str) -> str:
    """Lower case letters, digits and single dashes (the caller cuts it to length)."""
    return re.sub(r"-{2,}", "-", _NOT_DNS.sub("-", text.lower())).strip("-")


def label_value(text: str) -> str:
    """A label value: at most 63 letters, digits, '.', '_' or '-', starting and ending with a
    letter or digit (nbplane's names may end with '.', '_' or '-'; user names may hold '@')."""
    return _NOT_LABEL_EDGE.sub("", _NOT_LABEL.sub("-", text.lower())[:63])


def api_error(exc: ApiException, doing: str, namespace: str) -> ConfigError:
    """Kubernetes' answer in words: which namespace, what was refused, and its own message."""
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    said = status.get("message") or exc.reason or f"HTTP {exc.status}"
    details = status.get("details") or {}
    if exc.status == 404 and details.get("kind") == "namespaces":
        return ConfigError(
            f"Kubernetes namespace {namespace!r} not found (NBPLANE_KUBERNETES_NAMESPACE)",
            field="kubernetes_namespace",
        )
    if exc.status == 403:
        return ConfigError(
            f"forbidden: the Kubernetes credentials may not {doing} in namespace "
            f"{namespace!r} ({said})",
            field="kubeconfig",
        )
    if exc.status == 401:
        return ConfigError(
            f"the Kubernetes API did not accept the credentials ({said})", field="kubeconfig"
        )
    return ConfigError(f"Kubernetes could not {doing} in namespace {namespace!r}: {said}")
