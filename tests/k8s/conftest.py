"""Fixtures for tests against a real Kubernetes API server: one cluster per test session (see
``cluster.py``), a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.k8s.cluster import KubeCluster, KubernetesUnavailable, binaries, running_cluster

REQUIRE_KUBERNETES = os.environ.get("NBPLANE_TEST_REQUIRE_KUBERNETES") == "1"


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """etcd, kube-apiserver, kube-controller-manager and the node stand-in, for the session."""
    try:
        binaries()
    except KubernetesUnavailable as error:
        if REQUIRE_KUBERNETES:
            pytest.fail(str(error))
        pytest.skip(str(error))
    with running_cluster(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture
def kube_api(kube_cluster: KubeCluster) -> Iterator[client.ApiClient]:
    """An admin client of the cluster, closed after the test."""
    with kube_cluster.api_client() as api:
        yield api


@pytest.fixture
def kube_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (with everything in it; not waited for)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
