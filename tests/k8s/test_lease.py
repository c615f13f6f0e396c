"""The Kubernetes Lease against a real API server: created by the first holder, refused to
another until it expires (by a clock of the test's own), renewed, taken over, released, and
given to exactly one of several replicas racing for it (resourceVersion)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from nbplane.platform.kube_lease import KubernetesLease
from nbplane.platform.lease import CONTROL_LEASE
from nbplane.server.control import control_lease
from nbplane.settings import Settings
from nbplane.store import open_store
from tests.k8s.cluster import KubeCluster


class Clock:
    def __init__(self, microsecond: int = 500_000) -> None:
        self.time = datetime.now(UTC).replace(microsecond=microsecond)

    def __call__(self) -> datetime:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += timedelta(seconds=seconds)


def leases(
    cluster: KubeCluster, namespace: str, clock: Clock, *holders: str
) -> list[KubernetesLease]:
    return [
        KubernetesLease(namespace, CONTROL_LEASE, holder, 8, cluster.kubeconfig, clock)
        for holder in holders
    ]


def run(*leases: KubernetesLease, steps: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await steps()
        finally:
            for lease in leases:
                await lease.close()

    return asyncio.run(main())


def test_the_lease_is_held_renewed_taken_over_and_released(
    kube_cluster: KubeCluster, kube_namespace: str, kube_api: client.ApiClient
) -> None:
    clock = Clock()
    first, second = leases(kube_cluster, kube_namespace, clock, "a", "b")
    coordination = client.CoordinationV1Api(kube_api)

    def spec() -> client.V1LeaseSpec:
        found = coordination.read_namespaced_lease(CONTROL_LEASE, kube_namespace)
        assert found.metadata.labels == {"app.kubernetes.io/managed-by": "nbplane"}
        assert found.spec is not None
        return found.spec

    async def steps() -> None:
        assert await first.acquire()
        created = spec()
        assert created.holder_identity == "a" and created.lease_duration_seconds == 8
        assert created.renew_time == clock.time and created.lease_transitions == 0
        assert not await second.acquire()
        clock.advance(6)
        assert await first.acquire(), "renewed before the expiry"
        renewed = spec()
        assert renewed.renew_time == clock.time and renewed.acquire_time == created.acquire_time
        clock.advance(6)
        assert not await second.acquire(), "the renewal moved the expiry on"
        clock.advance(2)
        assert await second.acquire(), "expired: taken over"
        taken = spec()
        assert taken.holder_identity == "b" and taken.lease_transitions == 1
        assert taken.acquire_time == clock.time
        assert not await first.acquire(), "the old holder cannot renew a lease taken from it"
        await first.release()  # not its lease: changes nothing
        assert spec().holder_identity == "b"
        await second.release()
        assert spec().holder_identity is None
        assert await first.acquire(), "released: free at once"

    run(first, second, steps=steps)


def test_replicas_racing_for_the_lease_get_it_once(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    clock = Clock(microsecond=0)  # a whole second, which the client alone writes unparseably
    racing = leases(kube_cluster, kube_namespace, clock, *(f"r{i}" for i in range(4)))

    async def steps() -> list[list[bool]]:
        rounds = []
        for _ in range(3):  # first for a missing Lease (create), then for an expired one
            rounds.append(list(await asyncio.gather(*(lease.acquire() for lease in racing))))
            clock.advance(10)
        return rounds

    rounds = run(*racing, steps=steps)
    assert [sum(won) for won in rounds] == [1, 1, 1], rounds


def test_the_kubernetes_backends_use_the_kubernetes_lease(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")
    try:
        lease = control_lease(
            Settings(home=tmp_path, job_executor="kubernetes", kubernetes_namespace="jobs"), store
        )
        local = control_lease(Settings(home=tmp_path), store)
    finally:
        store.close()
    assert isinstance(lease, KubernetesLease)
    assert (lease.namespace, lease.name, lease.duration) == ("jobs", "nbplane-control", 8.0)
    assert type(local).__name__ == "DatabaseLease"
