"""A lease kept as a Kubernetes ``Lease`` (coordination.k8s.io/v1), what controllers use for
leader election: taken or renewed by replacing the object at the ``resourceVersion`` read, so
of two replicas writing at once the API server accepts one and refuses the other (409)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nbplane._time import now
from nbplane.platform.kube import MANAGED_BY, KubeClient, client
from nbplane.platform.lease import Lease


class KubernetesLease(Lease):
    """The Lease ``name`` in ``namespace``; ``clock`` gives the time written as ``renewTime``
    and compared with others' (``leaseDurationSeconds`` is whole seconds, rounded up)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        holder: str,
        duration: float,
        kubeconfig: Path | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        super().__init__(name, holder, duration)
        self.namespace = namespace
        self.kube = KubeClient(kubeconfig)
        self.clock = clock

    async def _api(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(await self.kube.api())

    async def acquire(self) -> bool:
        api = await self._api()
        current = self.clock()
        found = await self._read(api)
        if found is None:
            created = await self.kube.call(
                "create the Lease",
                self.namespace,
                api.create_namespaced_lease,
                self.namespace,
                self._body(None, self._spec(current, current, 0)),
                none_on=(409,),  # another replica created it first
            )
            return created is not None
        spec = found.spec or client.V1LeaseSpec()
        mine = spec.holder_identity == self.holder
        if not mine and not self._expired(spec, current):
            return False
        taken = spec.acquire_time if mine and spec.acquire_time else current
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        body = self._body(found, self._spec(current, taken, transitions))
        replaced = await self.kube.call(
            "renew the Lease",
            self.namespace,
            api.replace_namespaced_lease,
            self.name,
            self.namespace,
            body,  # at the resourceVersion read: a write in between makes this a 409
            none_on=(409,),
        )
        return replaced is not None

    async def _read(self, api: client.CoordinationV1Api) -> client.V1Lease | None:
        found: client.V1Lease | None = await self.kube.call(
            "read the Lease",
            self.namespace,
            api.read_namespaced_lease,
            self.name,
            self.namespace,
            missing_ok=True,
        )
        return found

    async def release(self) -> None:
        api = await self._api()
        found = await self._read(api)
        if found is None or found.spec is None or found.spec.holder_identity != self.holder:
            return
        current = self.clock()
        spec = self._spec(
            current, found.spec.acquire_time or current, found.spec.lease_transitions or 0
        )
        await self.kube.call(
            "release the Lease",
            self.namespace,
            api.replace_namespaced_lease,
            self.name,
            self.namespace,
            self._body(found, {**spec, "holderIdentity": None}),
            none_on=(409,),  # renewed or taken meanwhile: not ours to release any more
        )

    async def close(self) -> None:
        await self.kube.close()

    def _body(self, found: client.V1Lease | None, spec: dict[str, Any]) -> dict[str, Any]:
        """The Lease to write; with ``found``, at its resourceVersion."""
        metadata: dict[str, Any] = {"name": self.name, "labels": dict(MANAGED_BY)}
        if found is not None and found.metadata is not None:
            metadata["resourceVersion"] = found.metadata.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _spec(self, current: datetime, acquired: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": math.ceil(self.duration),
            "acquireTime": micro_time(acquired),
            "renewTime": micro_time(current),
            "leaseTransitions": transitions,
        }

    @staticmethod
    def _expired(spec: client.V1LeaseSpec, current: datetime) -> bool:
        if not spec.holder_identity or spec.renew_time is None:
            return True
        lasts = timedelta(seconds=spec.lease_duration_seconds or 0)
        return bool(spec.renew_time + lasts <= current)


def micro_time(moment: datetime) -> datetime:
    """A time the client writes as the API server's MicroTime must be: the client writes
    ``isoformat()``, which drops the decimals of a whole second, and the API server then refuses
    it; a microsecond later keeps them."""
    return moment if moment.microsecond else moment + timedelta(microseconds=1)
